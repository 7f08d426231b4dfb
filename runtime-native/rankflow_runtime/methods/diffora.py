"""DiffoRA: differential module selection with a Differential Adaptation Matrix (DAM).

Jiang, Wang, Yuan, "DiffoRA: Enabling Parameter-Efficient Fine-Tuning via Differential Module Selection"
(v1: "…via Differential Low-Rank Matrix Adaptation"), arXiv:2502.08905 (2025). **No official code exists** and only
the abstract (and third-party summaries mentioning a selection ratio ρ and bi-level optimisation) could be read:
the DAM is built "via continuous relaxation and discretization with weight-sharing optimizations" and decides
which modules get a LoRA at all. Every concrete choice below is ours (a DARTS-style reading), listed here:

* **DAM and relaxation.** One entry γ_m per candidate module (the targets: layers × module types), relaxed to
  a gate g_m = σ(γ_m) ∈ (0, 1) (`gate_init` 0: g = ½). During the search every candidate has a LoRA (A Kaiming-
  uniform, B = 0, s = α/r, as `lora`): y = W0 x + b + g_m · s · B A dropout(x).
* **Bi-level search** (first-order DARTS, ξ = 0), for `search_steps` steps (null: ⌈search_ratio · T⌉): the
  training stream is split into two disjoint halves by step parity — on even steps only the gates learn (the
  LoRA tensors get no update: their gradients are dropped before the optimizer step), on odd steps only the
  LoRA tensors learn (the gates' gradients are dropped). So the gates are fitted on batches the adapters never
  train on (the "held-out" half, as DARTS splits CIFAR's training set), in the `after_backward` hook.
  `bilevel: false` trains both on every batch (single-level ablation). The gates are optimizer group `gate`
  (`training.lr_groups.gate`; default training.lr; no weight decay on them, they are 1-D).
* **Discretisation** after step `search_steps`: the ⌈ρ·M⌉ modules with the largest gates (`ratio` ρ; ties by
  module order) are selected; the others stop training and contribute exactly 0 (their tensors stay, frozen,
  so checkpoints keep their names).
* **Weight sharing.** The selected modules keep the LoRA weights of the search (no re-initialisation); the gate
  is folded into B (B ← g_m·B, then the gate is dropped), so each selected module computes the same ΔW just
  before and after the switch. Their optimizer state is kept as well.
* Then plain LoRA fine-tuning of the selected modules for the remaining steps.

Trainable parameters per layer during the search: r·(d_in + d_out) + 1 (the gate); after it,
r·(d_in + d_out) on the ⌈ρ·M⌉ selected modules only. `count`'s `final`: ⌈ρ·M⌉/M of the LoRA count (exact when
all targets have the same shape). Allocation: rank r per module during the search, r or 0 after it.

Defaults (ours; the paper's are unknown): ρ = 0.5, search_ratio 0.25, gate_init 0, bilevel on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .base import AdaptedLinear, Method, adapted_layers, option, register


@dataclass
class DiffoRAOptions:
    ratio: float = option(0.5, help="selection ratio ρ: the fraction of candidate modules kept", min=0.0, max=1.0)
    search_steps: Optional[int] = option(None, help="length of the search phase (null: ⌈search_ratio·T⌉)", min=0)
    search_ratio: float = option(0.25, help="search length as a fraction of the run (if search_steps is null)",
                                 min=0.0, max=1.0)
    bilevel: bool = option(True, help="gates on even steps, adapters on odd steps (false: both on every step)")
    gate_init: float = option(0.0, help="initial DAM entry γ (gate σ(γ))")
    alpha: float = option(8.0, help="LoRA scaling numerator α (s = α/r)", min=0.0)
    dropout: float = option(0.0, help="dropout probability on the LoRA input", min=0.0, max=1.0)


class DiffoRALinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: DiffoRA, shared=None):
        super().__init__(base, method, shared)
        r, opts = method.rank, method.options
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **kw))
        self.dam_gate = nn.Parameter(torch.full((1,), float(opts.gate_init), **kw))
        self.register_buffer("selected", torch.ones((), **kw))  # 1: adapted; 0: dropped by the selection
        self.register_buffer("searching", torch.ones((), **kw))  # 1 during the search (the gate is in use)
        self.scaling = opts.alpha / r
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()
        self.is_selected, self.is_searching = True, True  # mirrors of the buffers (no device sync per forward)
        if not self.on_meta:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def gate(self) -> torch.Tensor:
        return torch.sigmoid(self.dam_gate)

    def adapter_forward(self, x, base_out):
        if not self.is_selected:
            return base_out
        h = self.dropout(x).to(self.lora_A.dtype)
        delta = (h @ self.lora_A.t()) @ self.lora_B.t() * self.scaling
        if self.is_searching:
            delta = delta * self.gate()
        return base_out + delta.to(base_out.dtype)

    def delta_weight(self):
        if not self.is_selected:
            return torch.zeros_like(self.base.weight, dtype=self.lora_A.dtype)
        w = self.lora_B @ self.lora_A * self.scaling
        return w * self.gate() if self.is_searching else w

    @torch.no_grad()
    def end_search(self, keep: bool) -> None:
        if keep:
            self.lora_B.mul_(self.gate())  # weight sharing: fold the gate, ΔW unchanged at the switch
        self.selected.fill_(1.0 if keep else 0.0)
        self.searching.fill_(0.0)
        self.freeze()

    def freeze(self) -> None:
        """After the search: the gate and the unselected LoRA stop training (flags from the buffers)."""
        self.is_selected, self.is_searching = bool(self.selected.item()), bool(self.searching.item())
        self.dam_gate.requires_grad_(False)
        if not self.is_selected:
            self.lora_A.requires_grad_(False)
            self.lora_B.requires_grad_(False)


@register
class DiffoRA(Method):
    name = "diffora"
    paper = ("Jiang, Wang, Yuan, DiffoRA: Enabling Parameter-Efficient Fine-Tuning via Differential Module "
             "Selection, arXiv:2502.08905")
    Options = DiffoRAOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    lr_groups = ("gate",)

    option_cases = ({"bilevel": False}, {"dropout": 0.2})
    mutable_buffers = ("selected", "searching")  # the selection's outcome and phase
    count_examples = (
        {"shapes": [(1024, 3072)], "rank": 8, "options": {}, "count": 32_769,
         "source": "LoRA's r·(d_in + d_out) + the module's DAM entry γ"},
    )
    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        self.search_len: Optional[int] = self.options.search_steps
        self.searched = False

    # -- counts -------------------------------------------------------------------------------------
    def layer_count(self, d_out, d_in):
        return self.rank * (d_in + d_out) + 1

    def n_selected(self, n_modules: int) -> int:
        return min(n_modules, math.ceil(self.options.ratio * n_modules - 1e-9))

    def final_count(self, shapes):
        lora = sum(self.rank * (o + i) for o, i in shapes)
        return round(lora * self.n_selected(len(shapes)) / max(1, len(shapes)))

    def wrap(self, name, base, shared):
        return DiffoRALinear(base, self, shared)

    def group_of(self, param_name):
        return "gate" if param_name.endswith("dam_gate") else "default"

    # -- training -----------------------------------------------------------------------------------
    def on_train_start(self, ctx):
        if self.search_len is None:
            self.search_len = math.ceil(self.options.search_ratio * ctx.total_steps)
        if not self.searched and self.search_len == 0:
            self.select(adapted_layers(ctx.model))

    def after_backward(self, ctx):
        if self.searched or not self.options.bilevel:
            return
        gate_step = ctx.step % 2 == 0
        for m in adapted_layers(ctx.model):
            for p in ((m.lora_A, m.lora_B) if gate_step else (m.dam_gate,)):
                p.grad = None

    def after_step(self, ctx):
        if self.search_len is None:  # a loop that did not call on_train_start
            self.on_train_start(ctx)
        if not self.searched and ctx.step >= self.search_len:
            self.select(adapted_layers(ctx.model))

    def select(self, layers: List[DiffoRALinear]) -> None:
        """Discretise: keep the ⌈ρ·M⌉ largest gates (ties by module order)."""
        gates = [float(m.dam_gate.detach()) for m in layers]
        order = sorted(range(len(layers)), key=lambda i: (-gates[i], i))
        keep = set(order[:self.n_selected(len(layers))])
        for i, m in enumerate(layers):
            m.end_search(i in keep)
        self.searched = True

    # -- state --------------------------------------------------------------------------------------
    def extra_state(self) -> Dict[str, Any]:
        return {"searched": self.searched, "search_len": self.search_len}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        self.searched = bool(state.get("searched", False))
        self.search_len = state.get("search_len", self.search_len)

    def prepare_load(self, model, state):
        for name, m in model.named_modules():
            if isinstance(m, DiffoRALinear) and self.searched:
                m.selected.fill_(float(state[f"{name}.selected"]))
                m.searching.fill_(0.0)
                m.freeze()

    def allocation(self, model):
        layers = {n: m for n, m in model.named_modules() if isinstance(m, DiffoRALinear)}
        ranks = {n: self.rank if m.is_selected else 0 for n, m in layers.items()}
        params = sum(r * (m.in_features + m.out_features) for r, m in zip(ranks.values(), layers.values()))
        return {"ranks": ranks, "budget": self.rank * self.n_selected(len(layers)), "params": params}
