"""`compress`: one-shot LoRD compression of a trained model (no training), measured before and after in one run.

Kaushal, Vaidhya, Rish, "LoRD: Low Rank Decomposition of Monolingual Code LLMs for One-Shot Compression",
arXiv:2309.14021 (the decomposition, its variants and rank rules are in `methods/lord.py`). The run:

1. builds the model to compress: the input `model` artifact of an upstream run (pretrained, fine-tuned) or the
   model the spec builds (an HF folder with weights, a built-in model);
2. evaluates it on the dataset's evaluation split (`quality before`);
3. `variant: activation`: runs `calibration_batches` batches of the training split through it and accumulates,
   per target, the output covariance E[(Wx)(Wx)ᵀ] over the non-padding tokens;
4. decomposes every target (`method: lord`: rank rule, dense where factoring saves nothing) and folds the
   factored layers into `structures.FactoredLinear` modules;
5. evaluates the compressed model (`quality after`, the run's `metrics`);
6. times the original and the compressed model's forward on the same evaluation batches in this process,
   interleaved (`speed_rounds` rounds after a warm-up; median), so the speed-up is a ratio from one run;
7. writes the compressed model as a `model` artifact (structure `factored` with the rank of every layer), ready
   for a `finetune` stage with any PEFT method (the paper's QLoRA-over-LoRD, without quantisation).

`done.stats`: `params_before`, `params_after`, `compression_ratio` (= params_before / params_after),
`param_reduction` (1 − after/before), `target_params_before/after`, `layers_factored`, `layers_dense`,
`mean_rank`, `before_<metric>` for every metric, `speedup` (original / compressed forward time),
`ms_original`, `ms_compressed`, `compress_s` (decomposition time). Nothing is checkpointed: a restart redoes the
compression (seconds to minutes).
"""
from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Dict, List

import torch
from torch import nn

from .. import __version__
from ..build import adapt_facts, data_model_info, resolve_info
from ..errors import EXIT_OK, ConfigError
from ..events import emit, finite_metrics, log
from ..methods.base import adapt_model, find_targets, option
from ..step import model_inputs
from ..structures import FactoredLinear, model_meta, plain_model, plain_state, rebuild_model, structure
from ..train import pick_device
from .base import InputDecl, Procedure, RunContext, register_procedure


@dataclass
class CompressOptions:
    calibration_batches: int = option(8, help="training-split batches (of training.eval_batch_size) whose "
                                              "activations calibrate the activation variant", min=1)
    speed_rounds: int = option(5, help="interleaved timing rounds of the original and the compressed forward "
                                       "(0: do not measure)", min=0)
    speed_batches: int = option(4, help="evaluation batches per timing round", min=1)


@structure("factored")
def apply_factored(model: nn.Module, entry: Dict[str, Any], art) -> None:
    """Replace every listed linear by a FactoredLinear of its rank (the artifact's tensors fill it)."""
    for name, rank in entry["layers"].items():
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        lin = getattr(owner, leaf)
        if not isinstance(lin, nn.Linear):
            raise ConfigError(f"artifact {art.path}: {name} is not a linear layer of this model",
                              hint="pass the artifact of the upstream run the spec names")
        setattr(owner, leaf, FactoredLinear(lin.in_features, lin.out_features, int(rank), lin.bias is not None,
                                            device=lin.weight.device, dtype=lin.weight.dtype))


def _batches(data, collate, n: int, bs: int, device) -> List[Dict[str, Any]]:
    out = []
    for i in range(0, min(len(data), n * bs), bs):
        batch = collate([data[j] for j in range(i, min(i + bs, len(data)))])
        out.append({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
    return out


@torch.no_grad()
def output_covariances(model: nn.Module, names: List[str], batches) -> Dict[str, torch.Tensor]:
    """E[(Wx)(Wx)ᵀ] per named linear over the non-padding tokens of `batches` (float64, on the CPU)."""
    covs: Dict[str, torch.Tensor] = {}
    counts: Dict[str, int] = {}
    mask_now: Dict[str, torch.Tensor] = {}

    def hook(name):
        def f(mod, inp, out):
            y = out if mod.bias is None else out - mod.bias
            y = y.reshape(-1, y.shape[-1]).double()
            m = mask_now.get("m")
            if m is not None and m.numel() == y.shape[0]:
                y = y[m.reshape(-1).bool()]
            covs[name] = covs.get(name, 0) + (y.t() @ y).cpu()
            counts[name] = counts.get(name, 0) + y.shape[0]
        return f

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        model.eval()
        for batch in batches:
            mask_now["m"] = batch.get("attention_mask")
            model(**{k: v for k, v in model_inputs(batch).items() if k != "labels"})
    finally:
        for h in handles:
            h.remove()
    return {n: covs[n] / max(counts[n], 1) for n in names if n in covs}


@torch.no_grad()
def forward_ms(models: List[nn.Module], batches, rounds: int) -> List[float]:
    """Median forward time (ms over `batches`) of each model, timed in interleaved rounds after a warm-up."""
    def once(m) -> float:
        sync = torch.cuda.synchronize if next(m.parameters()).is_cuda else (lambda: None)
        sync()
        t = time.perf_counter()
        for b in batches:
            m(**{k: v for k, v in model_inputs(b).items() if k != "labels"})
        sync()
        return (time.perf_counter() - t) * 1000
    for m in models:
        m.eval()
        once(m)
    times: List[List[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, m in enumerate(models):
            times[i].append(once(m))
    return [statistics.median(t) for t in times]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@register_procedure
class Compress(Procedure):
    name = "compress"
    summary = ("one-shot LoRD compression: factor each target linear into two dense factors (weight SVD or "
               "activation-aware), evaluate before/after, time both forwards, write the compressed model")
    paper = "Kaushal, Vaidhya, Rish, LoRD, arXiv:2309.14021"
    Options = CompressOptions
    inputs = {"model": InputDecl("model", False, "the trained model to compress (default: the model the spec builds)")}
    outputs = {"model": "model"}
    trains = False
    methods = ("lord",)

    def count(self, spec) -> Dict[str, int]:
        from ..build import count
        if spec.inputs:
            return super().count(spec)
        c = count(spec)  # at the rank cap; energy / ratio choose the ranks from the weights (`exact` False)
        return {"trainable": 0, "total": c["total"], "formula": 0, "exact": c["exact"]}

    def run(self, ctx: RunContext) -> int:
        t0 = time.time()
        spec, o = ctx.spec, self.options
        device = pick_device(spec.device)
        info = resolve_info(spec)
        from ..data import evaluate, load_task_data
        td = load_task_data(dict(spec.dataset), data_model_info(info), spec.seed)
        base = ctx.inputs.get("model")
        original = self._original(spec, info, td.num_labels, base).to(device)
        emit("started", pid=os.getpid(), device=str(device), torch=torch.__version__,
             python=platform.python_version(), runtime=__version__, step=0, total_steps=1, trainable_params=0,
             total_params=n_params(original))
        bs = spec.training["eval_batch_size"]
        before = finite_metrics(evaluate(original, td, bs, device))
        reference = copy.deepcopy(original) if o.speed_rounds else None
        method = self._method(spec, original, info, td, device)
        t1 = time.time()
        adapt_model(original, method, spec.method["targets"] or info.default_targets, info.head_name, False,
                    **adapt_facts(spec, info))
        compressed = plain_model(original).to(device)
        compress_s = time.time() - t1
        after = finite_metrics(evaluate(compressed, td, bs, device))
        emit("eval", step=1, split=td.eval_split, metrics=after)
        stats = self._stats(method, reference, compressed, before, td, bs, device, compress_s)
        ctx.write_artifact("model", "model", plain_state(compressed),
                           meta=model_meta(spec, info, td.num_labels, [{"kind": "factored", "layers": method.ranks}],
                                           base=base, metrics=after, compressed_with=dict(spec.method)))
        log.info("compressed %d -> %d parameters (×%.3f), speed-up %.2f", stats["params_before"],
                 stats["params_after"], stats["compression_ratio"], stats.get("speedup", float("nan")))
        emit("done", step=1, metrics=after, best_metrics=after, best_step=1, trainable_params=0,
             total_params=n_params(compressed), wall_time_s=time.time() - t0, stats=stats)
        return EXIT_OK

    # -- pieces ------------------------------------------------------------------------------------------
    @staticmethod
    def _original(spec, info, num_labels, base) -> nn.Module:
        from ..models import build_model
        torch.manual_seed(spec.seed)
        if base is not None:
            return rebuild_model(spec, info, num_labels, base)
        return build_model(spec.model, info, num_labels)

    def _method(self, spec, model, info, td, device):
        from ..build import make_method
        method = make_method(spec)
        if method.options.variant == "activation":
            targets = spec.method["targets"] or info.default_targets
            names = [n for n, _ in find_targets(model, targets, exclude=info.head_name)]
            batches = _batches(td.train, td.collate, self.options.calibration_batches,
                               spec.training["eval_batch_size"], device)
            method.calibration = output_covariances(model, names, batches)
        return method

    def _stats(self, method, reference, compressed, before, td, bs, device, compress_s) -> Dict[str, float]:
        p_before = n_params(reference) if reference is not None else None
        p_after = n_params(compressed)
        shapes = {}
        for n in list(method.ranks) + method.dense:
            m = compressed.get_submodule(n)
            shapes[n] = (m.out_features, m.in_features)
        t_before = sum(o * i for o, i in shapes.values())
        t_after = sum(r * sum(shapes[n]) for n, r in method.ranks.items()) + sum(
            shapes[n][0] * shapes[n][1] for n in method.dense)
        if p_before is None:
            p_before = p_after - t_after + t_before
        stats = {"params_before": float(p_before), "params_after": float(p_after),
                 "compression_ratio": p_before / max(p_after, 1), "param_reduction": 1 - p_after / max(p_before, 1),
                 "target_params_before": float(t_before), "target_params_after": float(t_after),
                 "layers_factored": float(len(method.ranks)), "layers_dense": float(len(method.dense)),
                 "mean_rank": float(sum(method.ranks.values()) / max(len(method.ranks), 1)),
                 "compress_s": compress_s}
        stats.update({f"before_{k}": v for k, v in before.items()})
        if reference is not None and self.options.speed_rounds:
            batches = _batches(td.eval, td.collate, self.options.speed_batches, bs, device)
            ms_o, ms_c = forward_ms([reference, compressed], batches, self.options.speed_rounds)
            stats.update({"ms_original": ms_o, "ms_compressed": ms_c, "speedup": ms_o / max(ms_c, 1e-9)})
        return stats
