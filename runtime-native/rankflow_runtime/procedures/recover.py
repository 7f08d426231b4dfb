"""`recover`: LoRAM's recovery (stage 3) and evaluation on the full model (stage 4).

Zhang et al., "Train Small, Infer Large", ICLR 2025 (arXiv:2502.13533); official
`junzhang-zj/LoRAM@ce64e68:loram/3_recovered_low_rank_matrix_generation.py` and `apply_lora.py`, re-implemented.

Inputs: the `adapter` a `finetune` run trained (LoRA) on the pruned model, the `pruned` model artifact it was
trained on (its index map) and, when the prune run pruned an upstream model, that unpruned `base` model
(otherwise the full model is rebuilt from the spec with the seed the pruned artifact records).

The LoRA factors go back to the full shapes, the pruned positions filled as the official `zeroA` default:

* modules whose *outputs* were pruned (`gate_proj`, `up_proj`: the MLP channels; `q_proj`: the query rows of the
  pruned KV groups; `k_proj`, `v_proj`: the KV rows) get **zero rows** in B;
* modules whose *inputs* were pruned (`down_proj`, `o_proj`) get **zero columns** in A (`init: normA` fills the
  whole A from N(0, 1/r²) first, then the kept columns, as the official `normA`; the official hard-codes r = 8);
* every other factor is copied unchanged.

So the recovered ΔW restricted to the kept coordinates equals the trained ΔW and is exactly zero elsewhere
(zeroA). The recovered adapter is loaded onto the **unpruned** model, merged into it (`merge_and_unload`), and the
merged model is evaluated on the run's dataset: the run's metrics. For the comparison rows the run also evaluates
the pruned model with the trained adapter and the full model without any (`compare`).

`done.stats`: `pruned_lora_<metric>`, `full_untrained_<metric>`, `unmerged_<primary>` (equal to the merged one up
to rounding), `params_full`, `params_pruned`, `reduction` (full / pruned parameters), `adapter_params_pruned`,
`adapter_params_recovered`. Outputs: the recovered `adapter` (full shapes, loadable on the unpruned model as a
LoRA of that run's method and rank) and the merged `model`.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from .. import __version__
from ..build import adapt_facts, data_model_info, make_method, resolve_info
from ..errors import EXIT_OK, ConfigError
from ..events import emit, finite_metrics
from ..methods.base import adapt_model, adapter_state_dict, load_adapter_state_dict, option, total_numel
from ..structures import model_meta, plain_model, plain_state, rebuild_model
from ..train import pick_device
from .base import InputDecl, Procedure, RunContext, register_procedure
from .prune import head_dim, layer_modules, qkv_rows


@dataclass
class RecoverOptions:
    init: str = option("zeroA", help="zeroA: zero columns in A for pruned inputs (official default); normA: "
                                     "N(0, 1/r²) there", choices=["zeroA", "normA"])
    compare: bool = option(True, help="also evaluate the pruned model with the adapter and the full model without one")


def index_maps(full: nn.Module, pruned_entry: Dict[str, Any], index: Dict[str, torch.Tensor]
               ) -> Dict[str, Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]]:
    """{module name: (kept output rows or None, kept input columns or None)} for every pruned linear."""
    mods = layer_modules(full)
    out: Dict[str, Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]] = {}
    for layer in pruned_entry["layers"]:
        attn, mlp = mods[layer]
        attn_name = next(n for n, c in full.get_submodule(layer).named_children() if c is attn)
        mlp_name = next(n for n, c in full.get_submodule(layer).named_children() if c is mlp)
        ch, kv = index[f"{layer}.mlp"], index[f"{layer}.kv"]
        d = head_dim(attn)
        q_rows, kv_rows = qkv_rows(kv, attn.q_proj.out_features // d, attn.k_proj.out_features // d, d)
        a, m = f"{layer}.{attn_name}", f"{layer}.{mlp_name}"
        out.update({f"{m}.gate_proj": (ch, None), f"{m}.up_proj": (ch, None), f"{m}.down_proj": (None, ch),
                    f"{a}.q_proj": (q_rows, None), f"{a}.k_proj": (kv_rows, None), f"{a}.v_proj": (kv_rows, None),
                    f"{a}.o_proj": (None, q_rows)})
    return out


def recover_lora(trained: Dict[str, torch.Tensor], full_shapes: Dict[str, Tuple[int, ...]],
                 maps: Dict[str, Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]], init: str,
                 gen: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
    """The adapter tensors of the pruned model re-inserted into the full model's shapes (see the docstring)."""
    out: Dict[str, torch.Tensor] = {}
    for key, t in trained.items():
        module, _, leaf = key.rpartition(".")
        rows, cols = maps.get(module, (None, None))
        want = full_shapes.get(key)
        if want is None:
            raise ConfigError(f"--input adapter: tensor {key} has no place in the full model",
                              hint="recover an adapter trained on the pruned model the spec names")
        if leaf == "lora_B" and rows is not None:
            new = torch.zeros(want, dtype=t.dtype)
            new[rows] = t
        elif leaf == "lora_A" and cols is not None:
            new = torch.zeros(want, dtype=t.dtype)
            if init == "normA":
                new.normal_(0.0, 1.0 / want[0], generator=gen)
            new[:, cols] = t
        else:
            new = t.clone()
        if tuple(new.shape) != tuple(want):
            raise ConfigError(f"--input adapter: {key} recovers to {tuple(new.shape)}, the full model has {tuple(want)}",
                              hint="recover an adapter trained on the pruned model the spec names")
        out[key] = new
    return out


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


@register_procedure
class Recover(Procedure):
    name = "recover"
    summary = ("LoRAM stage 3/4: the LoRA trained on a pruned model recovered to the full shapes (zero rows/columns "
               "at pruned positions), merged into the unpruned model and evaluated there")
    paper = "Zhang et al., Train Small, Infer Large (LoRAM), ICLR 2025 (arXiv:2502.13533)"
    Options = RecoverOptions
    inputs = {"adapter": InputDecl("adapter", True, "the LoRA adapter a finetune run trained on the pruned model"),
              "pruned": InputDecl("model", True, "the pruned model that adapter was trained on (its index map)"),
              "base": InputDecl("model", False, "the unpruned model, when the prune run read one (default: the model "
                                "the spec builds, with the seed the pruned artifact records)")}
    outputs = {"adapter": "adapter", "model": "model"}
    trains = False
    methods = ("lora",)

    def run(self, ctx: RunContext) -> int:
        from ..data import evaluate, load_task_data
        t0 = time.time()
        spec = ctx.spec
        adapter, pruned, base = ctx.inputs["adapter"], ctx.inputs["pruned"], ctx.inputs.get("base")
        entry = self._check_inputs(adapter, pruned, base)
        device = pick_device(spec.device)
        info = resolve_info(spec)
        td = load_task_data(dict(spec.dataset), data_model_info(info), spec.seed)
        bs = spec.training["eval_batch_size"]
        full = self._full_model(spec, info, td.num_labels, pruned, base)
        emit("started", pid=os.getpid(), device=str(device), torch=torch.__version__,
             python=platform.python_version(), runtime=__version__, step=0, total_steps=1, trainable_params=0,
             total_params=total_numel(full))
        stats: Dict[str, float] = {"params_full": float(total_numel(full)),
                                   "params_pruned": float(sum(_numel(s) for s in pruned.manifest["shapes"].values()))}
        if self.options.compare:
            stats.update(self._prefixed("full_untrained", evaluate(full.to(device), td, bs, device)))
        maps = index_maps(full, entry, pruned.extra(entry.get("index", "index")))
        method = make_method(spec)
        targets = list(adapter.meta.get("targets") or [])
        adapt_model(full, method, targets, info.head_name, bool(spec.training["train_head"]), **adapt_facts(spec, info))
        shapes = {k: tuple(v.shape) for k, v in adapter_state_dict(full).items()}
        trained = adapter.tensors()
        recovered = recover_lora(trained, shapes, maps, self.options.init, method.generator(1))
        load_adapter_state_dict(full, recovered)
        full.to(device)
        stats["unmerged_" + td.primary_metric] = finite_metrics(evaluate(full, td, bs, device)).get(td.primary_metric,
                                                                                                   float("nan"))
        stats.update({"adapter_params_pruned": float(sum(t.numel() for t in trained.values())),
                      "adapter_params_recovered": float(sum(t.numel() for t in recovered.values()))})
        ctx.write_artifact("adapter", "adapter", recovered,
                           meta={"method": dict(spec.method), "targets": targets, "model": dict(spec.model),
                                 "head_name": info.head_name, "seed": int(spec.seed), "recovered_from": adapter.run_id,
                                 "base_model": dict(base.meta) if base is not None else None,
                                 "base_run": base.run_id if base is not None else None})
        merged = plain_model(full)
        metrics = finite_metrics(evaluate(merged, td, bs, device))
        emit("eval", step=1, split=td.eval_split, metrics=metrics)
        if self.options.compare:
            stats.update(self._pruned_with_adapter(spec, info, td, pruned, adapter, targets, bs, device))
        stats["reduction"] = stats["params_full"] / max(stats["params_pruned"], 1.0)
        ctx.write_artifact("model", "model", plain_state(merged),
                           meta=model_meta(spec, info, td.num_labels, [], base=base, metrics=metrics,
                                           recovered_from=adapter.run_id))
        emit("done", step=1, metrics=metrics, best_metrics=metrics, best_step=1, trainable_params=0,
             total_params=total_numel(merged), wall_time_s=time.time() - t0, stats=stats)
        return EXIT_OK

    # -- pieces ------------------------------------------------------------------------------------------
    @staticmethod
    def _prefixed(prefix: str, metrics: Dict[str, Any]) -> Dict[str, float]:
        return {f"{prefix}_{k}": v for k, v in finite_metrics(metrics).items()}

    @staticmethod
    def _check_inputs(adapter, pruned, base) -> Dict[str, Any]:
        structure = pruned.meta.get("structure") or []
        if not structure or structure[-1].get("kind") != "pruned":
            raise ConfigError(f"--input pruned: {pruned.path} is not a pruned model (no `pruned` structure)",
                              hint="pass the model artifact of a prune run")
        if adapter.meta.get("base_run") != pruned.run_id:
            raise ConfigError(f"--input adapter: it was trained on {adapter.meta.get('base_run')!r}'s model, not on the "
                              f"pruned model of {pruned.run_id!r}", hint="pass the adapter of a run fine-tuned on that "
                              "pruned model")
        want = structure[:-1]
        got = (base.meta.get("structure") or []) if base is not None else []
        if want != got:
            raise ConfigError("--input base: the pruned model was not pruned from this model",
                              hint="pass the model the prune run read (or none when it built the spec's model)")
        return structure[-1]

    @staticmethod
    def _full_model(spec, info, num_labels, pruned, base) -> nn.Module:
        from ..models import build_model
        if base is not None:
            return rebuild_model(spec, info, num_labels, base, flag="--input base")
        torch.manual_seed(int(pruned.meta.get("seed", spec.seed)))
        return build_model(spec.model, info, num_labels)

    def _pruned_with_adapter(self, spec, info, td, pruned, adapter, targets, bs, device) -> Dict[str, float]:
        from ..data import evaluate
        model = rebuild_model(spec, info, td.num_labels, pruned, flag="--input pruned")
        method = make_method(spec)
        adapt_model(model, method, targets, info.head_name, bool(spec.training["train_head"]), **adapt_facts(spec, info))
        load_adapter_state_dict(model, adapter.tensors())
        return self._prefixed("pruned_lora", evaluate(model.to(device), td, bs, device))
