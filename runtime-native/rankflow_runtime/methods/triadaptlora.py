"""TriAdaptLoRA: triangular split of the core matrix, normalised-Frobenius importance, adaptive rank growth.

Liang, Wang, Zeng, "TriAdaptLoRA: Brain-Inspired Triangular Adaptive Low-Rank Adaptation for Parameter-Efficient
Fine-Tuning", arXiv:2501.08008 (2025). Only the abstract could be read. Code: a public PEFT-fork file defining
`TriAdaptLoraConfig` / `TriAdaptLoraLayer` / `RankAllocator` (its repository could not be identified; treated as
the likely official code) and its sibling `DTSMLoraConfig` file.

Per adapted layer, blocks t = 1..n of size k_t (the first `init_rank`, later ones `incre_rank_num` = k); after
block t the rank is R_t = k_1 + … + k_t. Block t holds a_t (k_t×d_in), b_t (d_out×k_t), a row strip
C_row_t (k_t×R_t) and a column strip C_col_t (R_t×k_t). With R = R_n:

    A = cat(a_t) (R×d_in), B = cat(b_t) (d_out×R),
    C = C_low + C_up: C_low stacks the row strips zero-padded on the right (lower block-triangular), C_up
        concatenates the column strips zero-padded at the bottom (upper block-triangular); both contain the
        diagonal blocks, so those are counted twice (as the file);
    ΔW = B (C A) · α / (R + 1e-5)                    y = W0 x + b + ΔW dropout(x)

α = `alpha` (≤ 0: α = init_rank). Because R is in the denominator, every growth rescales the existing ΔW by
(R + 1e-5)/(R + k + 1e-5) (new C strips start at zero), as the file.

Procedure (hook `after_backward`, t = steps done, 0-based; as IncreLoRA, whose allocator API the file copies):
* When t > init_warmup, t % incre_interval == 0 and the total rank is below target = rank·M: every module's
  score is the increase of its normalised Frobenius norm since the last growth call,
  score = ‖C‖_F / n_blocks − (the same value at the previous call) (computed only at growth calls; a module that
  just grew has more blocks, so its next score is biased down, as the file).
* c = (t − init_warmup)/(T − init_warmup); n = ⌊(target − total)·c⌋ (`linear`) or ⌊(target − total)^c⌋
  (`non-linear`), clipped to [1, M]. `growth_rule: official`: every module with score ≥ the n-th largest grows
  by k (ties grow more; the total can overshoot by up to (n−1)·k). `capped` (default): the n best (ties by
  module order) grow, the last by what is left, so the total never exceeds the target (the budget the paper
  names, "reference rank" per module on average).
* New tensors join the optimizer through `ctx.add_parameters` (one group per growth, training.weight_decay).
* Orthogonality regulariser orth_reg_weight · Σ_m (‖AAᵀ−I‖_F + ‖BᵀB−I‖_F)/(2M) (the file's model forward).

Trainable parameters per layer: R(d_in + d_out) + Σ_t 2·k_t·R_t (at the start k_1 = R = init_rank:
init_rank(d_in + d_out) + 2·init_rank²). `count`'s `final` puts every module at R = rank (blocks init_rank, then
k, the last one partial).

Deviations:
* **Initialisation.** The file creates every tensor with zeros except the first A block (normal inits commented
  out). With B = C = 0 every gradient is zero (∂L/∂A = Cᵀ Bᵀ G, ∂L/∂B = G (C A)ᵀ, ∂L/∂C = Bᵀ G Aᵀ), and the
  orthogonality term has zero gradient at B = 0, so ΔW ≡ 0 for the whole run: that code cannot have produced
  the paper's results. We initialise as its sibling DTSMLoRA file (and AdaLoRA/IncreLoRA) do: A, B ~ N(0, 0.02),
  C = 0 (ΔW = 0 at the start, non-zero gradients on C); every new block likewise. `init: official` reproduces
  the file's all-zero init (test: ΔW stays exactly 0).
* New groups follow the run's lr schedule (`restart_warmup` false; true warms them up again as IncreLoRA).
  The file adds them without lr and without a scheduler entry, so they train at the optimizer's default lr.
* `capped` is our rule; `official` reproduces the file's selection.
* The first block is `init_rank` (default 1, the file's); k defaults to ⌊rank/2⌋ (the file's table, which only
  lists even ranks and 128), at least 1; T defaults to the run's total steps (the file requires `total_step`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ._allocation import orth_regulariser
from .base import AdaptedLinear, Method, adapted_layers, option, register


@dataclass
class TriAdaptLoRAOptions:
    init_rank: int = option(1, help="size of the first block (rank at the start)", min=1)
    incre_rank_num: Optional[int] = option(None, help="size k of every later block (null: ⌊rank/2⌋, ≥ 1)", min=1)
    init_warmup: int = option(0, help="no growth until step > init_warmup", min=0)
    incre_interval: int = option(1, help="grow every incre_interval steps", min=1)
    rank_growth_model: str = option("linear", help="number of modules grown per round: ⌊deficit·c⌋ or "
                                                   "⌊deficit^c⌋", choices=["linear", "non-linear"])
    growth_rule: str = option("capped", help="capped: never above rank·M; official: the file's threshold rule",
                              choices=["capped", "official"])
    orth_reg_weight: float = option(0.5, help="weight of the orthogonality regulariser", min=0.0)
    alpha: float = option(8.0, help="scaling numerator α: ΔW = B(CA)·α/R (≤ 0: α = init_rank)")
    dropout: float = option(0.0, help="dropout probability on the adapter input", min=0.0, max=1.0)
    total_step: Optional[int] = option(None, help="T of the growth schedule (null: the run's total steps)", min=1)
    restart_warmup: bool = option(False, help="new parameter groups warm up again (IncreLoRA-style)")
    init: str = option("normal", help="normal: A, B ~ N(0, 0.02), C = 0 (as DTSMLoRA); official: the file's "
                                      "all-zero init, which cannot learn", choices=["normal", "official"])


class TriAdaptLoRALinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: TriAdaptLoRA, shared=None):
        super().__init__(base, method, shared)
        opts = method.options
        self.lora_A, self.lora_B = nn.ParameterList(), nn.ParameterList()
        self.lora_C_row, self.lora_C_col = nn.ParameterList(), nn.ParameterList()
        self.scaling = opts.alpha if opts.alpha > 0 else float(opts.init_rank)
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.register_buffer("prev_norm", torch.zeros((), **kw))
        self.register_buffer("score", torch.zeros((), **kw))
        self.add_block(opts.init_rank, first=True)

    def _param(self, *shape, normal: bool) -> nn.Parameter:
        t = torch.zeros(*shape, device=self.device, dtype=self.adapter_dtype)
        if normal and not self.on_meta:
            nn.init.normal_(t, mean=0.0, std=0.02)
        return nn.Parameter(t)

    def add_block(self, k: int, first: bool = False) -> List[nn.Parameter]:
        """Append a block of size k (a, b, and the C strips of the new rank R + k); returns its tensors."""
        normal = self.method.options.init == "normal"
        size = self.rank() + k
        new = [self._param(k, self.in_features, normal=normal or first),
               self._param(self.out_features, k, normal=normal),
               self._param(k, size, normal=False), self._param(size, k, normal=False)]
        for plist, p in zip((self.lora_A, self.lora_B, self.lora_C_row, self.lora_C_col), new):
            plist.append(p)
        return new

    def rank(self) -> int:
        return sum(a.shape[0] for a in self.lora_A)

    def core(self) -> torch.Tensor:
        """C = C_low + C_up (R×R)."""
        r = self.rank()
        low = torch.cat([F.pad(c, (0, r - c.shape[1])) for c in self.lora_C_row], 0)
        up = torch.cat([F.pad(c, (0, 0, 0, r - c.shape[0])) for c in self.lora_C_col], 1)
        return low + up

    def factors(self):
        return torch.cat(list(self.lora_A), 0), self.core(), torch.cat(list(self.lora_B), 1)

    def delta_weight(self):
        a, c, b = self.factors()
        return b @ (c @ a) * self.scaling / (self.rank() + 1e-5)

    def adapter_forward(self, x, base_out):
        a, c, b = self.factors()
        h = self.dropout(x).to(a.dtype)
        out = ((h @ a.t()) @ c.t() @ b.t()) * (self.scaling / (self.rank() + 1e-5))
        return base_out + out.to(base_out.dtype)

    @torch.no_grad()
    def compute_score(self) -> float:
        """score = ‖C‖_F / n_blocks − the previous call's value (the file's `compute_score`)."""
        value = torch.linalg.matrix_norm(self.core(), ord="fro") / len(self.lora_C_row)
        self.score.copy_(value - self.prev_norm)
        self.prev_norm.copy_(value)
        return float(self.score)

    def params(self) -> int:
        return sum(p.numel() for plist in (self.lora_A, self.lora_B, self.lora_C_row, self.lora_C_col)
                   for p in plist)


@register
class TriAdaptLoRA(Method):
    name = "triadaptlora"
    paper = ("Liang, Wang, Zeng, TriAdaptLoRA: Brain-Inspired Triangular Adaptive Low-Rank Adaptation for "
             "Parameter-Efficient Fine-Tuning, arXiv:2501.08008")
    Options = TriAdaptLoRAOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    test_options = {"incre_interval": 1, "orth_reg_weight": 0.1}

    option_cases = ({"rank_growth_model": "non-linear"}, {"growth_rule": "official"}, {"dropout": 0.2},
                    {"restart_warmup": True}, {"init": "official"})
    mutable_buffers = ("prev_norm", "score")  # the growth scores
    non_learning = (({"init": "official"}, "the file's all-zero init: every gradient is 0, ΔW stays 0"),)
    count_examples = (
        {"shapes": [(1024, 3072)], "rank": 8, "options": {"init_rank": 2}, "count": 8_200,
         "source": "at the start: init_rank·(d_in + d_out) + 2·init_rank² = 2·4096 + 8"},
    )
    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        self.k = self.options.incre_rank_num or max(1, self.rank // 2)
        self.total: Optional[int] = self.options.total_step

    # -- counts -------------------------------------------------------------------------------------
    @staticmethod
    def block_count(d_out: int, d_in: int, sizes: List[int]) -> int:
        r, n = 0, 0
        for k in sizes:
            r += k
            n += k * (d_in + d_out) + 2 * k * r
        return n

    def final_sizes(self) -> List[int]:
        r0, left = self.options.init_rank, max(0, self.rank - self.options.init_rank)
        return [r0] + [self.k] * (left // self.k) + ([left % self.k] if left % self.k else [])

    def layer_count(self, d_out, d_in):
        return self.block_count(d_out, d_in, [self.options.init_rank])

    def final_count(self, shapes):
        return sum(self.block_count(o, i, self.final_sizes()) for o, i in shapes)

    def wrap(self, name, base, shared):
        return TriAdaptLoRALinear(base, self, shared)

    def target(self) -> int:
        return self.rank * len(self.targets)

    # -- training -----------------------------------------------------------------------------------
    def on_train_start(self, ctx):
        self.total = self.options.total_step or self.total or ctx.total_steps

    def extra_loss(self, ctx):
        w = self.options.orth_reg_weight
        if w <= 0:
            return None
        reg = orth_regulariser((a, b) for a, _, b in (m.factors() for m in adapted_layers(ctx.model)))
        return None if reg is None else w * reg

    def after_backward(self, ctx):
        if self.total is None:  # a loop that did not call on_train_start
            self.on_train_start(ctx)
        o, layers = self.options, adapted_layers(ctx.model)
        total = sum(m.rank() for m in layers)
        if total < self.target() and ctx.step > o.init_warmup and ctx.step % o.incre_interval == 0:
            self.grow(ctx, layers, total)

    def n_grow(self, step: int, total: int, n_modules: int) -> int:
        o = self.options
        c = (step - o.init_warmup) / max(1, self.total - o.init_warmup)
        deficit = self.target() - total
        n = int(deficit * c) if o.rank_growth_model == "linear" else int(math.exp(c * math.log(deficit)))
        return min(max(n, 1), n_modules)

    def select(self, scores: List[float], n: int, total: int) -> List[int]:
        """Ranks each module grows by (see the module docstring)."""
        k = self.k
        if self.options.growth_rule == "official":
            t = torch.tensor(scores)  # compared in float32, as the file's tensor scores
            threshold = torch.topk(t, n)[0][-1]
            return [k if bool(s >= threshold) else 0 for s in t]
        remaining = self.target() - total
        best = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:min(n, math.ceil(remaining / k))]
        grow = [0] * len(scores)
        for j, i in enumerate(best):
            grow[i] = min(k, remaining - j * k)
        return grow

    def grow(self, ctx, layers: List[TriAdaptLoRALinear], total: int) -> None:
        scores = [m.compute_score() for m in layers]
        plan = self.select(scores, self.n_grow(ctx.step, total, len(layers)), total)
        new = [p for m, j in zip(layers, plan) if j for p in m.add_block(j)]
        if new:
            ctx.add_parameters(new, restart_warmup=self.options.restart_warmup)

    # -- state --------------------------------------------------------------------------------------
    def extra_state(self) -> Dict[str, Any]:
        return {"total": self.total}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        self.total = state.get("total", self.total)

    def prepare_load(self, model, state):
        for name, m in model.named_modules():
            if isinstance(m, TriAdaptLoRALinear):
                while f"{name}.lora_A.{len(m.lora_A)}" in state:
                    m.add_block(int(state[f"{name}.lora_A.{len(m.lora_A)}"].shape[0]))

    def allocation(self, model):
        layers = {n: m for n, m in model.named_modules() if isinstance(m, TriAdaptLoRALinear)}
        return {"ranks": {n: m.rank() for n, m in layers.items()}, "budget": self.rank * len(layers),
                "params": sum(m.params() for m in layers.values())}
