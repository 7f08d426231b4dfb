"""AdaLoRA: adaptive budget allocation by pruning SVD-shaped triplets.

Zhang, Chen, Bukharin, Karampatziakis, He, Cheng, Chen, Zhao, "AdaLoRA: Adaptive Budget Allocation for
Parameter-Efficient Fine-Tuning", ICLR 2023 (arXiv:2303.10512). Official code: QingruZhang/AdaLoRA
(`loralib/adalora.py`); reference implementation: Hugging Face PEFT `tuners/adalora` (read at 5d602fdb).

Per adapted layer, `init_r` triplets (A ∈ R^{init_r×d_in}, E ∈ R^{init_r×1}, B ∈ R^{d_out×init_r}):

    ΔW = B (A ⊙ E) · α / (init_r + 1e-5)          y = W0 x + b + ΔW dropout(x)

with α = `alpha` (PEFT's `lora_alpha`; α ≤ 0 means α = init_r). The denominator is **init_r**, fixed (PEFT's
and the official `ranknum` is filled once and never updated), not the current rank. Init: E = 0, A, B ~ N(0, 0.02)
(so ΔW = 0 at the start).

Procedure (as PEFT's `update_and_allocate`, called in the `after_optimizer_step` hook: after the optimizer step,
before `zero_grad`, so it sees the clipped gradients and the updated weights; t = the number of optimizer steps
done, 1-based as in PEFT's MetaMathQA loop; T = `total_step`, default the run's total steps):

* t < T − tfinal: importance I = |θ ⊙ ∇θ| of every A, E, B entry, smoothed (β1, β2):
  Ī ← β1 Ī + (1−β1) I, Ū ← β2 Ū + (1−β2)|I − Ī|, score S = Ī·Ū. Budget b(t) (total kept triplets): init_r·M up to
  t = tinit, then cubic down to target_r·M at t = T − tfinal (`_allocation.cubic_budget`). Every `delta_t` steps
  after tinit, the triplet score S(E_i) + mean_j S(A_ij) + mean_j S(B_ji) is ranked over all modules and the E of
  every triplet at or below the (init_r·M − b)-th smallest score is set to 0. Masked E stay trainable and may
  regrow until the next mask (soft masking).
* t = T − tfinal: a last mask at target_r·M from the scores so far (no importance update at that step, as PEFT);
  the pattern (`rank_mask`) is frozen and the EMAs are reset.
* t > T − tfinal: the frozen pattern is re-applied after every step.
* Orthogonality regulariser added to the loss (`extra_loss`):
  orth_reg_weight · Σ_m (‖AAᵀ − I‖_F + ‖BᵀB − I‖_F) / (2M), i.e. the mean over the 2M A and B tensors, as PEFT.

`method.rank` is **target_r**, the average final rank per module (so `rank: 8` is comparable to LoRA r = 8);
`init_r` defaults to ⌈1.5·rank⌉ (PEFT's defaults 12 → 8).

Trainable parameters per layer: **init_r·(d_in + d_out + 1)** (masking does not remove parameters; PEFT's
count: Llama-3.2-3B q/v, init_r 64 gives 18,353,664). Final count (the kept pattern, what the PEFT export
holds): Σ_m r_m (d_in + d_out + 1) with Σ r_m = target_r·M; `count` reports it as `final`, assuming the average
module size (exact when all targets have the same shape).

State: the EMAs (`ipt_avg_*`, `ipt_unc_*`) and the pattern (`rank_mask`) are persistent buffers, the last step
and T are extra state, so a resumed run allocates exactly as an uninterrupted one.

Deviations:
* A budget step with nothing to mask (init_r·M − b(t) = 0, e.g. init_r = target_r) masks nothing; PEFT's
  `torch.kthvalue(k=0)` raises there.
* A parameter without a gradient (a module unused by the forward) gets importance 0; PEFT fails on `None`.
* The official loralib passes the 0-based step (one step earlier than PEFT for every boundary); rankflow
  follows PEFT. The official code re-masks from frozen scores every step after T − tfinal; PEFT (and
  rankflow) snapshot the pattern, which is equivalent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..errors import ConfigError
from ._allocation import cubic_budget, ema_update, orth_regulariser
from .base import AdaptedLinear, Method, adapted_layers, option, register

_PIECES = ("A", "E", "B")


@dataclass
class AdaLoRAOptions:
    init_r: Optional[int] = option(None, help="initial rank per module (null: ⌈1.5·rank⌉; rank is target_r)", min=1)
    tinit: int = option(0, help="steps of initial warmup before the budget starts to fall (PEFT tinit)", min=0)
    tfinal: int = option(0, help="final steps with the frozen rank pattern (PEFT tfinal)", min=0)
    delta_t: int = option(1, help="mask every delta_t steps while the budget falls (PEFT deltaT)", min=1)
    beta1: float = option(0.85, help="EMA coefficient of the sensitivity Ī", min=0.0, max=1.0)
    beta2: float = option(0.85, help="EMA coefficient of the uncertainty Ū", min=0.0, max=1.0)
    orth_reg_weight: float = option(0.5, help="weight of the orthogonality regulariser", min=0.0)
    alpha: float = option(8.0, help="scaling numerator α: ΔW = B(A⊙E)·α/init_r (≤ 0: α = init_r)")
    dropout: float = option(0.0, help="dropout probability on the adapter input", min=0.0, max=1.0)
    total_step: Optional[int] = option(None, help="T of the budget schedule (null: the run's total steps)", min=1)


class AdaLoRALinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: AdaLoRA, shared=None):
        super().__init__(base, method, shared)
        r, opts = method.init_r, method.options
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **kw))
        self.lora_E = nn.Parameter(torch.zeros(r, 1, **kw))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, r, **kw))
        self.ranknum = float(r)
        self.scaling = opts.alpha if opts.alpha > 0 else float(r)
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()
        self.register_buffer("rank_mask", torch.ones(r, **kw))
        for piece in _PIECES:
            shape = getattr(self, "lora_" + piece).shape
            self.register_buffer("ipt_avg_" + piece, torch.zeros(shape, **kw))
            self.register_buffer("ipt_unc_" + piece, torch.zeros(shape, **kw))
        if not self.on_meta:
            nn.init.normal_(self.lora_A, mean=0.0, std=0.02)
            nn.init.normal_(self.lora_B, mean=0.0, std=0.02)

    def adapter_forward(self, x, base_out):
        a = self.lora_A
        h = self.dropout(x).to(a.dtype)
        delta = (h @ (a * self.lora_E).t() @ self.lora_B.t()) * self.scaling / (self.ranknum + 1e-5)
        return base_out + delta.to(base_out.dtype)

    def delta_weight(self):
        return self.lora_B @ (self.lora_A * self.lora_E) * self.scaling / (self.ranknum + 1e-5)

    # -- importance ----------------------------------------------------------------------------------
    @torch.no_grad()
    def update_importance(self, beta1: float, beta2: float) -> None:
        for piece in _PIECES:
            p = getattr(self, "lora_" + piece)
            ipt = (p * p.grad).abs() if p.grad is not None else torch.zeros_like(p)
            ema_update(getattr(self, "ipt_avg_" + piece), getattr(self, "ipt_unc_" + piece), ipt, beta1, beta2)

    @torch.no_grad()
    def reset_importance(self) -> None:
        for piece in _PIECES:
            getattr(self, "ipt_avg_" + piece).zero_()
            getattr(self, "ipt_unc_" + piece).zero_()

    def triplet_scores(self) -> torch.Tensor:
        """S(E_i) + (mean_j S(A_ij) + mean_j S(B_ji)), shape (init_r,), summed in PEFT's order."""
        s = {p: getattr(self, "ipt_avg_" + p) * getattr(self, "ipt_unc_" + p) for p in _PIECES}
        ab = torch.cat([s["A"].mean(dim=1, keepdim=True), s["B"].mean(dim=0).view(-1, 1)], dim=1).sum(dim=1)
        return s["E"].view(-1) + ab.view(-1)

    @torch.no_grad()
    def apply_mask(self, keep: Optional[torch.Tensor] = None) -> None:
        if keep is not None:
            self.rank_mask.copy_(keep.to(self.rank_mask.dtype))
        self.lora_E.masked_fill_(self.rank_mask.view(-1, 1) == 0, 0.0)

    def rank(self) -> int:
        return int(self.rank_mask.sum().item())


@register
class AdaLoRA(Method):
    name = "adalora"
    paper = ("Zhang et al., AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning, ICLR 2023 "
             "(arXiv:2303.10512)")
    Options = AdaLoRAOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    test_options = {"orth_reg_weight": 0.1}

    option_cases = ({"dropout": 0.2}, {"alpha": 0.0})
    mutable_buffers = ("rank_mask",) + tuple(f"ipt_{k}_{p}" for k in ("avg", "unc") for p in _PIECES)
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 8, "options": {"init_r": 32}, "count": 262_176,
         "source": "methods.md §1: init_r·(d_in + d_out + 1)"},
        {"shapes": [(1024, 3072)], "rank": 8, "options": {}, "count": 49_164, "source": "init_r = ⌈1.5·8⌉ = 12: 12·4097"},
    )
    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        init_r = self.options.init_r if self.options.init_r is not None else math.ceil(1.5 * self.rank)
        if init_r < self.rank:
            raise ConfigError(f"method.options.init_r: {init_r} is below the target rank (method.rank) {self.rank}",
                              hint="AdaLoRA prunes from init_r down to rank: set init_r ≥ rank")
        self.init_r = init_r
        self.step = 0  # optimizer steps seen by the allocator
        self.total: Optional[int] = self.options.total_step

    # -- counts -------------------------------------------------------------------------------------
    def layer_count(self, d_out, d_in):
        return self.init_r * (d_in + d_out + 1)

    def final_count(self, shapes):
        return self.rank * sum(o + i + 1 for o, i in shapes)

    def wrap(self, name, base, shared):
        return AdaLoRALinear(base, self, shared)

    # -- training -----------------------------------------------------------------------------------
    def on_train_start(self, ctx):
        o = self.options
        self.total = o.total_step or self.total or ctx.total_steps
        if o.tinit >= self.total - o.tfinal:
            raise ConfigError(f"method.options.tinit: tinit ({o.tinit}) must be below total_step − tfinal "
                              f"({self.total} − {o.tfinal})", hint="lower tinit / tfinal or train longer")

    def extra_loss(self, ctx):
        w = self.options.orth_reg_weight
        if w <= 0:
            return None
        reg = orth_regulariser((m.lora_A, m.lora_B) for m in adapted_layers(ctx.model))
        return None if reg is None else w * reg

    def budget(self, step: int):
        o, m = self.options, len(self.targets)
        return cubic_budget(step, self.init_r * m, self.rank * m, o.tinit, o.tfinal, self.total, o.delta_t)

    def after_optimizer_step(self, ctx):
        if self.total is None:  # a loop that did not call on_train_start
            self.on_train_start(ctx)
        self.update_and_allocate(adapted_layers(ctx.model), ctx.step + 1)

    def update_and_allocate(self, layers: List[AdaLoRALinear], step: int) -> None:
        """PEFT's `update_and_allocate(step)`, `step` 1-based."""
        o = self.options
        self.step = step
        final = self.total - o.tfinal
        if step > final:
            for m in layers:
                m.apply_mask()
            return
        if step < final:  # PEFT: no importance update at the final mask itself
            for m in layers:
                m.update_importance(o.beta1, o.beta2)
        budget, mask_now = self.budget(step)
        if mask_now or step == final:
            self.mask_to_budget(layers, budget)
        if step == final:
            for m in layers:
                m.reset_importance()

    @torch.no_grad()
    def mask_to_budget(self, layers: List[AdaLoRALinear], budget: int) -> None:
        scores = [m.triplet_scores() for m in layers]
        k = self.init_r * len(layers) - budget
        if k <= 0:
            return
        threshold = torch.kthvalue(torch.cat(scores), k).values.item()
        for m, s in zip(layers, scores):
            m.apply_mask(s > threshold)

    # -- state --------------------------------------------------------------------------------------
    def extra_state(self) -> Dict[str, Any]:
        return {"step": self.step, "total": self.total}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        self.step = int(state.get("step", 0))
        self.total = state.get("total", self.total)

    def allocation(self, model):
        layers = {n: m for n, m in model.named_modules() if isinstance(m, AdaLoRALinear)}
        ranks = {n: m.rank() for n, m in layers.items()}
        budget = self.budget(self.step)[0] if self.total and self.step > 0 else self.init_r * len(layers)
        params = sum(r * (m.in_features + m.out_features + 1) for r, m in zip(ranks.values(), layers.values()))
        return {"ranks": ranks, "budget": budget, "params": params}
