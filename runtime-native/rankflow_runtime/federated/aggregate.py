"""Server-side aggregation of client LoRA factors, per adapted layer, in float64.

Notation (LoRA, ΔW = s·B·A with A ∈ R^{r×d_in}, B ∈ R^{d_out×r}): the sampled clients k upload (A_k, B_k) and
hold n_k examples; p_k = n_k / Σ n_j. The server forms Ā = Σ p_k A_k, B̄ = Σ p_k B_k and the ideal update
ΔW* = Σ p_k B_k A_k, which differs from B̄Ā (the "server-side aggregation bias"). The scale s is common to all
terms and left out (it cancels in every quantity below).

* FedIT (Zhang et al., arXiv:2305.05644): broadcast (Ā, B̄).
* FLoRA-style re-initialisation (Wang et al., arXiv:2409.05976): the exact ΔW* (FLoRA stacks the client
  factors) is merged into the frozen weights and the clients restart from a fresh LoRA (A random, B = 0).
* LoRA-FAIR (Bian, Wang, Zhang, Xu, ICCV 2025, arXiv:2411.14961): broadcast (Ā, B̄ + ΔB) with
  ΔB = argmin_ΔB  S(ΔW*, (B̄ + ΔB)Ā) + λ‖ΔB‖²,  S = 1 − cosine similarity of the flattened matrices, λ = 0.01.

Solver. The paper's section with the solver was not available to us; a third-party paper note says S is the cosine
similarity, λ = 0.01 and the problem is "solved by SGD on the server", and two public re-implementations run 1000
SGD steps of lr 1e-2 from ΔB = 0 (one from a Xavier draw) on that loss. The objective is deterministic, so SGD is
plain gradient descent here (`solver: gd`, the default): ΔB₀ = 0, `steps` steps from step size `lr`, each step
halved until the objective decreases (Armijo backtracking; the re-implementations have no safeguard, and a fixed
step diverges when ‖B̄Ā‖ is small, since the cosine's gradient grows like 1/‖B̄Ā‖). The objective therefore never
increases: 1 − cos(after) + λ‖ΔB‖² ≤ 1 − cos(before), so cos(after) ≥ cos(before) + λ‖ΔB‖² ≥ cos(before).
The cosine is scale-invariant, so the correction does not always lower the Frobenius aggregation error
‖B̄′Ā − ΔW*‖ (it raises it in some early rounds of the linear toy, `tests/federated/test_toy_claim.py`).
`solver: ridge` is the closed form of the Frobenius variant ‖(B̄+ΔB)Ā − ΔW*‖² + λ‖ΔB‖²,
ΔB = (ΔW* − B̄Ā)Āᵀ(ĀĀᵀ + λI)⁻¹ (methods.md's derivation, not the paper's objective).

Everything is computed from the factors without forming the d_out×d_in matrices: with M = ΔW*Āᵀ = Σ p_k B_k(A_kĀᵀ)
and G = ĀĀᵀ, ⟨B′Ā, ΔW*⟩ = ⟨B′, M⟩, ‖B′Ā‖² = ⟨B′G, B′⟩ and ‖ΔW*‖² = Σ_jk p_j p_k tr(B_jᵀB_k A_kA_jᵀ): one step costs
O(d_out·r²) instead of O(d_out·d_in·r) (the tests compare with the dense formulas).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

SOLVERS = ("gd", "ridge")
ARMIJO_C = 1e-4
MAX_HALVINGS = 60
F64 = torch.float64


def client_weights(sizes: Sequence[int]) -> torch.Tensor:
    """p_k ∝ n_k (float64, sums to 1)."""
    n = torch.tensor([float(s) for s in sizes], dtype=F64)
    if (n <= 0).any():
        raise ValueError("every client must hold at least one example")
    return n / n.sum()


def weighted_mean(tensors: Sequence[torch.Tensor], p: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(tensors[0], dtype=F64)
    for w, t in zip(p.tolist(), tensors):
        out += w * t.to(F64)
    return out


@dataclass
class LayerAggregate:
    """Ā, B̄ and what LoRA-FAIR needs of ΔW* for one layer (all float64)."""

    a_bar: torch.Tensor  # (r, d_in)
    b_bar: torch.Tensor  # (d_out, r)
    m: torch.Tensor  # ΔW* Āᵀ, (d_out, r)
    g: torch.Tensor  # Ā Āᵀ, (r, r)
    target_norm2: float  # ‖ΔW*‖²

    def inner(self, b: torch.Tensor) -> float:
        """⟨B Ā, ΔW*⟩."""
        return float((b * self.m).sum())

    def pred_norm2(self, b: torch.Tensor) -> float:
        """‖B Ā‖²."""
        return float(((b @ self.g) * b).sum())

    def cosine(self, b: torch.Tensor) -> float:
        """cos(B Ā, ΔW*); 1 when both are zero, 0 when exactly one is."""
        pn, tn = self.pred_norm2(b), self.target_norm2
        if pn <= 0.0 or tn <= 0.0:
            return 1.0 if pn <= 0.0 and tn <= 0.0 else 0.0
        return self.inner(b) / math.sqrt(pn * tn)

    def error2(self, b: torch.Tensor) -> float:
        """‖B Ā − ΔW*‖² (clamped at 0 against rounding)."""
        return max(self.pred_norm2(b) - 2.0 * self.inner(b) + self.target_norm2, 0.0)


def aggregate_layer(a_list: Sequence[torch.Tensor], b_list: Sequence[torch.Tensor], p: torch.Tensor) -> LayerAggregate:
    a = [x.to(F64) for x in a_list]
    b = [x.to(F64) for x in b_list]
    a_bar, b_bar = weighted_mean(a, p), weighted_mean(b, p)
    w = p.tolist()
    m = torch.zeros_like(b_bar)
    for wk, ak, bk in zip(w, a, b):
        m += wk * (bk @ (ak @ a_bar.t()))
    norm2 = 0.0
    for j in range(len(a)):
        for k in range(len(a)):  # ⟨B_jA_j, B_kA_k⟩ = tr(B_jᵀB_k A_kA_jᵀ)
            norm2 += w[j] * w[k] * float(((b[k].t() @ b[j]) * (a[k] @ a[j].t())).sum())
    return LayerAggregate(a_bar=a_bar, b_bar=b_bar, m=m, g=a_bar @ a_bar.t(), target_norm2=max(norm2, 0.0))


def ideal_delta(a_list: Sequence[torch.Tensor], b_list: Sequence[torch.Tensor], p: torch.Tensor) -> torch.Tensor:
    """The dense ΔW* = Σ p_k B_k A_k (FLoRA merges it; tests compare the factored formulas with it)."""
    out = None
    for wk, ak, bk in zip(p.tolist(), a_list, b_list):
        term = wk * (bk.to(F64) @ ak.to(F64))
        out = term if out is None else out + term
    return out


# ---------------------------------------------------------------------------------------------------------
# LoRA-FAIR's correction
# ---------------------------------------------------------------------------------------------------------


def objective(agg: LayerAggregate, delta: torch.Tensor, lam: float) -> float:
    """1 − cos((B̄+ΔB)Ā, ΔW*) + λ‖ΔB‖²."""
    return 1.0 - agg.cosine(agg.b_bar + delta) + lam * float((delta * delta).sum())


def objective_grad(agg: LayerAggregate, delta: torch.Tensor, lam: float) -> torch.Tensor:
    b = agg.b_bar + delta
    pn2, tn = agg.pred_norm2(b), math.sqrt(agg.target_norm2)
    grad = 2.0 * lam * delta
    if pn2 <= 0.0 or tn <= 0.0:
        return grad  # the cosine is flat (undefined) there
    pn = math.sqrt(pn2)
    cos = agg.inner(b) / (pn * tn)
    return grad - (agg.m / (pn * tn) - cos * (b @ agg.g) / pn2)


@dataclass
class _Stack:
    """Layers of one shape stacked for a batched solve: B̄, M (L, d_out, r), G (L, r, r), ‖ΔW*‖ (L,)."""

    b_bar: torch.Tensor
    m: torch.Tensor
    g: torch.Tensor
    tn: torch.Tensor

    @classmethod
    def of(cls, aggs: Sequence[LayerAggregate]) -> _Stack:
        return cls(torch.stack([a.b_bar for a in aggs]), torch.stack([a.m for a in aggs]),
                   torch.stack([a.g for a in aggs]),
                   torch.tensor([math.sqrt(a.target_norm2) for a in aggs], dtype=F64))

    def parts(self, delta: torch.Tensor):
        b = self.b_bar + delta
        bg = b @ self.g
        inner = (b * self.m).sum(dim=(1, 2))
        pn2 = (bg * b).sum(dim=(1, 2)).clamp(min=0.0)
        flat = (pn2 <= 0) | (self.tn <= 0)
        denom = torch.where(flat, torch.ones_like(pn2), pn2.sqrt() * self.tn)
        cos = torch.where(flat, torch.where(pn2 <= 0, torch.ones_like(pn2), torch.zeros_like(pn2)), inner / denom)
        return bg, pn2, denom, cos, flat

    def objective(self, delta: torch.Tensor, lam: float) -> torch.Tensor:
        return 1.0 - self.parts(delta)[3] + lam * (delta * delta).sum(dim=(1, 2))

    def grad(self, delta: torch.Tensor, lam: float) -> torch.Tensor:
        bg, pn2, denom, cos, flat = self.parts(delta)
        safe = torch.where(flat, torch.ones_like(pn2), pn2)
        dcos = self.m / denom[:, None, None] - (cos / safe)[:, None, None] * bg
        return 2.0 * lam * delta - torch.where(flat[:, None, None], torch.zeros_like(dcos), dcos)


def solve_gd(aggs: Sequence[LayerAggregate], lam: float, lr: float, steps: int) -> torch.Tensor:
    """Gradient descent from ΔB = 0 with Armijo backtracking (the objective never increases), for layers of one
    shape at once (each with its own step size; (L, d_out, r)). The step size starts at `lr`, is halved until the
    step decreases the objective enough, and may double again (up to `lr`) after an accepted step, so a badly
    scaled layer costs a few halvings once, not at every step. A layer stops once no step decreases its objective
    at machine precision (a stationary point)."""
    st = _Stack.of(aggs)
    delta = torch.zeros_like(st.b_bar)
    f = st.objective(delta, lam)
    eta = torch.full_like(f, float(lr))
    active = torch.ones_like(f, dtype=torch.bool)
    for _ in range(int(steps)):
        g = st.grad(delta, lam)
        g2 = (g * g).sum(dim=(1, 2))
        pending = active & (g2 > 0) & torch.isfinite(g2)
        active = pending.clone()
        if not bool(pending.any()):
            break
        for _ in range(MAX_HALVINGS):
            cand = delta - eta[:, None, None] * g
            fc = st.objective(cand, lam)
            ok = pending & torch.isfinite(fc) & (fc <= f - ARMIJO_C * eta * g2)
            delta = torch.where(ok[:, None, None], cand, delta)
            f = torch.where(ok, fc, f)
            pending = pending & ~ok
            if not bool(pending.any()):
                break
            eta = torch.where(pending, eta * 0.5, eta)
        active = active & ~pending
        eta = torch.where(active, torch.clamp(eta * 2.0, max=float(lr)), eta)
    return delta


def solve_ridge(agg: LayerAggregate, lam: float) -> torch.Tensor:
    """argmin ‖(B̄+ΔB)Ā − ΔW*‖² + λ‖ΔB‖² = (ΔW*Āᵀ − B̄ĀĀᵀ)(ĀĀᵀ + λI)⁻¹ (λ > 0, or Ā of full row rank)."""
    rhs = agg.m - agg.b_bar @ agg.g
    eye = torch.eye(agg.g.shape[0], dtype=F64)
    return torch.linalg.solve(agg.g + lam * eye, rhs.t()).t()


def correction(agg: LayerAggregate, lam: float, solver: str = "gd", lr: float = 1e-2,
               steps: int = 1000) -> torch.Tensor:
    """LoRA-FAIR's ΔB for one layer (d_out × r, float64)."""
    return corrections([agg], lam, solver, lr, steps)[0]


def corrections(aggs: Sequence[LayerAggregate], lam: float, solver: str = "gd", lr: float = 1e-2,
                steps: int = 1000) -> List[torch.Tensor]:
    """LoRA-FAIR's ΔB for every layer; layers of the same (d_out, r) are solved together (one batched solve)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; use one of {SOLVERS}")
    out: List[Optional[torch.Tensor]] = [None] * len(aggs)
    groups: Dict[tuple, List[int]] = {}
    for i, a in enumerate(aggs):
        if a.target_norm2 <= 0.0:
            out[i] = torch.zeros_like(a.b_bar)
        elif solver == "ridge":
            out[i] = solve_ridge(a, lam)
        else:
            groups.setdefault(tuple(a.b_bar.shape), []).append(i)
    for idx in groups.values():
        for i, d in zip(idx, solve_gd([aggs[i] for i in idx], lam, lr, steps)):
            out[i] = d
    return [d for d in out if d is not None]


# ---------------------------------------------------------------------------------------------------------
# Whole-model reports
# ---------------------------------------------------------------------------------------------------------


@dataclass
class AggregationReport:
    """Over all adapted layers: ‖B′Ā − ΔW*‖/‖ΔW*‖ (Frobenius over the stacked layers) for B′ = B̄ (FedIT) and for
    the broadcast B′, the mean per-layer cosine before/after, and ‖ΔB‖/‖B̄‖."""

    error_before: float
    error_after: float
    cosine_before: float
    cosine_after: float
    delta_ratio: float

    def as_dict(self) -> Dict[str, float]:
        return {"aggregation_error": self.error_after, "aggregation_error_fedit": self.error_before,
                "cosine_before": self.cosine_before, "cosine_after": self.cosine_after,
                "delta_b_ratio": self.delta_ratio}


def report(aggs: Sequence[LayerAggregate], b_after: Sequence[torch.Tensor],
           exact: Optional[List[bool]] = None) -> AggregationReport:
    """`b_after[l]` is the B′ broadcast with Ā for layer l; `exact[l]` marks layers whose broadcast state carries ΔW*
    exactly (FLoRA merges it: error 0, cosine 1)."""
    exact = exact or [False] * len(aggs)
    t2 = sum(a.target_norm2 for a in aggs)
    e_before = sum(a.error2(a.b_bar) for a in aggs)
    e_after = sum(0.0 if ex else a.error2(b) for a, b, ex in zip(aggs, b_after, exact))
    cos_b = [a.cosine(a.b_bar) for a in aggs]
    cos_a = [1.0 if ex else a.cosine(b) for a, b, ex in zip(aggs, b_after, exact)]
    d2 = sum(float(((b - a.b_bar) ** 2).sum()) for a, b in zip(aggs, b_after))
    b2 = sum(float((a.b_bar ** 2).sum()) for a in aggs)
    rel = (lambda e: math.sqrt(e / t2)) if t2 > 0 else (lambda e: 0.0)
    return AggregationReport(error_before=rel(e_before), error_after=rel(e_after),
                             cosine_before=sum(cos_b) / max(len(cos_b), 1),
                             cosine_after=sum(cos_a) / max(len(cos_a), 1),
                             delta_ratio=math.sqrt(d2 / b2) if b2 > 0 else 0.0)


def lora_init_a(rank: int, d_in: int, generator: torch.Generator) -> torch.Tensor:
    """A fresh LoRA A as `methods/lora.py` draws it (Kaiming-uniform with a = √5: U(−1/√d_in, 1/√d_in))."""
    bound = 1.0 / math.sqrt(d_in)
    return (torch.rand(rank, d_in, generator=generator, dtype=F64) * 2.0 - 1.0) * bound
