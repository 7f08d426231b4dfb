"""`prune`: LoRAM's structured pruning (stage 0) with an optional alignment (stage 1).

Zhang et al., "Train Small, Infer Large: Memory-Efficient LoRA Training for Large Language Models", ICLR 2025,
arXiv:2502.13533; official code `junzhang-zj/LoRAM@ce64e68` (`loram/0_pruned_full_rank_weight_generation.py`,
`1_pruned_full_rank_weight_alignment.py`, `3_recovered_low_rank_matrix_generation.py`,
`modeling_llama3_70b_structured_pruning.py`), read and re-implemented here.

Every decoder layer in `[layer_start, layer_end)` (a module with `q_proj/k_proj/v_proj/o_proj` attention and a
`gate_proj/up_proj/down_proj` MLP: the built-in decoder, Hugging Face Llama and its relatives) loses

* MLP channels: rows of `gate_proj` and `up_proj`, columns of `down_proj` (`mlp_ratio` of them);
* KV groups: the rows of one KV head in `k_proj`/`v_proj` together with the rows of the query heads that share it
  in `q_proj` and their columns in `o_proj` (`attn_ratio` of the groups). With H query heads, H_kv KV heads and
  head size d, KV head g owns k/v rows [g·d, (g+1)·d) and query heads [g·H/H_kv, (g+1)·H/H_kv), i.e. q rows
  [g·(H/H_kv)·d, (g+1)·(H/H_kv)·d) — the official recovery's `kv_start·(H/H_kv) … + d·(H/H_kv)`, matching
  `repeat_kv` / `repeat_interleave` (query head h reads KV head ⌊h / (H/H_kv)⌋).

Importance (`importance`): `magnitude` ranks each structure by the L2 norm of all weights it owns (the group's
rows and columns above), `random` draws the kept set from the run seed (the paper's random-pruning ablation).
The official repository consumes indices computed elsewhere (LLM-Pruner / SparseGPT); magnitude is our choice.

With `align: true` the pruned model is trained by the standard loop on the run's dataset (LoRAM's alignment:
full-parameter continual pretraining; the head stays frozen as in the official `1_…alignment.py`, unless
`align_head`), with the run's method (`full`). The output is the pruned model as a `model` artifact with structure
`pruned` (the kept indices of every pruned layer in the artifact's `index` tensors), which a `finetune` stage
trains LoRA on and a `recover` stage maps back to the full model.

`done.stats`: `params_full`, `params_pruned`, `kept_fraction` (pruned / full), `reduction` (full / pruned),
`mlp_kept`, `kv_groups_kept` (over the pruned layers), `full_<metric>` (the unpruned model) and
`pruned_<metric>` (before alignment); the run's metrics are the final pruned model's.
"""
from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from .. import __version__
from ..build import Built, adapt_facts, data_model_info, resolve_info
from ..errors import EXIT_OK, ConfigError
from ..events import emit, finite_metrics
from ..methods.base import adapt_model, option, total_numel, trainable_numel
from ..structures import model_meta, plain_model, plain_state, rebuild_model, structure
from ..train import Finished, LoopHooks, pick_device, run_training
from .base import InputDecl, Procedure, RunContext, register_procedure

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass
class PruneOptions:
    mlp_ratio: float = option(0.5, help="fraction of each pruned layer's MLP channels removed (official LLaMA-3.1-70B "
                                        "run: 64%)", min=0.0, max=0.99)
    attn_ratio: float = option(0.5, help="fraction of each pruned layer's KV groups (with their query heads) removed "
                                         "(official: 3 of 8)", min=0.0, max=0.99)
    importance: str = option("magnitude", help="magnitude (L2 norm of the structure's weights) or random (seeded)",
                             choices=["magnitude", "random"])
    layer_start: int = option(0, help="first decoder layer pruned (official 70B: 4)", min=0)
    layer_end: Optional[int] = option(None, help="layers from layer_end on are kept whole (official 70B: 78 of 80)",
                                      min=0)
    align: bool = option(False, help="train the pruned model on the run's dataset first (LoRAM's alignment)")
    align_head: bool = option(False, help="with align: train the head too (the official alignment freezes it)")


def decoder_layers(model: nn.Module) -> List[Tuple[str, nn.Module, nn.Module]]:
    """(layer name, attention module, MLP module) of every decoder layer, in order."""
    out = []
    for name, mod in model.named_modules():
        attn = next((c for c in mod.children() if all(hasattr(c, p) for p in ATTN)), None)
        mlp = next((c for c in mod.children() if all(hasattr(c, p) for p in MLP)), None)
        if attn is not None and mlp is not None:
            out.append((name, attn, mlp))
    return out


def _child_name(parent: nn.Module, child: nn.Module) -> str:
    return next(n for n, c in parent.named_children() if c is child)


def head_dim(attn: nn.Module) -> int:
    d = getattr(attn, "head_dim", None)
    if not d:
        raise ConfigError("prune: the attention module has no head_dim", hint="prune a Llama-style decoder")
    return int(d)


def group_rows(groups: torch.Tensor, size: int) -> torch.Tensor:
    """Rows [g·size, (g+1)·size) of every group g, in order."""
    return (groups[:, None] * size + torch.arange(size)[None]).reshape(-1)


def qkv_rows(kv_groups: torch.Tensor, n_q: int, n_kv: int, d: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(q rows, k/v rows) owned by the KV groups (see the module docstring)."""
    rep = n_q // n_kv
    return group_rows(kv_groups, rep * d), group_rows(kv_groups, d)


def _scores(attn, mlp) -> Tuple[torch.Tensor, torch.Tensor]:
    """Magnitude importance: L2 norm of every MLP channel's and every KV group's weights."""
    with torch.no_grad():
        ch = (mlp.gate_proj.weight.float().pow(2).sum(1) + mlp.up_proj.weight.float().pow(2).sum(1)
              + mlp.down_proj.weight.float().pow(2).sum(0)).sqrt()
        d = head_dim(attn)
        n_kv = attn.k_proj.out_features // d
        rep = (attn.q_proj.out_features // d) // n_kv
        k2 = (attn.k_proj.weight.float().pow(2).sum(1) + attn.v_proj.weight.float().pow(2).sum(1)).view(n_kv, d).sum(1)
        q2 = (attn.q_proj.weight.float().pow(2).sum(1) + attn.o_proj.weight.float().pow(2).sum(0)).view(n_kv, rep * d)
        return ch, (k2 + q2.sum(1)).sqrt()


def choose_kept(n: int, ratio: float, scores: Optional[torch.Tensor], gen: Optional[torch.Generator]) -> torch.Tensor:
    keep = max(1, n - int(math.floor(ratio * n + 1e-9)))
    if scores is None:
        idx = torch.randperm(n, generator=gen)[:keep]
    else:
        idx = torch.topk(scores, keep, sorted=False).indices  # ties: lowest index first (deterministic on CPU)
    return torch.sort(idx).values


def _slice(lin: nn.Linear, rows: Optional[torch.Tensor] = None, cols: Optional[torch.Tensor] = None) -> nn.Linear:
    w = lin.weight
    rows = torch.arange(w.shape[0]) if rows is None else rows
    cols = torch.arange(w.shape[1]) if cols is None else cols
    new = nn.Linear(len(cols), len(rows), bias=lin.bias is not None, device=w.device, dtype=w.dtype)
    if not w.is_meta:
        with torch.no_grad():
            new.weight.copy_(w[rows.to(w.device)][:, cols.to(w.device)])
            if lin.bias is not None:
                new.bias.copy_(lin.bias[rows.to(w.device)])
    return new


def prune_layer(attn: nn.Module, mlp: nn.Module, keep_ch: torch.Tensor, keep_kv: torch.Tensor) -> None:
    """Prune one decoder layer in place to the kept MLP channels and KV groups."""
    mlp.gate_proj, mlp.up_proj = _slice(mlp.gate_proj, rows=keep_ch), _slice(mlp.up_proj, rows=keep_ch)
    mlp.down_proj = _slice(mlp.down_proj, cols=keep_ch)
    d = head_dim(attn)
    n_q, n_kv = attn.q_proj.out_features // d, attn.k_proj.out_features // d
    q_rows, kv_rows = qkv_rows(keep_kv, n_q, n_kv, d)
    attn.q_proj = _slice(attn.q_proj, rows=q_rows)
    attn.k_proj, attn.v_proj = _slice(attn.k_proj, rows=kv_rows), _slice(attn.v_proj, rows=kv_rows)
    attn.o_proj = _slice(attn.o_proj, cols=q_rows)
    rep = n_q // n_kv
    for attr, value in (("heads", len(keep_kv) * rep), ("num_heads", len(keep_kv) * rep),
                        ("kv_heads", len(keep_kv)), ("num_key_value_heads", len(keep_kv))):
        if isinstance(getattr(attn, attr, None), int):  # the built-in decoder's and older HF's head counts
            setattr(attn, attr, value)


def prune_model(model: nn.Module, o: PruneOptions, seed: int) -> Dict[str, torch.Tensor]:
    """Prune in place; returns the index map {"<layer>.mlp": kept channels, "<layer>.kv": kept KV groups}."""
    layers = decoder_layers(model)
    if not layers:
        raise ConfigError("prune: the model has no Llama-style decoder layers (q/k/v/o_proj + gate/up/down_proj)",
                          hint="use tiny-decoder or a Hugging Face Llama-family model")
    end = len(layers) if o.layer_end is None else min(o.layer_end, len(layers))
    gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    index: Dict[str, torch.Tensor] = {}
    for name, attn, mlp in layers[o.layer_start:end]:
        d = head_dim(attn)
        n_kv = attn.k_proj.out_features // d
        ch_s, kv_s = _scores(attn, mlp) if o.importance == "magnitude" else (None, None)
        keep_ch = choose_kept(mlp.gate_proj.out_features, o.mlp_ratio, ch_s, gen)
        keep_kv = choose_kept(n_kv, o.attn_ratio, kv_s, gen)
        prune_layer(attn, mlp, keep_ch, keep_kv)
        index[f"{name}.mlp"], index[f"{name}.kv"] = keep_ch, keep_kv
    return index


def layer_modules(model: nn.Module) -> Dict[str, Tuple[nn.Module, nn.Module]]:
    return {name: (attn, mlp) for name, attn, mlp in decoder_layers(model)}


@structure("pruned")
def apply_pruned(model: nn.Module, entry: Dict[str, Any], art) -> None:
    """Prune a fresh model to the artifact's kept indices (its tensors then fill the pruned shapes)."""
    index = art.extra(entry.get("index", "index"))
    mods = layer_modules(model)
    for layer in entry["layers"]:
        if layer not in mods:
            raise ConfigError(f"artifact {art.path}: the model has no decoder layer {layer}",
                              hint="pass the artifact of the upstream run the spec names")
        attn, mlp = mods[layer]
        prune_layer(attn, mlp, index[f"{layer}.mlp"], index[f"{layer}.kv"])


def pruned_entry(index: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    layers = sorted({k.rsplit(".", 1)[0] for k in index}, key=lambda n: [int(p) if p.isdigit() else p
                                                                          for p in n.split(".")])
    return {"kind": "pruned", "index": "index", "layers": layers,
            "sizes": {ln: {"mlp": int(index[f"{ln}.mlp"].numel()), "kv_groups": int(index[f"{ln}.kv"].numel())}
                      for ln in layers}}


@register_procedure
class Prune(Procedure):
    name = "prune"
    summary = ("LoRAM stage 0/1: structured pruning of MLP channels and KV groups (magnitude or random), optional "
               "alignment training, the pruned model with its index map as an artifact")
    paper = "Zhang et al., Train Small, Infer Large (LoRAM), ICLR 2025 (arXiv:2502.13533)"
    Options = PruneOptions
    inputs = {"model": InputDecl("model", False, "the model to prune (default: the model the spec builds)")}
    outputs = {"model": "model"}
    methods = ("full",)

    def check(self, spec) -> None:
        super().check(spec)
        o = self.options
        if o.layer_end is not None and o.layer_end <= o.layer_start:
            raise ConfigError("procedure.options.layer_end: must be above layer_start",
                              hint="leave layer_end null to prune every layer from layer_start")

    def count(self, spec) -> Dict[str, int]:
        """The pruned model's size (it depends on the ratios only, not on which structures go)."""
        from ..models import build_model
        if spec.inputs:
            return super().count(spec)
        info = resolve_info(spec)
        with torch.device("meta"):
            model = build_model(spec.model, info, None, weights=False)
        _meta_prune(model, self.options)
        total = total_numel(model)
        trainable = total if self.options.align else 0
        if self.options.align and not self.options.align_head and info.head_name:
            trainable -= sum(p.numel() for p in model.get_submodule(info.head_name).parameters())
        return {"trainable": trainable, "total": total, "formula": trainable}

    def run(self, ctx: RunContext) -> int:
        from ..data import evaluate, load_task_data
        spec, o = ctx.spec, self.options
        t0 = time.time()
        device = pick_device(spec.device)
        info = resolve_info(spec)
        base = ctx.inputs.get("model")
        state: Dict[str, Any] = {}

        def build_pruned(spec_, info_, num_labels, device_) -> Built:
            from ..build import make_method
            from ..models import build_model
            torch.manual_seed(spec.seed)
            model = rebuild_model(spec, info_, num_labels, base) if base is not None else build_model(
                spec.model, info_, num_labels)
            td = state.get("td") or load_task_data(dict(spec.dataset), data_model_info(info_), spec.seed)
            bs = spec.training["eval_batch_size"]
            model.to(device_)
            state["full"] = finite_metrics(evaluate(model, td, bs, device_))
            state["params_full"] = total_numel(model)
            state["index"] = prune_model(model, o, spec.seed)
            state["pruned"] = finite_metrics(evaluate(model, td, bs, device_))
            method = make_method(spec)
            shapes, formula = adapt_model(model, method, [], info_.head_name, False, **adapt_facts(spec, info_))
            if not o.align_head and info_.head_name:
                for p in model.get_submodule(info_.head_name).parameters():
                    p.requires_grad_(False)
            return Built(model, method, info_, shapes, trainable_numel(model), trainable_numel(model),
                         total_numel(model))

        def finish(f: Finished) -> Dict[str, float]:
            model = plain_model(f.model)
            meta = model_meta(spec, f.info, f.task_data.num_labels, [pruned_entry(state["index"])], base=base,
                              metrics=dict(f.metrics), pruned_with=dict(spec.procedure["options"]))
            ctx.write_artifact("model", "model", plain_state(model), meta=meta, extras={"index": state["index"]})
            return self._stats(state, total_numel(model))

        if o.align:
            return run_training(spec, ctx.out_dir, resume=ctx.resume, stop_at_step=ctx.stop_at_step,
                                hooks=LoopHooks(build=build_pruned, finish=finish))
        td = state["td"] = load_task_data(dict(spec.dataset), data_model_info(info), spec.seed)
        built = build_pruned(spec, info, td.num_labels, device)
        emit("started", pid=os.getpid(), device=str(device), torch=torch.__version__,
             python=platform.python_version(), runtime=__version__, step=0, total_steps=1, trainable_params=0,
             total_params=built.total)
        metrics = state["pruned"]
        emit("eval", step=1, split=td.eval_split, metrics=metrics)
        stats = finish(Finished(model=built.model, method=built.method, built=built, info=info, task_data=td,
                                metrics=metrics, step=1, device=device, tokens_per_s=None, peak_mem_mb=0.0))
        emit("done", step=1, metrics=metrics, best_metrics=metrics, best_step=1, trainable_params=0,
             total_params=built.total, wall_time_s=time.time() - t0, stats=stats)
        return EXIT_OK

    @staticmethod
    def _stats(state: Dict[str, Any], params_pruned: int) -> Dict[str, float]:
        index = state["index"]
        stats = {"params_full": float(state["params_full"]), "params_pruned": float(params_pruned),
                 "kept_fraction": params_pruned / state["params_full"],
                 "reduction": state["params_full"] / max(params_pruned, 1),
                 "mlp_kept": float(sum(v.numel() for k, v in index.items() if k.endswith(".mlp"))),
                 "kv_groups_kept": float(sum(v.numel() for k, v in index.items() if k.endswith(".kv")))}
        stats.update({f"full_{k}": v for k, v in state["full"].items()})
        stats.update({f"pruned_{k}": v for k, v in state["pruned"].items()})
        return stats


def _meta_prune(model: nn.Module, o: PruneOptions) -> None:
    """Shapes only (count): prune the first channels / groups (sizes do not depend on which)."""
    layers = decoder_layers(model)
    end = len(layers) if o.layer_end is None else min(o.layer_end, len(layers))
    for _, attn, mlp in layers[o.layer_start:end]:
        n_ch, n_kv = mlp.gate_proj.out_features, attn.k_proj.out_features // head_dim(attn)
        prune_layer(attn, mlp, choose_kept(n_ch, o.mlp_ratio, torch.arange(n_ch, 0, -1).float(), None),
                    choose_kept(n_kv, o.attn_ratio, torch.arange(n_kv, 0, -1).float(), None))
