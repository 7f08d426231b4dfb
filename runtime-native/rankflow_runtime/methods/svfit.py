"""SVFit: train only the top-r singular values of the pretrained weight.

Paper: Chengwei Sun, Jiwei Wei, Yujia Wu, Yiming Shi, Shiyuan He, Zeyu Ma, Ning Xie, Yang Yang, "SVFit:
Parameter-Efficient Fine-Tuning of Large Pre-Trained Models Using Singular Values", arXiv:2409.05926 (2024).
No official code was found (searched GitHub and the paper page); this follows the paper's description.

Method
------
Thin SVD `W0 = U Σ Vᵀ` (fp32, once). Split `W0 = W_r + W_e` with `W_r = U_r Σ_r V_rᵀ` the best rank-r approximation
and `W_e` the residual. `U_r`, `V_r` and `W_e` are frozen; the r singular values σ ∈ R^r are the only trainable
tensor, initialised to Σ_r, so the layer starts equal to the base:

    W = U_r diag(σ) V_rᵀ + W_e = W0 + U_r diag(σ - Σ_r) V_rᵀ.

Trainable parameters per (d_out, d_in) layer: r_l = min(r, min(d_out, d_in)).

Implementation notes and deviations
-----------------------------------
* The base weight stays W0 and the update is the rank-r branch U_r((σ - Σ_r) ⊙ V_rᵀx): identical to
  U_r diag(σ) V_rᵀ + W_e in exact arithmetic, exactly W0 at init, and LoRA-cost per token.
* The paper picks r so the top-r values "capture over 99% of the matrix's information"; here r is the run's rank
  (a sweep axis), so the parameter count is known before any weight is loaded. No clamp or activation is applied
  to σ (the paper describes none).
* U_r, Σ_r, V_r are non-persistent buffers recomputed from W0 at setup (deterministic on one device type;
  joint sign flips of a singular pair leave the update unchanged); a checkpoint holds only the r values.
* r is clamped per layer to min(d_out, d_in).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import AdaptedLinear, Method, register


@dataclass
class SVFitOptions:
    """SVFit has no options besides the rank (the number of trainable singular values per layer)."""


def top_svd(w: torch.Tensor, r: int):
    """(U_r, Σ_r, V_rᵀ) of the thin SVD of w in fp32."""
    U, S, Vh = torch.linalg.svd(w.detach().float(), full_matrices=False)
    return U[:, :r].contiguous(), S[:r].contiguous(), Vh[:r].contiguous()


class SVFitLinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: SVFit, shared=None):
        super().__init__(base, method, shared)
        r = method.layer_rank(self.out_features, self.in_features)
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.sigma = nn.Parameter(torch.empty(r, **kw))
        if self.on_meta:
            U, S, Vh = (torch.empty(self.out_features, r, **kw), torch.empty(r, **kw),
                        torch.empty(r, self.in_features, **kw))
        else:
            U, S, Vh = (t.to(**kw) for t in top_svd(base.weight, r))
            with torch.no_grad():
                self.sigma.copy_(S)
        self.register_buffer("U", U, persistent=False)
        self.register_buffer("S", S, persistent=False)
        self.register_buffer("Vh", Vh, persistent=False)

    def adapter_forward(self, x, base_out):
        h = x.to(self.Vh.dtype) @ self.Vh.t()
        delta = (h * (self.sigma - self.S)) @ self.U.t()
        return base_out + delta.to(base_out.dtype)

    def delta_weight(self):
        return (self.U * (self.sigma - self.S)) @ self.Vh


@register
class SVFit(Method):
    name = "svfit"
    paper = ("Sun, Wei, Wu, Shi, He, Ma, Xie, Yang, SVFit: Parameter-Efficient Fine-Tuning of Large Pre-Trained Models "
             "Using Singular Values, arXiv:2409.05926 (2024)")
    Options = SVFitOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 32, "source": "methods.md §1: r"},
        {"shapes": [(16, 48)], "rank": 20, "options": {}, "count": 16, "source": "r clamped to min(d_out, d_in)"},
    )

    def layer_rank(self, d_out: int, d_in: int) -> int:
        return min(self.rank, d_out, d_in)

    def layer_count(self, d_out, d_in):
        return self.layer_rank(d_out, d_in)

    def wrap(self, name, base, shared):
        return SVFitLinear(base, self, shared)
