"""SALT: scale and shift the top-r singular values, low-rank update of the remaining singular block.

Paper: Abdelrahman Elsayed, Sarim Hashmi, Mohammed Elseiagy, Hu Wang, Mohammad Yaqub, Ibrahim Almakky, "SALT: Singular
Value Adaptation with Low-Rank Transformation", arXiv:2503.16055 (2025; BMVC 2025 per the official README).
Official code: github.com/BioMedIA-MBZUAI/SALT (`prompt_adapted_segment_anything/modeling/SALT.py`, read at 7314877).

Method (as the official SAM code does it)
-----------------------------------------
Thin SVD of the frozen weight, `W0 = U Σ Vᵀ`, k = min(d_out, d_in). Trainable: a scale a ∈ R^r (init 1) and a shift
b ∈ R^r (init 0) for the top r singular values, and X ∈ R^{(k-r)×r_L}, Y ∈ R^{r_L×(k-r)} for the rest. The new
singular matrix is block diagonal,

    Σ' = [[diag(a ⊙ σ_top + b), 0], [0, diag(σ_rest) + X Y]],     W = U · ReLU(Σ') · Vᵀ,

with ReLU applied element-wise to the whole Σ' (so negative entries of the dense X Y block are clipped too).
The optional regulariser is reg_multiplier · Σ_layers (‖diag(a⊙σ+b) − diag(σ)‖_F + ‖X Y‖_F), added to the loss
(`reg_multiplier` 0 in the released config).

Trainable parameters per (d_out, d_in) layer: 2·r + 2·r_L·(k − r) (the count the official code prints),
r clamped to k.

Defaults: X, Y = randn·0.01 (init "randn", the SAM code used for the paper; W ≠ W0 at start, which is why
`init_is_identity` is False), r_L = 8 (the SALTLinear default; the commented experiment lines use r_L 4 or 256),
reg_multiplier 0. The later SAM2 code initialises X Kaiming-uniform (ReLU gain, fan-in r_L; its `a = √20` is
ignored for the ReLU gain) and Y = 0 (init "kaiming_zero", W = W0 at start).

Seeding of X, Y (`init_seed`). Every official SALTLinear (SAM and SAM2 code) calls `torch.manual_seed(seed)` with
its default `seed = 42` right before drawing X and Y, so all layers of one shape start from **identical** X, Y,
and the initialisation is the same whatever the run seed. Our default (`init_seed` null) draws each layer's X, Y
in turn from the run-seeded RNG: layers differ and the seeds of a sweep differ, which is what seed variation is
for. `init_seed: 42` reproduces the official initialisation exactly (each layer draws from a fresh CPU generator
seeded 42: the same numbers as the official `torch.manual_seed(42)` then `torch.randn`), without the official
side effect of resetting the global RNG for everything drawn after the layer.

Implementation notes and deviations
-----------------------------------
* The weight is rebuilt every forward, as in the official code, but as W0 + ΔW with
  ΔW = U_top diag(ReLU(aσ+b) − σ) V_topᵀ + U_rest (ReLU(diag(σ_rest) + XY) − diag(σ_rest)) V_restᵀ, which equals
  U ReLU(Σ') Vᵀ in exact arithmetic but keeps the SVD round-off out of the layer (ΔW = 0 exactly when X Y = 0).
* U, Σ, V are non-persistent buffers recomputed from W0 at setup (deterministic on one device type).
* The official layer returns (output, reg_loss) from forward; here the layer returns the output and the
  regulariser comes from the method's `extra_loss` hook.
* r is clamped per layer to k.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import AdaptedLinear, Method, TrainContext, adapted_layers, option, register


@dataclass
class SALTOptions:
    r_lora: int = option(8, help="rank r_L of the X Y update of the residual singular block (SALTLinear default 8)",
                         min=1)
    init: str = option("randn", help="X, Y init: 'randn' (both randn·0.01, SAM code of the paper) or "
                                     "'kaiming_zero' (X Kaiming-uniform, Y = 0, later SAM2 code)",
                       choices=["randn", "kaiming_zero"])
    reg_multiplier: float = option(0.0, help="weight of the ‖scale/shift term‖_F + ‖XY‖_F regulariser "
                                             "(0 in the released config)", min=0.0)
    init_seed: Optional[int] = option(None, help="re-seed every layer's X, Y draw with this value, as the official "
                                                 "code (42: same-shape layers start identical); null: each layer "
                                                 "draws in turn from the run-seeded RNG", min=0)


class SALTLinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: SALT, shared=None):
        super().__init__(base, method, shared)
        opts = method.options
        k = min(self.out_features, self.in_features)
        r = min(method.rank, k)
        self.r, self.k = r, k
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.trainable_scale_A = nn.Parameter(torch.ones(r, **kw))
        self.trainable_shift_B = nn.Parameter(torch.zeros(r, **kw))
        rest = k - r
        if rest > 0:
            self.trainable_X = nn.Parameter(torch.empty(rest, opts.r_lora, **kw))
            self.trainable_Y = nn.Parameter(torch.empty(opts.r_lora, rest, **kw))
        else:
            self.trainable_X = self.trainable_Y = None
        if self.on_meta:
            U, S, Vh = (torch.empty(self.out_features, k, **kw), torch.empty(k, **kw),
                        torch.empty(k, self.in_features, **kw))
        else:
            U, S, Vh = torch.linalg.svd(base.weight.detach().float(), full_matrices=False)
            U, S, Vh = U.to(**kw), S.to(**kw), Vh.to(**kw)
            if rest > 0:
                self._init_xy(rest, opts)
        self.register_buffer("U", U, persistent=False)
        self.register_buffer("S", S, persistent=False)
        self.register_buffer("Vh", Vh, persistent=False)

    @torch.no_grad()
    def _init_xy(self, rest: int, opts: SALTOptions) -> None:
        """X, Y on the CPU, from the run-seeded global RNG or (init_seed) a generator re-seeded per layer."""
        g = None if opts.init_seed is None else torch.Generator().manual_seed(opts.init_seed)
        if opts.init == "randn":
            self.trainable_X.copy_(torch.randn(rest, opts.r_lora, generator=g) * 0.01)
            self.trainable_Y.copy_(torch.randn(opts.r_lora, rest, generator=g) * 0.01)
        else:
            bound = math.sqrt(6.0 / opts.r_lora)  # kaiming_uniform_, relu gain, fan_in = r_L
            self.trainable_X.copy_(torch.empty(rest, opts.r_lora).uniform_(-bound, bound, generator=g))
            self.trainable_Y.zero_()

    def lora_term(self) -> Optional[torch.Tensor]:
        return None if self.trainable_X is None else self.trainable_X @ self.trainable_Y

    def delta_weight(self) -> torch.Tensor:
        r = self.r
        s_top = self.S[:r]
        top = F.relu(self.trainable_scale_A * s_top + self.trainable_shift_B) - s_top
        delta = (self.U[:, :r] * top) @ self.Vh[:r]
        xy = self.lora_term()
        if xy is not None:
            s_rest = torch.diag(self.S[r:])
            block = F.relu(s_rest + xy) - s_rest
            delta = delta + self.U[:, r:] @ block @ self.Vh[r:]
        return delta

    def needs_base_out(self) -> bool:
        return False

    def adapter_forward(self, x, base_out):
        delta = self.delta_weight()
        w = self.base.weight.to(delta.dtype) + delta
        b = self.base.bias.to(delta.dtype) if self.base.bias is not None else None
        return F.linear(x.to(w.dtype), w, b).to(x.dtype)

    def reg_loss(self) -> torch.Tensor:
        s_top = self.S[: self.r]
        reg = torch.linalg.vector_norm((self.trainable_scale_A - 1) * s_top + self.trainable_shift_B)
        xy = self.lora_term()
        if xy is not None:
            reg = reg + torch.linalg.matrix_norm(xy)
        return reg


@register
class SALT(Method):
    name = "salt"
    paper = ("Elsayed, Hashmi, Elseiagy, Wang, Yaqub, Almakky, SALT: Singular Value Adaptation with Low-Rank "
             "Transformation, arXiv:2503.16055 (2025), BMVC 2025")
    Options = SALTOptions
    needs_rank = True
    init_is_identity = False  # default init "randn": X Y = randn·0.01 products, as the official SAM code
    property_rules = ({"when": {"init": ["kaiming_zero"]}, "then": {"init_is_identity": True}},)  # Y = 0
    mergeable = True
    option_cases = ({"init": "kaiming_zero"}, {"reg_multiplier": 0.1}, {"init_seed": 42}, {"r_lora": 2})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 65_088, "source": "methods.md §1, r_L = 8"},
        {"shapes": [(1024, 3072)], "rank": 8, "options": {}, "count": 16_272, "source": "2·8 + 2·8·(1024−8)"},
        {"shapes": [(10, 6)], "rank": 100, "options": {}, "count": 12, "source": "r clamped to k = 6: 2·6"},
    )

    def layer_count(self, d_out, d_in):
        k = min(d_out, d_in)
        r = min(self.rank, k)
        return 2 * r + 2 * self.options.r_lora * (k - r)

    def wrap(self, name, base, shared):
        return SALTLinear(base, self, shared)

    def extra_loss(self, ctx: TrainContext) -> Optional[torch.Tensor]:
        if self.options.reg_multiplier == 0:
            return None
        layers = [m for m in adapted_layers(ctx.model) if isinstance(m, SALTLinear)]
        return self.options.reg_multiplier * sum(m.reg_loss() for m in layers)
