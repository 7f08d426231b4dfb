"""SNELLA: SNELL's kernelized sparse tuning with a learned nonlinearity and bi-level sparsity allocation.

Paper: Shufan Shen, Junshu Sun, Shuhui Wang, Qingming Huang, "Kernelized Sparse Fine-Tuning with Bi-level
Parameter Competition for Vision Models", arXiv:2510.24037. Official code: github.com/ssfgunner/SNELL (class
`SNELLA` in `model/vision_transformer_timm.py`, `sparse_allocator.py` `Allocator`, `engine.py` (importance after
every `optimizer.step()`), `train_alloc.py` (allocation at every epoch start), `scripts/*/snella32`; read at
e9d5185). Only the abstract of the paper was available; everything below follows the official code.

Layer (on SNELL's, see snell.py: coordinates In ∈ R^{H×d_in×q/H}, Out ∈ R^{H×d_out×q/H}, Kaiming-uniform,
coefficients c_h = 0.1·(−1)^h, parallel branch y = W0 x + DropPath(dropout(x)·M_s) with SNELL's dropout placement
and gradient checkpointing):

    K = Σ_h c_h · cdist(In_h, Out_h, p = 2),     M = K + α·softmax(K/γ, dim = −1) + β      (α = 1, γ = 1, β = 0
    trainable scalars),     M_s = M ⊙ (|M|·1[|M| > quantile(|M|, ρ_l)])   (magnitude factor detached),

with a per-layer sparsity ρ_l set by the allocator. Trainable parameters per layer: H·⌊q/H⌋·(d_in + d_out) + 3.

Bi-level allocation (the official `Allocator`):
* Importance, after every optimizer step (the post-step hook: updated weights, the step's gradients), element-wise
  on In and Out: I = |θ ⊙ ∇θ| (NaN → 0); Ī ← β1·Ī + (1−β1)·I; Ū ← β2·Ū + (1−β2)·|I − Ī| (β1 = β2 = 0.85).
* Budget, once per epoch at its start (epoch e of T): V(e) = V_init for e ≤ init_warmup (no reallocation),
  V_target for e > T − final_warmup, otherwise int(V_target + (V_init − V_target)·(1 − (e − wi)/(T − wf − wi))³),
  reallocating when e is a multiple of `interval`; V_init = Σ_l (1 − init_sparsity)·n_l, V_target =
  Σ_l (1 − target_sparsity)·n_l, n_l = d_in·d_out.
* Across layers: s_l = mean(Ī⊙Ū)_In + mean(Ī⊙Ū)_Out normalised to sum 1 (uniform when all are 0);
  alloc_l = min(int(V·s_l), n_l), the shortfall redistributed ∝ s among the uncapped layers until it is placed,
  then truncated to integers (so Σ alloc ∈ [V − L, V]); ρ_l = clamp(1 − alloc_l/n_l, 0, 1), constant until the
  next allocation.
* Within a layer: the magnitude competition of M_s above.

Defaults: q = the rank (official 32), num_kernels 2, kernel_scale 0.1, dropout 0.1, drop_path 0.1, checkpointing,
init_sparsity 0 (FGVC scripts; VTAB 0.01), beta1 = beta2 = 0.85, init_warmup = final_warmup = 0, interval 1
(all scripts). target_sparsity has no single official value (scripts 0-0.93, CLI 0.9): 0.5 is our choice. α, γ, β
are 1-D and get no weight decay (official `lib/utils.py`).

Deviations and notes
--------------------
* Following the official code: the magnitude factor is applied even at ρ = 0 (the quantile is then min|M|, so the
  smallest entries are zeroed and all others multiplied by |M|; SNELL switches to the dense kernel instead), and
  the kernel's p is 2 (hard-coded in `SNELLA.pathIntegrals`; SNELL's `norm_p` option has no SNELLA counterpart).
* The threshold uses `torch.kthvalue` (as SNELL here: same kept set as `torch.quantile`, no 2^24 limit).
* The split runs in float64 with an iteration cap and, when the uncapped layers all score 0, spreads the rest
  evenly (the official float32 loop divides by zero there and can spin on rounding); same allocations otherwise.
* Epochs come from the training loop (`ctx.epoch`, `ctx.total_epochs`; T = the epochs the run starts, ⌈total⌉);
  loops that do not count epochs (the unit-test helpers) allocate once per step (T = total steps).
* The EMAs are persistent buffers of each layer and ρ_l / the last allocated epoch are checkpointed, so a run
  resumed mid-epoch continues bit for bit; the allocation is reported as `allocation` events (unit `nonzeros`).
* The official VTAB scripts for Caltech101 and SVHN run the dense MixK kernel (no sparsity, no allocator); that
  is not this method.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import TrainContext, adapted_layers, option, register
from .snell import SNELL, SNELLLinear


@dataclass
class SNELLAOptions:
    target_sparsity: float = option(0.5, help="average sparsity the budget reaches at the end (official target_ratio)",
                                    min=0.0, max=1.0)
    init_sparsity: float = option(0.0, help="sparsity of every layer before the first allocation (official init_thres)",
                                  min=0.0, max=1.0)
    init_warmup: int = option(0, help="epochs at the initial budget (official init_warmup)", min=0)
    final_warmup: int = option(0, help="final epochs at the target budget (official final_warmup)", min=0)
    interval: int = option(1, help="reallocate every `interval` epochs while the budget falls (official mask_interval)",
                           min=1)
    beta1: float = option(0.85, help="EMA decay of the importance |θ·∇θ| (official beta1)", min=0.0, max=1.0)
    beta2: float = option(0.85, help="EMA decay of its uncertainty |I − Ī| (official beta2)", min=0.0, max=1.0)
    num_kernels: int = option(2, help="H: number of distance kernels, coefficients 0.1·(-1)^h (official num_Hs)", min=1)
    kernel_scale: float = option(0.1, help="|c_h|, the fixed kernel coefficient magnitude (official SCALE_FACTOR_fc)",
                                 min=0.0)
    dropout: float = option(0.1, help="dropout on the branch input (official default)", min=0.0, max=1.0)
    drop_path: float = option(0.1, help="DropPath (per sample) on the branch output (official default)",
                              min=0.0, max=1.0)
    checkpoint: bool = option(True, help="recompute the merged matrix in backward (gradient checkpointing, official)")
    dropout_exclude: list = option(["attn.out", "o_proj", "out_proj", "attn.proj", "attention.output.dense",
                                    "to_out.0", "c_proj"],
                                   help="targets whose branch gets no input dropout, as method.targets patterns "
                                        "(official: the attention output projection)")


def magnitude_competition(m: torch.Tensor, rho: float) -> torch.Tensor:
    """M ⊙ (|M|·1[|M| > τ]), τ the ρ-quantile of |M| (the (k+1)-th smallest, k = ⌊ρ(n−1)⌋), at every ρ
    (ρ = 0 zeroes the smallest entries: the official SNELLA)."""
    mag = m.detach().abs()
    flat = mag.flatten()
    k = min(int(math.floor(rho * (flat.numel() - 1))), flat.numel() - 1)
    tau = torch.kthvalue(flat, k + 1).values
    return m * torch.where(mag > tau, mag, torch.zeros_like(mag))


def budget(epoch: int, total: int, v_init: float, v_target: float, init_warmup: int, final_warmup: int,
           interval: int) -> Tuple[float, bool]:
    """(V(epoch), whether to reallocate): the official `schedule_threshold` with total_step = epochs."""
    if epoch <= init_warmup:
        return v_init, False
    if epoch > total - final_warmup:
        return v_target, True
    c = 1 - (epoch - init_warmup) / (total - final_warmup - init_warmup)
    return int(v_target + (v_init - v_target) * c ** 3), epoch % interval == 0


def split_budget(volume: float, scores: Sequence[float], caps: Sequence[int]) -> List[int]:
    """The official `param_alloc`: alloc_l = min(int(V·s_l), cap_l), the shortfall redistributed ∝ s over the
    uncapped layers until placed, then truncated (Σ ∈ [V − L, V] when V ≤ Σ caps)."""
    s = torch.tensor(list(scores), dtype=torch.float64)
    cap = torch.tensor(list(caps), dtype=torch.float64)
    alloc = torch.minimum(torch.trunc(volume * s), cap)
    for _ in range(10 * len(caps) + 10):
        delta = volume - float(alloc.sum())
        if delta <= 1e-6:
            break
        room = cap - alloc
        free = room > 0
        if not bool(free.any()):
            break
        share = s[free] / s[free].sum() if float(s[free].sum()) > 0 else torch.full_like(s[free], 1 / int(free.sum()))
        alloc[free] += torch.minimum(delta * share, room[free])
    return [int(a) for a in torch.floor(alloc + 1e-9).tolist()]


class SNELLALinear(SNELLLinear):
    def __init__(self, base: nn.Linear, method: SNELLA, name: str = "", shared=None):
        super().__init__(base, method, name, shared)
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.alpha = nn.Parameter(torch.ones(1, **kw))
        self.gamma = nn.Parameter(torch.ones(1, **kw))
        self.beta = nn.Parameter(torch.zeros(1, **kw))
        for key, like in (("ipt_in", self.In_Qs), ("unc_in", self.In_Qs), ("ipt_out", self.Out_Qs),
                          ("unc_out", self.Out_Qs)):
            self.register_buffer(key, torch.zeros(like.shape, device=self.device, dtype=torch.float32))

    @property
    def numel_merged(self) -> int:
        return self.in_features * self.out_features

    def merged_matrix(self) -> torch.Tensor:
        k = (self.coeff * torch.cdist(self.In_Qs, self.Out_Qs, p=2)).sum(0)  # p = 2 hard-coded (official)
        m = k + self.alpha * F.softmax(k / self.gamma, dim=-1) + self.beta
        return magnitude_competition(m, self.method.sparsity_of(self.target_name))

    @torch.no_grad()
    def update_importance(self, beta1: float, beta2: float) -> None:
        for p, ipt, unc in ((self.In_Qs, self.ipt_in, self.unc_in), (self.Out_Qs, self.ipt_out, self.unc_out)):
            if p.grad is None:
                continue
            i = (p * p.grad).abs().float()
            i = torch.where(torch.isnan(i), torch.zeros_like(i), i)
            ipt.mul_(beta1).add_(i, alpha=1 - beta1)
            unc.mul_(beta2).add_((i - ipt).abs(), alpha=1 - beta2)

    @torch.no_grad()
    def score(self) -> float:
        return float((self.ipt_in * self.unc_in).mean()) + float((self.ipt_out * self.unc_out).mean())


@register
class SNELLA(SNELL):
    name = "snella"
    paper = ("Shen, Sun, Wang, Huang, Kernelized Sparse Fine-Tuning with Bi-level Parameter Competition for Vision "
             "Models (SNELLA), arXiv:2510.24037")
    Options = SNELLAOptions
    option_cases = ({"checkpoint": False}, {"init_sparsity": 0.3, "target_sparsity": 0.8}, {"num_kernels": 1})
    conformance_ranks = (2, 4, 16)  # every kernel needs rank // num_kernels >= 1
    mutable_buffers = ("ipt_in", "unc_in", "ipt_out", "unc_out")  # the importance EMAs
    count_examples = ({"shapes": [(48, 32)], "rank": 4, "options": {}, "count": 2 * 2 * (32 + 48) + 3,
                       "source": "procedures.md §7: H·⌊q/H⌋·(d_in + d_out) + 3, H = 2"},)

    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        o = self.options
        self.sparsity: Dict[str, float] = {}  # ρ_l by target name (checkpointed in extra_state)
        self.alloc: Dict[str, int] = {}
        self.allocated_epoch: Optional[int] = None
        self.volume: Optional[float] = None
        if o.target_sparsity < 0 or o.init_sparsity < 0:
            raise ConfigError("method.options: sparsities must be in [0, 1]", hint="e.g. target_sparsity 0.5")
        if not (0 < o.beta1 < 1 and 0 < o.beta2 < 1):
            raise ConfigError(f"method.options.beta1/beta2: must be in (0, 1), got {o.beta1}, {o.beta2}",
                              hint="official 0.85")

    def layer_count(self, d_out, d_in):
        return super().layer_count(d_out, d_in) + 3

    def wrap(self, name, base, shared):
        self.sparsity[name] = float(self.options.init_sparsity)
        n = base.in_features * base.out_features
        self.alloc[name] = int(round((1 - self.options.init_sparsity) * n))
        return SNELLALinear(base, self, name, shared)

    def sparsity_of(self, name: str) -> float:
        return self.sparsity.get(name, float(self.options.init_sparsity))

    # -- the schedule ---------------------------------------------------------------------------------
    def _epochs(self, ctx: TrainContext) -> Tuple[int, int]:
        """(current epoch, total epochs T); loops without epochs: one per step."""
        if ctx.total_epochs is None:
            return int(ctx.step), max(1, int(ctx.total_steps))
        return int(math.floor(ctx.epoch + 1e-9)), max(1, int(math.ceil(ctx.total_epochs - 1e-9)))

    def on_train_start(self, ctx: TrainContext) -> None:
        o = self.options
        _, total = self._epochs(ctx)
        if total <= o.init_warmup + o.final_warmup:
            raise ConfigError(f"method.options: init_warmup {o.init_warmup} + final_warmup {o.final_warmup} leave no "
                              f"epoch of the run's {total} to lower the budget",
                              hint="train for more epochs or lower the warmups")

    def before_forward(self, ctx: TrainContext) -> None:
        epoch, total = self._epochs(ctx)
        if epoch != self.allocated_epoch:
            self.allocate(ctx.model, epoch, total)
            self.allocated_epoch = epoch

    def after_optimizer_step(self, ctx: TrainContext) -> None:
        for layer in adapted_layers(ctx.model):
            if isinstance(layer, SNELLALinear):
                layer.update_importance(self.options.beta1, self.options.beta2)

    def allocate(self, model: nn.Module, epoch: int, total: int) -> None:
        o = self.options
        layers = [m for m in adapted_layers(model) if isinstance(m, SNELLALinear)]
        caps = [m.numel_merged for m in layers]
        v_init = sum((1 - o.init_sparsity) * n for n in caps)
        v_target = sum((1 - o.target_sparsity) * n for n in caps)
        volume, reallocate = budget(epoch, total, v_init, v_target, o.init_warmup, o.final_warmup, o.interval)
        self.volume = volume
        if not reallocate:
            return
        raw = [m.score() for m in layers]
        tot = sum(raw)
        scores = [r / tot for r in raw] if tot > 0 else [1 / len(layers)] * len(layers)
        for m, a in zip(layers, split_budget(volume, scores, caps)):
            self.alloc[m.target_name] = a
            self.sparsity[m.target_name] = min(max(1 - a / m.numel_merged, 0.0), 1.0)

    # -- reporting and checkpoints --------------------------------------------------------------------
    def allocation(self, model: nn.Module) -> Optional[Dict[str, Any]]:
        return {"ranks": dict(self.alloc), "budget": int(self.volume) if self.volume is not None else None,
                "unit": "nonzeros"}

    def extra_state(self) -> Dict[str, Any]:
        return {"sparsity": dict(self.sparsity), "alloc": dict(self.alloc), "allocated_epoch": self.allocated_epoch,
                "volume": self.volume}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        if not state:
            return
        self.sparsity.update({k: float(v) for k, v in state.get("sparsity", {}).items()})
        self.alloc.update({k: int(v) for k, v in state.get("alloc", {}).items()})
        self.allocated_epoch = state.get("allocated_epoch")
        self.volume = state.get("volume")
