"""LoRD: low-rank decomposition of a trained model's linear layers into two dense factors.

Kaushal, Vaidhya, Rish: "LoRD: Low Rank Decomposition of Monolingual Code LLMs for One-Shot Compression", ICML
2024 Workshop FM-Wild, arXiv:2309.14021. No official code was found (the authors' `NolanoOrg` has no LoRD
repository; the released `nolanoAI/lordcoder-v0-*` checkpoints hold the factored models). The abstract fixes the
idea: every large linear W ∈ R^{d_out×d_in} becomes two dense factors W ≈ B·A, B ∈ R^{d_out×r}, A ∈ R^{r×d_in},
both differentiable; ranks are cut by up to 39.58% at < 1% perplexity increase. The factorisation and the rank
rule below are our choices (documented deviations, since the paper body was not available):

* `variant: svd` (data-free): W = U Σ Vᵀ, B = U_r Σ_r^{1/2}, A = Σ_r^{1/2} V_rᵀ (the product is the Eckart–Young
  optimum ‖W − BA‖_F² = Σ_{i>r} σ_i²; Σ is split evenly so both factors are equally scaled for later training).
* `variant: activation` (data-aware, the default of the `compress` procedure): from calibration inputs x the
  output covariance C = E[(Wx)(Wx)ᵀ] = Q Λ Qᵀ; B = Q_r, A = Q_rᵀ W. This is the optimum of E‖Wx − BAx‖² over
  rank r (the best rank-r approximation of W Σ_x^{1/2} is Q_r Q_rᵀ W Σ_x^{1/2}); its error is Σ_{i>r} λ_i. The
  statistics come from one pass of the *original* model (not re-collected after compressing earlier layers).
  The calibration data is given to the method by the `compress` procedure (`method.calibration`).
* Rank per layer (`rank_rule`): `fixed` (r = `method.rank`), `energy` (the smallest r keeping `energy` of the
  spectrum, σ² or λ, capped by `method.rank`), or `ratio` (one energy threshold for every target, found by
  bisection, such that the targets keep at most `ratio` of their parameters).
* A layer where r·(d_in + d_out) ≥ d_in·d_out saves nothing and stays dense (frozen, unwrapped), as the
  abstract's "where it reduces parameters".

As a method (`finetune` with `method: lord`) the factors replace the weight and train; the bias stays frozen.
Trainable per factored layer: r·(d_in + d_out). Compression itself is the `compress` procedure, which folds the
factored layers into `structures.FactoredLinear` modules (`a`: A, `b`: B + bias) and saves the model; any PEFT
method then fine-tunes that model as a second stage (the paper's QLoRA-over-LoRD, without quantisation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .base import AdaptedLinear, Method, find_targets, option, register


def saves(r: int, d_out: int, d_in: int) -> bool:
    return r * (d_in + d_out) < d_out * d_in


@torch.no_grad()
def spectrum(weight: torch.Tensor, cov: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(energies descending, basis): σ² and V for the SVD variant (basis unused), λ and Q for the activation one."""
    w = weight.detach().double()
    if cov is None:
        s = torch.linalg.svdvals(w)
        return s.pow(2), torch.empty(0)
    lam, q = torch.linalg.eigh(cov.double())
    lam, q = lam.flip(0).clamp(min=0), q.flip(1)
    return lam, q


@torch.no_grad()
def decompose(weight: torch.Tensor, rank: int, cov: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with B·A the rank-`rank` approximation of W: weight SVD, or activation-aware with the output
    covariance `cov` (d_out × d_out). Deterministic (LAPACK in float64, signs fixed by the largest entry)."""
    w = weight.detach().double()
    if cov is None:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        u, s, vh = u[:, :rank], s[:rank], vh[:rank]
        sign = torch.sign(u.gather(0, u.abs().argmax(0, keepdim=True))).squeeze(0)
        sign[sign == 0] = 1
        root = s.sqrt()
        b, a = (u * sign) * root, (vh * sign[:, None]) * root[:, None]
    else:
        _, q = spectrum(w, cov)
        q = q[:, :rank]
        sign = torch.sign(q.gather(0, q.abs().argmax(0, keepdim=True))).squeeze(0)
        sign[sign == 0] = 1
        b = q * sign
        a = b.t() @ w
    return a.to(weight.dtype), b.to(weight.dtype)


def rank_for_energy(energies: torch.Tensor, energy: float, cap: int) -> int:
    total = float(energies.sum())
    if total <= 0:
        return 1
    cum = torch.cumsum(energies, 0) / total
    r = int((cum < energy - 1e-12).sum()) + 1
    return max(1, min(r, cap, energies.numel()))


@dataclass
class LoRDOptions:
    variant: str = option("svd", help="svd (data-free weight SVD) or activation (output covariance from "
                                      "calibration data; needs the compress procedure)", choices=["svd", "activation"])
    rank_rule: str = option("fixed", help="fixed (r = method.rank), energy (keep `energy` of the spectrum, rank "
                                          "capped by method.rank) or ratio (one threshold for all targets so they "
                                          "keep at most `ratio` of their parameters)",
                            choices=["fixed", "energy", "ratio"])
    energy: float = option(0.95, help="spectral energy kept per layer (rank_rule energy)", min=0.0, max=1.0)
    ratio: float = option(0.6, help="fraction of the targets' parameters kept (rank_rule ratio)", min=0.0, max=1.0)


class LoRDLinear(AdaptedLinear):
    """W replaced by B·A (both trainable); the bias stays frozen; the dense weight is dropped."""

    def __init__(self, base: nn.Linear, method: LoRD, rank: int, init: Optional[Tuple[torch.Tensor, torch.Tensor]]):
        super().__init__(base, method, None)
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.rank = rank
        self.lord_A = nn.Parameter(torch.empty(rank, self.in_features, **kw))
        self.lord_B = nn.Parameter(torch.empty(self.out_features, rank, **kw))
        if init is not None:
            with torch.no_grad():
                self.lord_A.copy_(init[0])
                self.lord_B.copy_(init[1])
        empty = torch.empty(0, device=base.weight.device, dtype=base.weight.dtype)
        del base.weight
        base.register_buffer("weight", empty, persistent=False)

    def needs_base_out(self) -> bool:
        return False

    def adapter_forward(self, x: torch.Tensor, base_out) -> torch.Tensor:
        h = x.to(self.lord_A.dtype) @ self.lord_A.t()
        y = h @ self.lord_B.t()
        if self.base.bias is not None:
            y = y + self.base.bias.to(y.dtype)
        return y.to(x.dtype)

    def to_plain(self) -> nn.Module:
        from ..structures import FactoredLinear
        f = FactoredLinear(self.in_features, self.out_features, self.rank, bias=self.base.bias is not None,
                           device=self.lord_A.device, dtype=self.lord_A.dtype)
        with torch.no_grad():
            f.a.weight.copy_(self.lord_A)
            f.b.weight.copy_(self.lord_B)
            if self.base.bias is not None:
                f.b.bias.copy_(self.base.bias)
        return f

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.rank}"


@register
class LoRD(Method):
    name = "lord"
    paper = ("Kaushal, Vaidhya, Rish, LoRD: Low Rank Decomposition of Monolingual Code LLMs for One-Shot Compression, "
             "ICML 2024 Workshop (arXiv:2309.14021)")
    Options = LoRDOptions
    needs_rank = True  # the rank (fixed) or the rank cap (energy / ratio)
    init_is_identity = False  # B·A approximates W (exact only at full rank)
    mergeable = False
    foldable = True  # folds to FactoredLinear (structures.py)
    # energy / ratio choose ranks from the weights' spectrum, which the meta device (`count`) does not have
    property_rules = ({"when": {"rank_rule": ["energy", "ratio"]}, "then": {"count_is_exact": False}},)
    option_cases = ({"rank_rule": "energy", "energy": 0.8}, {"rank_rule": "ratio", "ratio": 0.5})
    option_cases_exempt = {"variant": "activation needs calibration inputs, which only the compress procedure "
                                      "supplies (tests/methods/test_lord.py)"}
    count_examples = (
        {"shapes": [(1024, 3072)], "rank": 8, "options": {}, "count": 32_768, "source": "r·(d_in + d_out)"},
        {"shapes": [(32, 32), (48, 32)], "rank": 16, "options": {}, "count": 1_280,
         "source": "32×32 at r = 16 saves nothing (16·64 ≥ 32·32) and stays dense; 48×32: 16·80"},
    )

    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        self.calibration: Dict[str, torch.Tensor] = {}  # target name -> output covariance (compress procedure)
        self.ranks: Dict[str, int] = {}  # target name -> rank chosen (kept-dense targets absent)
        self.dense: List[str] = []  # targets kept dense

    def layer_count(self, d_out, d_in):
        r = min(self.rank, d_out, d_in)
        return r * (d_in + d_out) if saves(r, d_out, d_in) else 0

    def _choose(self, found) -> Dict[str, int]:
        """Rank per target (before the dense-keep rule); on the meta device only the fixed rule is possible."""
        o = self.options
        if o.rank_rule == "fixed" or found[0][1].weight.is_meta:
            return {n: min(self.rank, m.out_features, m.in_features) for n, m in found}
        spectra = {n: spectrum(m.weight, self.calibration.get(n) if o.variant == "activation" else None)[0]
                   for n, m in found}
        if o.rank_rule == "energy":
            return {n: rank_for_energy(spectra[n], o.energy, self.rank) for n, _ in found}
        return self._ratio_ranks(found, spectra)

    def _ratio_ranks(self, found, spectra) -> Dict[str, int]:
        shapes = {n: (m.out_features, m.in_features) for n, m in found}
        budget = self.options.ratio * sum(o * i for o, i in shapes.values())

        def size(tau: float) -> Tuple[float, Dict[str, int]]:
            ranks = {n: rank_for_energy(spectra[n], tau, self.rank) for n in shapes}
            kept = sum((r * (o + i) if saves(r, o, i) else o * i) for n, r in ranks.items() for o, i in [shapes[n]])
            return kept, ranks

        lo, hi = 0.0, 1.0
        best = size(0.0)[1]
        for _ in range(40):
            mid = (lo + hi) / 2
            kept, ranks = size(mid)
            if kept <= budget:
                lo, best = mid, ranks
            else:
                hi = mid
        return best

    def adapt(self, model, targets, ctx):
        o = self.options
        for p in model.parameters():
            p.requires_grad_(False)
        found = find_targets(model, targets, exclude=ctx.head_name)
        if not found:
            raise ConfigError(f"method.targets: no nn.Linear module matches {list(targets)}",
                              hint="name the linear layers to compress (e.g. q_proj, up_proj)")
        if o.variant == "activation" and not found[0][1].weight.is_meta:
            missing = [n for n, _ in found if n not in self.calibration]
            if missing:
                raise ConfigError("method.options.variant: activation needs calibration data, which only the "
                                  "compress procedure collects", hint='use variant "svd", or procedure "compress"')
        chosen = self._choose(found)
        shapes = []
        self.ranks, self.dense, self.targets = {}, [], []
        for name, m in found:
            r = chosen[name]
            if not saves(r, m.out_features, m.in_features):
                self.dense.append(name)
                continue
            init = None if m.weight.is_meta else decompose(
                m.weight, r, self.calibration.get(name) if o.variant == "activation" else None)
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, LoRDLinear(m, self, r, init))
            self.ranks[name] = r
            self.targets.append(name)
            shapes.append((m.out_features, m.in_features))
        return shapes

    def count(self, shapes):
        if self.ranks and len(self.ranks) == len(shapes):
            return sum(r * (o + i) for r, (o, i) in zip(self.ranks.values(), shapes))
        return sum(self.layer_count(o, i) for o, i in shapes)
