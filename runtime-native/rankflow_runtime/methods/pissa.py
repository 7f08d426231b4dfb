"""PiSSA: principal singular values and singular vectors adaptation.

Meng, Wang, Zhang, "PiSSA: Principal Singular Values and Singular Vectors Adaptation of Large Language
Models", NeurIPS 2024, arXiv:2404.02948. Official code: GraphPKU/PiSSA; reference implementation: Hugging Face
PEFT (`LoraConfig(init_lora_weights="pissa" | "pissa_niter_<k>")`, `LoraLayer.pissa_init`).

Same architecture as LoRA (y = W_res x + s·B A x), different initialisation:

    W0 = U S Vᵀ,   A = diag(√(S_r / s)) V_rᵀ,   B = U_r diag(√(S_r / s)),   W_res = W0 − s·B A

* The principal (top-r) part of W0 goes into the trainable factors, the frozen base weight is replaced by the
  residual W_res, so the adapted model equals the base model at the start (up to float rounding).
* The SVD runs in float32 on the layer's device (float64 for a float64 model); the residual is cast back to
  the base weight's dtype.
* `svd_niter`: when set, the fast randomised `torch.svd_lowrank(W0, q=r, niter=k)` replaces the full SVD
  (PEFT's "pissa_niter_k"); its random draws come from a seeded, forked RNG so a resume recomputes the
  same residual.
* s = α/r; the official README uses α = r (s = 1), which is the default here (PEFT's generic LoRA default α = 8).

Trainable parameters per layer: **r·(d_in + d_out)** (as LoRA).

The initial factors A0, B0 are kept as non-persistent buffers (recomputed at setup, never checkpointed): the
PEFT export (`export_peft.py`) needs them to convert a trained PiSSA adapter into a LoRA that applies to the
*original* weights, ΔW = s·(B A − B0 A0) = [B, −B0]·[A; A0] at rank 2r with α doubled, which is PEFT's own
PiSSA-to-LoRA conversion (`save_pretrained(path_initial_model_for_weight_conversion=...)`).
Merging adds s·B A to the residual (additive, exact unmerge).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from .base import LowRankLinear, Method, option, register


@dataclass
class PiSSAOptions:
    alpha: Optional[float] = option(None, help="scaling numerator α, s = α/r; default r (s = 1, the official "
                                               "README)", min=0.0)
    dropout: float = option(0.0, help="dropout probability on the adapter path input (official README: 0)",
                            min=0.0, max=1.0)
    svd_niter: Optional[int] = option(None, help="use the fast randomised SVD (torch.svd_lowrank) with this many "
                                                 "subspace iterations, as PEFT's pissa_niter_k; default: full SVD",
                                      min=0)


class PiSSALinear(LowRankLinear):
    def __init__(self, base: nn.Linear, method: PiSSA, name: str):
        super().__init__(base, method, None)
        r, opts = method.rank, method.options
        if r > min(self.in_features, self.out_features):
            raise ConfigError(f"method.rank: PiSSA rank {r} exceeds min(d_out, d_in) = "
                              f"{min(self.in_features, self.out_features)} of layer {name}",
                              hint="lower method.rank or exclude that layer from method.targets")
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.scaling = method.alpha() / r
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, r, **kw))
        self.register_buffer("init_A", torch.empty(r, self.in_features, **kw), persistent=False)
        self.register_buffer("init_B", torch.empty(self.out_features, r, **kw), persistent=False)
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()
        if not self.on_meta:
            self._pissa_init(r, opts.svd_niter, method.svd_seed(name))

    @torch.no_grad()
    def _pissa_init(self, r: int, niter: Optional[int], seed: int) -> None:
        w = self.base.weight
        dtype = w.dtype
        w32 = w.to(torch.float64 if dtype == torch.float64 else torch.float32)
        if niter is None:
            u, s, vh = torch.linalg.svd(w32, full_matrices=False)
            u, s, vh = u[:, :r], s[:r], vh[:r]
        else:
            devices = [w.device.index or 0] if w.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                u, s, v = torch.svd_lowrank(w32, q=r, niter=niter)
            vh = v.t()
        root = torch.sqrt(s / self.scaling)
        a = root[:, None] * vh
        b = u * root[None, :]
        self.lora_A.copy_(a)
        self.lora_B.copy_(b)
        self.init_A.copy_(a)
        self.init_B.copy_(b)
        self.base.weight.copy_((w32 - self.scaling * (b @ a)).to(dtype))


@register
class PiSSA(Method):
    name = "pissa"
    paper = ("Meng, Wang, Zhang, PiSSA: Principal Singular Values and Singular Vectors Adaptation of Large "
             "Language Models, NeurIPS 2024 (arXiv:2404.02948)")
    Options = PiSSAOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    option_cases = ({"dropout": 0.2}, {"svd_niter": 4}, {"alpha": 8.0})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 262_144, "source": "methods.md §1"},
        {"shapes": [(1024, 3072)], "rank": 8, "options": {}, "count": 32_768, "source": "8·(3072+1024)"},
    )

    def alpha(self) -> float:
        return float(self.options.alpha) if self.options.alpha is not None else float(self.rank)

    def svd_seed(self, name: str) -> int:
        return (int(self.seed) * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63)

    def layer_count(self, d_out, d_in):
        return self.rank * (d_in + d_out)

    def wrap(self, name, base, shared):
        return PiSSALinear(base, self, name)
