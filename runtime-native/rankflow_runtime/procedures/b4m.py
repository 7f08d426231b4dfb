"""Break-for-Make's stages: `b4m-break` (a content or a style run of PLP adapters) and `b4m-make` (merge the two,
then train the merged adapter on both kinds of data with the Riemannian-preconditioned AdamW). The baselines
(two plain adapters summed or averaged) are `combine.py`. The pieces are in `b4m.py`, which cites
the paper and the released code and lists how the released code differs.

* `b4m-break` (`role: content | style`): the standard loop with a two-loss step. Each optimizer step: the run's
  micro-batches (the target concept) give L₁, which trains only the role's own half (content: the learnable
  down halves, style: the up halves; the head, if trained, too); then the same micro-batches' noise and noise
  levels with one batch of each auxiliary dataset (`aux`: datasets of the other kind, official: three) give
  L₂ = the mean of their losses, which trains only the other half. Two `Stepper`s over one optimizer: a group
  whose tensors have no gradient is skipped by AdamW, so this is exactly two AdamW optimizers with the group lrs
  (content: `training.lr` for down, `lr_groups.up` for up — official 1e-4 / 1e-5; style: the reverse), checkpointed
  as one. The schedule steps once per step. The adapter is written as the `adapter` artifact.
* `b4m-make` (inputs `content`, `style`: the two break runs' adapters; optional `model`): the style adapter with
  its learnable down halves replaced by the content adapter's (the frozen halves must be bit-identical: same
  seed, same method options), trained with `RiemannianAdamW` alone (`optimizer: adamw` for the ablation) on the
  run's dataset plus one batch of each `joint` dataset per micro-batch, the losses summed (official: style data
  and content data).

Auxiliary and joint batches are a function of the step (each dataset's own permutation per epoch, seeded by the
run seed and the dataset's position), so a resumed run draws the same ones; they use the run's batch size.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from .. import b4m
from ..build import build, data_model_info, resolve_info
from ..errors import ConfigError
from ..methods.base import TrainContext, load_adapter_state_dict, option
from ..optim import make_optimizer
from ..step import Stepper, model_inputs
from ..train import LoopHooks, LoopStep, _to, epoch_order, run_training
from .base import InputDecl, Procedure, RunContext, register_procedure
from .finetune import make_finish

STREAM_SEED = 1009


def load_streams(spec, entries: List[Any], field: str) -> List[Any]:
    """The datasets of `procedure.options.<field>`: each a dataset object merged over the run's dataset."""
    from ..data import load_task_data
    info = resolve_info(spec)
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"procedure.options.{field}[{i}]: expected a dataset object {{name, options, ...}}",
                              hint="e.g. {name: synthetic/content-style, options: {contents: [0, 1], styles: [2]}}")
        unknown = sorted(set(entry) - set(spec.dataset))
        if unknown:
            raise ConfigError(f"procedure.options.{field}[{i}].{unknown[0]}: not a dataset field",
                              hint=f"use the dataset fields: {', '.join(sorted(spec.dataset))}")
        data = load_task_data({**dict(spec.dataset), **entry}, data_model_info(info), spec.seed)
        if len(data.train) < spec.training["batch_size"]:
            raise ConfigError(f"procedure.options.{field}[{i}]: {len(data.train)} training examples, fewer than "
                              f"training.batch_size {spec.training['batch_size']}", hint="raise its train_size")
        out.append(data)
    return out


def stream_batch(data, k: int, step: int, micro: int, n_micro: int, spec, device) -> Dict[str, Any]:
    """Batch `micro` of optimizer step `step` from stream k (a function of the step: resumable)."""
    bs = spec.training["batch_size"]
    n = len(data.train)
    per_epoch = n // bs
    g = step * n_micro + micro
    order = epoch_order(n, spec.seed + STREAM_SEED * (k + 1), g // per_epoch)
    idx = order[(g % per_epoch) * bs:(g % per_epoch + 1) * bs].tolist()
    return _to(data.collate([data.train[i] for i in idx]), device)


def takes_noise(model) -> bool:
    return "noise" in inspect.signature(model.forward).parameters


@contextmanager
def only(params: List[torch.nn.Parameter], keep: List[torch.nn.Parameter]):
    """Within the block only `keep` of `params` require grad (the others get no gradient, so no step)."""
    ids = {id(p) for p in keep}
    off = [p for p in params if id(p) not in ids and p.requires_grad]
    for p in off:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in off:
            p.requires_grad_(True)


class BreakStep:
    """`LoopHooks.step` of `b4m-break` (see the module docstring)."""

    def __init__(self, role: str, aux: List[Any]):
        self.role, self.aux = role, aux
        self.aux_stepper: Optional[Stepper] = None
        self.noise: List[Any] = []

    def _setup(self, ls: LoopStep) -> None:
        st = ls.stepper
        self.groups = b4m.split_groups(st.model, self.role)
        self.all = [p for p in st.model.parameters() if p.requires_grad]
        self.diffusion = takes_noise(st.model)
        st.loss_fn = self._target_loss
        ctx = TrainContext(model=st.model, step=ls.step, total_steps=st.ctx.total_steps, device=ls.device)
        self.aux_stepper = Stepper(st.model, st.method, st.optimizer, ctx, scheduler=None, rules=st.rules,
                                   max_grad_norm=st.max_grad_norm, scaler=st.scaler, autocast=st.autocast,
                                   loss_fn=self._aux_loss)

    def _target_loss(self, model, batch):
        if not self.diffusion:
            return model(**model_inputs(batch)).loss
        x0 = batch["pixel_values"]
        t = torch.randint(1, model.config["noise_levels"] + 1, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        self.noise.append((noise, t))
        return model(x0, batch["labels"], noise=noise, timesteps=t).loss

    def _aux_loss(self, model, item):
        losses = []
        for batch in item["aux"]:
            if self.diffusion:
                noise, t = self.noise[item["micro"]]
                losses.append(model(batch["pixel_values"], batch["labels"], noise=noise, timesteps=t).loss)
            else:
                losses.append(model(**model_inputs(batch)).loss)
        return sum(losses) / len(losses)

    def __call__(self, ls: LoopStep):
        if self.aux_stepper is None:
            self._setup(ls)
        self.noise = []
        target = list(ls.micro_batches)
        with only(self.all, self.groups[0]):
            result = ls.stepper.step(target, n_micro=ls.n_micro)
        items = [{"micro": i, "aux": [stream_batch(d, k, ls.step, i, ls.n_micro, ls.spec, ls.device)
                                      for k, d in enumerate(self.aux)]} for i in range(ls.n_micro)]
        self.aux_stepper.ctx.step = ls.step
        with only(self.all, self.groups[1]):
            self.aux_stepper.step(items, n_micro=ls.n_micro)
        return result


@dataclass
class BreakOptions:
    role: str = option("content", help="content: the target loss trains the learnable down halves, the auxiliary "
                                       "loss the up halves; style: the reverse", choices=["content", "style"])
    aux: list = option([], help="auxiliary datasets of the other kind (official: three), each a dataset object "
                                "{name, options, train_size, ...} over the run's dataset; their mean loss trains "
                                "the other half")


@register_procedure
class B4MBreak(Procedure):
    name = "b4m-break"
    summary = "Break-for-Make's break stage: a content or style PLP run with a target loss and an auxiliary loss"
    paper = "Xu et al., B4M: Breaking Low-Rank Adapter for Making Content-Style Customization, ACM TOG 2025"
    Options = BreakOptions
    methods = ("plp",)
    inputs = {"model": InputDecl("model", False, "an upstream run's model artifact (the pretrained generator)")}
    outputs = {"adapter": "adapter"}

    def check(self, spec) -> None:
        super().check(spec)
        if not self.options.aux:
            raise ConfigError("procedure.options.aux: the break stage needs auxiliary datasets of the other kind",
                              hint="list at least one dataset object (the official scripts use three)")

    def run(self, ctx: RunContext) -> int:
        base = ctx.inputs.get("model")
        aux = load_streams(ctx.spec, list(self.options.aux), "aux")
        hooks = LoopHooks(build=(lambda spec, info, n, device: build(spec, info, n, device, base=base)),
                          step=BreakStep(self.options.role, aux), finish=make_finish(ctx, ["adapter"], base))
        return run_training(ctx.spec, ctx.out_dir, resume=ctx.resume, stop_at_step=ctx.stop_at_step, hooks=hooks)


# ---------------------------------------------------------------------------------------------------------
# Make
# ---------------------------------------------------------------------------------------------------------


class JointStep:
    """`LoopHooks.step` of `b4m-make`: the run's batch plus one batch of each joint dataset, losses summed."""

    def __init__(self, joint: List[Any]):
        self.joint = joint
        self.ready = False

    def _loss(self, model, item):
        total = model(**model_inputs(item["main"])).loss
        for batch in item["joint"]:
            total = total + model(**model_inputs(batch)).loss
        return total

    def __call__(self, ls: LoopStep):
        if not self.ready:
            ls.stepper.loss_fn, self.ready = self._loss, True
        items = [{"main": mb, "joint": [stream_batch(d, k, ls.step, i, ls.n_micro, ls.spec, ls.device)
                                        for k, d in enumerate(self.joint)]}
                 for i, mb in enumerate(ls.micro_batches)]
        return ls.stepper.step(items, n_micro=ls.n_micro)


def check_adapter_meta(spec, art, name: str) -> None:
    """An input adapter must come from the same method (name, rank, options, targets) and seed as this run."""
    meta = art.meta or {}
    want = {k: spec.method[k] for k in ("name", "rank", "options", "targets")}
    got = {k: (meta.get("method") or {}).get(k) for k in want}
    if got != want or meta.get("seed") != spec.seed:
        raise ConfigError(f"--input {name}: the adapter was trained with method {got} and seed {meta.get('seed')}, "
                          f"this run has {want} and seed {spec.seed}",
                          hint="give the make stage the method, rank, options, targets and seed of the break stages")


def riemannian_optimizer(reg: float):
    def make(spec, model, method, head_name):
        base = make_optimizer(spec, model, method, head_name)
        if spec.training["optimizer"] != "adamw":
            raise ConfigError("training.optimizer: the make stage's Riemannian preconditioner is an AdamW",
                              hint="set training.optimizer: adamw (or procedure.options.optimizer: adamw)")
        return b4m.RiemannianAdamW(base.param_groups, lr=spec.training["lr"], betas=(0.9, 0.999), eps=1e-8,
                                   weight_decay=0.0, reg=reg, pairs=b4m.plp_pairs(model))
    return make


@dataclass
class MakeOptions:
    joint: list = option([], help="datasets trained together with the run's dataset, one batch of each per "
                                  "micro-batch, losses summed (official: the run's dataset is the style data, "
                                  "joint the content data)")
    optimizer: str = option("riemannian", help="riemannian: RiemannianAdamW alone (the paper); adamw: plain AdamW "
                                               "(ablation)", choices=["riemannian", "adamw"])
    reg: float = option(0.0, help="the preconditioner's reg·I (official default 0; identity fallback at B = 0)",
                        min=0.0)


@register_procedure
class B4MMake(Procedure):
    name = "b4m-make"
    summary = "Break-for-Make's make stage: merge the content and style PLP adapters, train with RiemannianAdamW"
    paper = B4MBreak.paper
    Options = MakeOptions
    methods = ("plp",)
    inputs = {"content": InputDecl("adapter", True, "the content break run's adapter"),
              "style": InputDecl("adapter", True, "the style break run's adapter"),
              "model": InputDecl("model", False, "the pretrained generator both break runs started from")}
    outputs = {"adapter": "adapter"}

    def run(self, ctx: RunContext) -> int:
        spec = ctx.spec
        base = ctx.inputs.get("model")
        content, style = ctx.inputs["content"], ctx.inputs["style"]
        for name, art in (("content", content), ("style", style)):
            check_adapter_meta(spec, art, name)
        merged = b4m.merge_plp(content.tensors(), style.tensors(), where="--input content / --input style")

        def build_merged(spec, info, n, device):
            built = build(spec, info, n, device, base=base)
            load_adapter_state_dict(built.model, merged)
            return built

        joint = load_streams(spec, list(self.options.joint), "joint")
        hooks = LoopHooks(build=build_merged, step=JointStep(joint), finish=make_finish(ctx, ["adapter"], base),
                          optimizer=riemannian_optimizer(self.options.reg) if self.options.optimizer == "riemannian"
                          else None)
        return run_training(spec, ctx.out_dir, resume=ctx.resume, stop_at_step=ctx.stop_at_step, hooks=hooks)
