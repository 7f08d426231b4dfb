"""LoLDU: train only the diagonal of an LDU decomposition of the pretrained weight.

Paper: Yiming Shi, Jiwei Wei, Yujia Wu, Ran Ran, Chengwei Sun, Shiyuan He, Yang Yang, "LoLDU: Low-Rank Adaptation
via Lower-Diag-Upper Decomposition for Parameter-Efficient Fine-Tuning", arXiv:2410.13618 (2024).
Official code: github.com/SKDDJ/LoLDU (`minloldu/loldu.py`, read at 4fe87a0).

Method (as the official code does it)
-------------------------------------
Once, in fp32: LU with partial pivoting `W0 = P L U` (torch.linalg.lu), `D = diag(U)`, `U <- U / D` (rows, so U has a
unit diagonal). Keep the leading r components `L_r = L[:, :r]`, `D_r`, `U_r = U[:r]`. The frozen weight becomes the
residual `W_res = W0 - s0·P L_r diag(D_r) U_r` and the layer computes

    W = W_res + s·P L_r diag(z) U_r,        z ∈ R^r trainable, initialised to D_r (init "lu"), s = alpha / r.

So W = W0 exactly at initialisation. Only `z` trains (the official `get_loldu_params` returns only `vector_z`); with
`train_scale` the scalar s trains too (the official code stores it as an nn.Parameter; its parameter helper leaves
it out).

Trainable parameters per (d_out, d_in) layer: r_l (+1 with train_scale), r_l = min(r, min(d_out, d_in)).

Defaults (official code): alpha = 1 (`from_linear`), so s = 1/r; init "lu". The README example uses rank 15,
`default_loldu_config` rank 768.

Deviations (exact in exact arithmetic, recorded here)
-----------------------------------------------------
* The base weight is left untouched and the update is applied as a low-rank branch:
  W_res + s·P L_r diag(z) U_r = W0 + P L_r diag(s·z - s0·D_r) U_r. The forward is therefore
  y = W0 x + (P L_r)·((s·z - s0·D_r) ⊙ (U_r x)), a LoRA-cost path, instead of the official dense
  reconstruction of P L diag(z) U with a stored d_out×d_out permutation matrix. The permutation is folded into
  L_r once (a row gather); P is never stored.
* The factors (P L_r, U_r, D_r) are non-persistent buffers recomputed from W0 at setup, so a checkpoint holds
  only the r (or r+1) trained numbers per layer; the recomputation is deterministic on the same device type.
* A zero pivot D_i (rank-deficient W0) cannot be divided out; that row of U is kept unnormalised and D_i is
  recorded as 1, which keeps P L diag(D) U = P L U exact (the official code would divide by zero).
* r is clamped per layer to k = min(d_out, d_in), and the count says so (min(r, k) per layer). The official code
  does not refuse a larger r: `L[:, :r]`, `D[:r]` and `U[:r]` silently keep k components, so with init `lu` (and
  `uniform`, `normal`, `constant`, which start from D_r) z gets k entries, fewer than the r asked for, while with
  `ones` / `zeros` z keeps r entries and the first forward fails on the shape mismatch of L_r diag(z).
* The official init alternatives are kept: "ones", "zeros", "constant" (mean of D_r), "uniform"
  (U(-|m|/2, |m|/2), m = mean of D_r), "normal" (N(mean, std) of D_r). With any of them W != W0 at start, as in
  the official code (the residual always subtracts the D_r term).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import AdaptedLinear, Method, option, register


@dataclass
class LoLDUOptions:
    alpha: float = option(1.0, help="scale numerator: s = alpha / r (official from_linear default 1)", min=0.0)
    train_scale: bool = option(False, help="also train the scalar s (r+1 trainable numbers per layer)")
    init: str = option("lu", help="initial z: the LDU diagonal D_r ('lu', W = W0 at start) or an official "
                                  "alternative", choices=["lu", "ones", "zeros", "constant", "uniform", "normal"])


def ldu_factors(w: torch.Tensor, r: int):
    """(P L_r, D_r, U_r) of W = P L D U with partial pivoting, in fp32; P is folded into L_r's rows."""
    P, L, U = torch.linalg.lu(w.detach().float())
    d = torch.diagonal(U).clone()
    safe = torch.where(d == 0, torch.ones_like(d), d)
    U = U / safe.unsqueeze(-1)
    rows = P.argmax(dim=1)  # (P M)[i] = M[rows[i]]
    return L[:, :r][rows].contiguous(), safe[:r].contiguous(), U[:r].contiguous()


class LoLDULinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: LoLDU, shared=None):
        super().__init__(base, method, shared)
        opts = method.options
        r = method.layer_rank(self.out_features, self.in_features)
        self.r = r
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.s0 = opts.alpha / method.rank
        self.vector_z = nn.Parameter(torch.empty(r, **kw))
        if opts.train_scale:
            self.scaling = nn.Parameter(torch.tensor(self.s0, **kw))
        else:
            self.register_buffer("scaling", torch.tensor(self.s0, **kw), persistent=False)
        if self.on_meta:
            self.register_buffer("PL", torch.empty(self.out_features, r, **kw), persistent=False)
            self.register_buffer("D", torch.empty(r, **kw), persistent=False)
            self.register_buffer("U", torch.empty(r, self.in_features, **kw), persistent=False)
            return
        PL, D, U = ldu_factors(base.weight, r)
        self.register_buffer("PL", PL.to(**kw), persistent=False)
        self.register_buffer("D", D.to(**kw), persistent=False)
        self.register_buffer("U", U.to(**kw), persistent=False)
        with torch.no_grad():
            self._init_z(opts.init)

    def _init_z(self, how: str) -> None:
        z, d = self.vector_z, self.D
        if how == "lu":
            z.copy_(d)
        elif how == "ones":
            z.fill_(1.0)
        elif how == "zeros":
            z.zero_()
        elif how == "constant":
            z.fill_(float(d.mean()))
        elif how == "uniform":
            m = abs(float(d.mean()))
            z.uniform_(-m / 2, m / 2)
        elif how == "normal":
            z.normal_(float(d.mean()), float(d.std()) if d.numel() > 1 else 0.0)

    def coef(self) -> torch.Tensor:
        """s·z - s0·D_r: the diagonal of the update in the (P L_r, U_r) basis (zero at the 'lu' init)."""
        return self.scaling * self.vector_z - self.s0 * self.D

    def adapter_forward(self, x, base_out):
        h = x.to(self.U.dtype) @ self.U.t()
        delta = (h * self.coef()) @ self.PL.t()
        return base_out + delta.to(base_out.dtype)

    def delta_weight(self):
        return (self.PL * self.coef()) @ self.U


@register
class LoLDU(Method):
    name = "loldu"
    paper = ("Shi, Wei, Wu, Ran, Sun, He, Yang, LoLDU: Low-Rank Adaptation via Lower-Diag-Upper Decomposition for "
             "Parameter-Efficient Fine-Tuning, arXiv:2410.13618 (2024)")
    Options = LoLDUOptions
    needs_rank = True
    init_is_identity = True  # with the default init "lu"; every other init starts from W != W0
    property_rules = ({"when": {"init": ["ones", "zeros", "constant", "uniform", "normal"]},
                       "then": {"init_is_identity": False}},)
    mergeable = True
    option_cases = tuple({"init": i} for i in ("ones", "zeros", "constant", "uniform", "normal")) + (
        {"train_scale": True}, {"alpha": 4.0})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 32, "source": "methods.md §1: r"},
        {"shapes": [(1024, 3072)], "rank": 2000, "options": {}, "count": 1024, "source": "r clamped to min(d_out, d_in)"},
        {"shapes": [(33, 17)], "rank": 4, "options": {"train_scale": True}, "count": 5, "source": "r + 1 (the scale)"},
    )

    def layer_rank(self, d_out: int, d_in: int) -> int:
        return min(self.rank, d_out, d_in)

    def layer_count(self, d_out, d_in):
        return self.layer_rank(d_out, d_in) + (1 if self.options.train_scale else 0)

    def wrap(self, name, base, shared):
        return LoLDULinear(base, self, shared)
