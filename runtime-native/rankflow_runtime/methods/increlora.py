"""IncreLoRA: incremental rank allocation by module importance.

Zhang, Li, Chen, Jiang, Wang, Qian, "IncreLoRA: Incremental Parameter Allocation Method for Parameter-Efficient
Fine-tuning", arXiv:2308.12043 (2023). Official code: FeiyuZhang98/IncreLoRA (read at 51a2d73:
`loralib/loralib/increlora.py`, `NLU/src/transformers/{trainer,optimization}.py`, `NLU/scripts/`). Only the
paper's abstract could be read; the procedure below is the official code's.

Per adapted layer, AdaLoRA-style triplets stored as lists of pieces (`lora_A`, `lora_E`, `lora_B`
ParameterLists): the first piece has `init_r` ranks, every later piece one rank.

    ΔW = cat(B) (cat(A) ⊙ cat(E)) · α / (R + 1e-5)        y = W0 x + b + ΔW dropout(x)

with α = `alpha` (≤ 0: α = init_r) and R = `ranknum`, the number of **activated** ranks (reserve pieces are in
the product but not in R). Growing a module by k does R += k, which rescales its existing ΔW by R/(R+k) at that
step (kept, as the official code). Init: A, B ~ N(0, 0.02), E = 0.

Procedure (hook `after_backward`, t = steps done, 0-based as the official `global_step`; the official call sits
after clipping and before the optimizer step, and nothing it reads depends on clipping):

* t = 0: every module gets `incre_rank_num` (k) **reserve** pieces: a, b ~ N(0, 0.02) trainable, e = 1e-5 frozen
  (`advance_learn`; without it a, b, e are frozen and e = 0). They join the optimizer as a new group.
* Score, while the total rank is below the target: s = Σ|ΔW ⊙ ∂L/∂ΔW| / √numel(ΔW), from a hook on the dense
  ΔW of the forward (the official full backward hook on the ΔW module); EMAs Ī ← β1 Ī + (1−β1) s,
  Ū ← β2 Ū + (1−β2)|s − Ī|; score Ī·Ū.
* Growth when t > init_warmup and t % incre_interval == 0 (and total < target = rank·M): the selected modules
  activate their reserve (e trainable, R += k) and get a fresh reserve; the new tensors join the optimizer as
  one new group (training.weight_decay; with `restart_warmup`, the lr warms up again from the next step and
  decays over the steps left, IncreLoRA's `Multi_LambdaLR`). Selection (`growth_rule`):
  - `official`: k_sel = min(top_h, target − total) (a count of modules from a count of ranks), threshold = the
    k_sel-th largest score, every module with score ≥ threshold grows by k (ties grow more). The total can
    overshoot the target (e.g. QNLI r = 8: 72 modules, top_h 22, k 4 → 600 instead of 576), and then the
    budget-reached branch below never runs.
  - `capped` (default): the n = min(top_h, ⌈(target − total)/k⌉) best modules (ties by module order) grow by
    k, the last one by whatever is left, so the total ends exactly at target = rank·M, the budget the paper
    states ("target average rank"); never above it at any step.
* When total == target: scoring stops (the forward switches to the factored product) and the newest reserve e
  of every module is set to 0 (official).
* Orthogonality regulariser (`extra_loss`): orth_reg_weight · Σ_m (‖AAᵀ−I‖_F + ‖BᵀB−I‖_F)/(2M) over the
  concatenated A and B, reserves included (the trainer's `compute_svd_orth_regu`).

`method.rank` is the target average rank per module. Trainable parameters per layer at the start:
init_r·(d_in + d_out + 1); after step 0 add the reserve k·(d_in + d_out); after growth to R_m ranks:
R_m·(d_in + d_out + 1) + k·(d_in + d_out). `count`'s `final` is that with R_m = rank (exact for the capped rule
when all targets have the same shape).

State: pieces are re-created from a checkpoint's tensor names (`prepare_load`); ranknum, the EMAs and the last
score are persistent buffers; whether scoring has stopped is extra state. So a run resumed mid-growth grows,
scores and schedules exactly as an uninterrupted one.

Deviations:
* With gradient accumulation the score uses the gradient of ΔW summed over the micro-batches (the official hook
  keeps only the last micro-batch's).
* The restarted warmup uses rankflow's schedule convention (lr·(k+1)/warmup, then the run's decay shape) for
  every group; the official `Multi_LambdaLR` is HF's linear schedule (warmup from 0). A group added at step 0
  (the first reserve) therefore starts its warmup at step 1, as in the official scheduler.
* `capped` is our rule (see above); `official` reproduces the released selection, overshoot included.
* `incre_rank_num` null follows the official table (2→1, 4→2, 6→3, 8→4) and ⌈rank/2⌉ for other ranks (the
  official code raises).
* Defaults: init_warmup 4500, incre_interval 10, top_h 10, β 0.85, advance_learn and restart warmup on are the
  official argument defaults; orth_reg_weight 0.1 and alpha 16 are the values of the released GLUE scripts (the
  argument defaults, 0 and the initial rank, are never used by them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ._allocation import orth_regulariser
from .base import AdaptedLinear, Method, adapted_layers, option, register

OFFICIAL_INCREMENT = {2: 1, 4: 2, 6: 3, 8: 4}
RESERVE_E = 1e-5


@dataclass
class IncreLoRAOptions:
    init_r: int = option(1, help="initial rank of every module (the official lora_r)", min=1)
    incre_rank_num: Optional[int] = option(None, help="ranks added per growth k (null: 2→1, 4→2, 6→3, 8→4, "
                                                      "else ⌈rank/2⌉)", min=1)
    top_h: int = option(10, help="modules selected per growth round", min=1)
    init_warmup: int = option(4500, help="no growth until step > init_warmup", min=0)
    incre_interval: int = option(10, help="grow every incre_interval steps", min=1)
    beta1: float = option(0.85, help="EMA coefficient of the sensitivity Ī", min=0.0, max=1.0)
    beta2: float = option(0.85, help="EMA coefficient of the uncertainty Ū", min=0.0, max=1.0)
    orth_reg_weight: float = option(0.1, help="weight of the orthogonality regulariser", min=0.0)
    alpha: float = option(16.0, help="scaling numerator α: ΔW = B(A⊙E)·α/R (≤ 0: α = init_r)")
    dropout: float = option(0.0, help="dropout probability on the adapter input", min=0.0, max=1.0)
    advance_learn: bool = option(True, help="reserve pieces train before they are activated (e = 1e-5 frozen)")
    restart_warmup: bool = option(True, help="new parameter groups warm up again (Multi_LambdaLR)")
    growth_rule: str = option("capped", help="capped: end exactly at rank·M; official: the released rule "
                                             "(may overshoot)", choices=["capped", "official"])


class IncreLoRALinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: IncreLoRA, shared=None):
        super().__init__(base, method, shared)
        r, opts = method.options.init_r, method.options
        self.lora_A = nn.ParameterList([nn.Parameter(self._new(r, self.in_features))])
        self.lora_E = nn.ParameterList([nn.Parameter(self._new(r, 1))])
        self.lora_B = nn.ParameterList([nn.Parameter(self._new(self.out_features, r))])
        self.scaling = opts.alpha if opts.alpha > 0 else float(r)
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.register_buffer("ranknum", torch.full((1,), float(r), **kw))
        for b in ("score", "ipt_avg", "ipt_unc"):
            self.register_buffer(b, torch.zeros((), **kw))
        self.tracking = True  # score the module (dense ΔW in the forward) until the budget is reached
        self._grad: Optional[torch.Tensor] = None
        self._delta: Optional[torch.Tensor] = None
        if not self.on_meta:
            nn.init.normal_(self.lora_A[0], mean=0.0, std=0.02)
            nn.init.normal_(self.lora_B[0], mean=0.0, std=0.02)

    def _new(self, *shape) -> torch.Tensor:
        return torch.zeros(*shape, device=self.device, dtype=self.adapter_dtype)

    # -- pieces -------------------------------------------------------------------------------------
    def add_reserve(self, k: int, advance: bool) -> List[nn.Parameter]:
        """Append k one-rank reserve pieces; returns the ones that train now."""
        new = []
        for _ in range(k):
            a = nn.Parameter(self._new(1, self.in_features), requires_grad=advance)
            b = nn.Parameter(self._new(self.out_features, 1), requires_grad=advance)
            e = nn.Parameter(self._new(1, 1), requires_grad=False)
            if not self.on_meta:
                nn.init.normal_(a, mean=0.0, std=0.02)
                nn.init.normal_(b, mean=0.0, std=0.02)
                e.data.fill_(RESERVE_E if advance else 0.0)
            self.lora_A.append(a)
            self.lora_E.append(e)
            self.lora_B.append(b)
            new += [a, b] if advance else []
        return new

    def activate(self, j: int, k: int, advance: bool) -> List[nn.Parameter]:
        """Activate the first j of the k reserve pieces (R += j) and refill the reserve; returns the tensors
        that start to train."""
        first = len(self.lora_A) - k
        new = []
        for i in range(first, first + j):
            for plist in ((self.lora_E,) if advance else (self.lora_E, self.lora_A, self.lora_B)):
                plist[i].requires_grad_(True)
                new.append(plist[i])
        with torch.no_grad():
            self.ranknum += j
        # the remaining k − j reserve pieces plus j fresh ones are the new reserve (always the last k pieces)
        return new + self.add_reserve(j, advance)

    def factors(self):
        a = torch.cat(list(self.lora_A), 0)
        e = torch.cat(list(self.lora_E), 0)
        b = torch.cat(list(self.lora_B), 1)
        return a, e, b

    def delta_weight(self):
        a, e, b = self.factors()
        return b @ (a * e) * self.scaling / (self.ranknum + 1e-5)

    def adapter_forward(self, x, base_out):
        h = self.dropout(x).to(self.lora_A[0].dtype)
        if self.tracking and self.training and torch.is_grad_enabled():
            delta = self.delta_weight()
            delta.register_hook(self._keep_grad)
            self._delta = delta.detach()
            out = h @ delta.t()
        else:
            a, e, b = self.factors()
            out = (h @ (a * e).t() @ b.t()) * self.scaling / (self.ranknum + 1e-5)
        return base_out + out.to(base_out.dtype)

    def _keep_grad(self, g: torch.Tensor) -> None:
        self._grad = g.detach() if self._grad is None else self._grad + g.detach()

    @torch.no_grad()
    def update_score(self, beta1: float, beta2: float) -> None:
        """s = Σ|ΔW ⊙ ∂L/∂ΔW| / √numel, then the EMAs (official `update_ipt`)."""
        if self._grad is not None:
            self.score.copy_((self._delta * self._grad).abs().sum() / math.sqrt(self._delta.numel()))
        self._grad = self._delta = None
        self.ipt_avg.mul_(beta1).add_(self.score, alpha=1 - beta1)
        self.ipt_unc.mul_(beta2).add_((self.score - self.ipt_avg).abs(), alpha=1 - beta2)

    def rank(self) -> int:
        return int(self.ranknum.item())


@register
class IncreLoRA(Method):
    name = "increlora"
    paper = ("Zhang et al., IncreLoRA: Incremental Parameter Allocation Method for Parameter-Efficient "
             "Fine-tuning, arXiv:2308.12043")
    Options = IncreLoRAOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    test_options = {"init_warmup": 0, "incre_interval": 1, "top_h": 2}

    option_cases = ({"dropout": 0.2}, {"advance_learn": False}, {"restart_warmup": False}, {"growth_rule": "official"})
    mutable_buffers = ("ranknum", "score", "ipt_avg", "ipt_unc")
    count_examples = (
        {"shapes": [(1024, 3072)], "rank": 8, "options": {"init_r": 2}, "count": 8_194,
         "source": "at the start: init_r·(d_in + d_out + 1) = 2·4097"},
    )
    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        o = self.options
        self.k = o.incre_rank_num or OFFICIAL_INCREMENT.get(self.rank, max(1, math.ceil(self.rank / 2)))
        self.budget_reached = False

    # -- counts -------------------------------------------------------------------------------------
    def layer_count(self, d_out, d_in):
        return self.options.init_r * (d_in + d_out + 1)

    def final_count(self, shapes):
        reserve = self.k * (1 if self.options.advance_learn else 0)
        return sum(self.rank * (o + i + 1) + reserve * (o + i) for o, i in shapes)

    def wrap(self, name, base, shared):
        return IncreLoRALinear(base, self, shared)

    def target(self) -> int:
        return self.rank * len(self.targets)

    # -- training -----------------------------------------------------------------------------------
    def extra_loss(self, ctx):
        w = self.options.orth_reg_weight
        if w <= 0:
            return None
        reg = orth_regulariser((a, b) for a, _, b in (m.factors() for m in adapted_layers(ctx.model)))
        return None if reg is None else w * reg

    def after_backward(self, ctx):
        o, layers = self.options, adapted_layers(ctx.model)
        if ctx.step == 0 and len(layers[0].lora_A) == 1:
            new = [p for m in layers for p in m.add_reserve(self.k, o.advance_learn)]
            if new:
                ctx.add_parameters(new, restart_warmup=o.restart_warmup)
        total = sum(m.rank() for m in layers)
        if total >= self.target():
            for m in layers:  # (after an official-rule overshoot the dense ΔW keeps being scored, unused)
                m._grad = m._delta = None
            return
        for m in layers:
            m.update_score(o.beta1, o.beta2)
        if ctx.step > o.init_warmup and ctx.step % o.incre_interval == 0:
            self.grow(ctx, layers, total)

    def select(self, scores: List[float], total: int) -> List[int]:
        """How many ranks each module grows by (the growth rule; see the module docstring)."""
        remaining, k, o = self.target() - total, self.k, self.options
        if o.growth_rule == "official":
            k_sel = min(o.top_h, remaining)
            t = torch.tensor(scores)  # compared in float32, as the official tensor scores
            threshold = torch.topk(t, min(k_sel, len(scores)))[0][-1]
            return [k if bool(s >= threshold) else 0 for s in t]
        n = min(o.top_h, math.ceil(remaining / k), len(scores))
        best = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:n]
        grow = [0] * len(scores)
        for rank_i, i in enumerate(best):
            grow[i] = min(k, remaining - rank_i * k)
        return grow

    def grow(self, ctx, layers: List[IncreLoRALinear], total: int) -> None:
        o = self.options
        scores = [float(m.ipt_avg * m.ipt_unc) for m in layers]
        new: List[nn.Parameter] = []
        for m, j in zip(layers, self.select(scores, total)):
            if j:
                new += m.activate(j, self.k, o.advance_learn)
        if new:
            ctx.add_parameters(new, restart_warmup=o.restart_warmup)
        if sum(m.rank() for m in layers) == self.target():
            self.finish(layers)

    @torch.no_grad()
    def finish(self, layers: List[IncreLoRALinear]) -> None:
        """Budget reached (official): stop scoring, zero the newest reserve e of every module."""
        self.budget_reached = True
        for m in layers:
            m.tracking = False
            for e in list(m.lora_E)[-self.k:]:
                e.fill_(0.0)

    # -- state --------------------------------------------------------------------------------------
    def extra_state(self) -> Dict[str, Any]:
        return {"budget_reached": self.budget_reached}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        self.budget_reached = bool(state.get("budget_reached", False))

    def prepare_load(self, model, state):
        o = self.options
        for name, m in model.named_modules():
            if not isinstance(m, IncreLoRALinear):
                continue
            n = sum(1 for key in state if key.startswith(f"{name}.lora_A."))
            if n > len(m.lora_A):
                m.add_reserve(n - len(m.lora_A), o.advance_learn)
            if n > 1:  # every piece but the last k reserve ones is active
                for i in range(n - self.k):
                    for plist in (m.lora_A, m.lora_E, m.lora_B):
                        plist[i].requires_grad_(True)
            m.tracking = not self.budget_reached

    def allocation(self, model):
        layers = {n: m for n, m in model.named_modules() if isinstance(m, IncreLoRALinear)}
        ranks = {n: m.rank() for n, m in layers.items()}
        params = sum(r * (m.in_features + m.out_features + 1) for r, m in zip(ranks.values(), layers.values()))
        return {"ranks": ranks, "budget": self.rank * len(layers), "params": params}
