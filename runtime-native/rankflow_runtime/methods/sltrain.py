"""SLTrain: sparse plus low-rank weights for pretraining from scratch, with a fixed random support.

Han, Jawanpuria, Mishra, Jha, Sinha, Koulakis, Mishra: "SLTrain: a sparse plus low-rank approach for parameter and
memory efficient pretraining", NeurIPS 2024, arXiv:2406.02214. Official code `andyjm3/SLTrain@2335d62`
(`splora/splora_linear.py`, `splora/splora_model.py`, `sparse-lora/sparse_linear.cpp`, `torchrun_main.py`,
`peft_pretraining/training_utils.py`), read and re-implemented here.

Every target linear layer is *replaced* (its dense weight is dropped, not frozen) by

    W = s·B·A + S,   y = x Wᵀ + b

* A ∈ R^{r×d_in}: Kaiming-uniform (a = √5); B ∈ R^{d_out×r}: zeros; s = α/r, or tanh(θ) with θ = 1 trainable
  (`trainable_scaling`);
* S: sparse with nnz = ⌊δ·d_in·d_out⌋ entries on a support drawn once (a random permutation of the flat indices,
  the first nnz, sorted) and never changed; values U(−1/√d_in, 1/√d_in); stored as the persistent buffer
  `sparse_index` (int64) and the parameter `sparse_value`;
* b: a fresh bias U(−1/√d_out, 1/√d_out) when the layer had one.

The layer computes the dense W only transiently: a custom autograd function (as the official C++ kernel) keeps
x, B, A and the sparse values for backward and recomputes W there; the weight gradient G = gᵀx gives
dB = G (sA)ᵀ, d(sA) = Bᵀ G and dS = G at the support. Every non-target parameter (embeddings, norms, the LM
head) trains in full, from its random initialisation, as in the official `torchrun_main.py` (all
`requires_grad` parameters go to the optimizer). Default targets: every linear whose name contains `attn`,
`attention` or `mlp` (the official `target_modules`); the head is never replaced.

Trainable parameters per replaced layer: r(d_in + d_out) + ⌊δ·d_in·d_out⌋ (+ d_out bias) (+ 1 with trainable
scaling), plus every parameter outside the replaced layers.

Pretraining uses the `pretrain` procedure (cosine decay to 0.1·lr after the warmup, the official schedule, and a
dense model artifact at the end: W = s·B·A + S folded into a plain `nn.Linear`, `to_plain`).

Deviations from the official code (each deliberate):
* The support comes from the method's own generator (`Method.generator`, seeded by the `seed` option or the run
  seed, offset by the layer's position among the targets), not from the global torch RNG: the same support on
  every device and after a resume, independent of how many numbers model building drew.
* `sparsity` may be 0 (the official code requires 0 < δ < 1): that is the low-rank-only baseline of the paper's
  comparisons (W = s·B·A), with the same initialisation.
* The kernel is written in PyTorch (no C++ extension); its backward matches the official one (checked against
  autograd through the dense W in the tests).
* `lora_dropout` is accepted but unused by the official layer; it is not an option here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import AdaptedLinear, Method, option, register


def dense_weight(b: torch.Tensor, a_scaled: torch.Tensor, values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """W = B·(sA) + S, with S given by `values` at the flat `index` of the (d_out, d_in) matrix."""
    w = b @ a_scaled
    if index.numel():
        w = w.reshape(-1).index_add(0, index, values.to(w.dtype)).reshape(w.shape)
    return w


class SparseLowRankLinearFn(torch.autograd.Function):
    """y = x (B·A + S)ᵀ + b without keeping the dense weight between forward and backward."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, b, a_scaled, values, index, bias):
        w = dense_weight(b, a_scaled, values, index)
        ctx.save_for_backward(x, b, a_scaled, values, index)
        ctx.has_bias = bias is not None
        return F.linear(x, w.to(x.dtype) if w.dtype != x.dtype else w, bias)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        x, b, a_scaled, values, index = ctx.saved_tensors
        need_x, need_b, need_a, need_v, _, need_bias = ctx.needs_input_grad
        w = dense_weight(b, a_scaled, values, index).to(grad.dtype)
        gx = grad @ w if need_x else None
        g2, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1]).to(grad.dtype)
        gw = g2.t() @ x2 if (need_b or need_a or need_v) else None  # (d_out, d_in)
        gb = (gw @ a_scaled.to(gw.dtype).t()).to(b.dtype) if need_b else None
        ga = (b.to(gw.dtype).t() @ gw).to(a_scaled.dtype) if need_a else None
        gv = gw.reshape(-1)[index].to(values.dtype) if need_v else None
        gbias = g2.sum(0) if (ctx.has_bias and need_bias) else None
        return gx, gb, ga, gv, None, gbias


@dataclass
class SLTrainOptions:
    alpha: float = option(32.0, help="scaling numerator α (s = α/r); the official default (its scripts use 32 at 60M, "
                                     "16 at 130M/350M, 8 at 1B/7B)", min=0.0)
    sparsity: float = option(0.03, help="δ, the fraction of each weight's entries in the fixed sparse support (the "
                                        "official scripts' 0.03; the CLI default is 0.01); 0 = low-rank only",
                             min=0.0, max=0.99)
    trainable_scaling: bool = option(False, help="s = tanh(θ) with a trainable θ (initialised to 1) instead of α/r")
    seed: Optional[int] = option(None, help="seed of the random supports (default: the run seed)", min=0)


class SLTrainLinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: SLTrain, index_offset: int):
        super().__init__(base, method, None)
        r, o = method.rank, method.options
        d_out, d_in = self.out_features, self.in_features
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        has_bias = base.bias is not None
        self.nnz = int(o.sparsity * d_in * d_out)
        self.lora_A = nn.Parameter(torch.empty(r, d_in, **kw))
        self.lora_B = nn.Parameter(torch.zeros(d_out, r, **kw))
        self.sparse_value = nn.Parameter(torch.empty(self.nnz, **kw))
        self.register_buffer("sparse_index", torch.empty(self.nnz, dtype=torch.long, device=self.device))
        self.sl_bias = nn.Parameter(torch.zeros(d_out, **kw)) if has_bias else None
        self.scaling_logit = nn.Parameter(torch.ones(1, **kw)) if o.trainable_scaling else None
        self.fixed_scaling = o.alpha / r
        if not self.on_meta:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            with torch.no_grad():
                perm = torch.randperm(d_in * d_out, generator=method.generator(index_offset))[: self.nnz]
                self.sparse_index.copy_(torch.sort(perm).values.to(self.device))
                self.sparse_value.uniform_(-1 / math.sqrt(d_in), 1 / math.sqrt(d_in))
                if has_bias:
                    self.sl_bias.uniform_(-1 / math.sqrt(d_out), 1 / math.sqrt(d_out))
        # The dense weight is replaced, not frozen (the official code sets it to None): keep empty placeholders
        # with its device and dtype so the wrapper's conveniences still work, and nothing of W0 in memory.
        empty = torch.empty(0, device=base.weight.device, dtype=base.weight.dtype)
        del base.weight
        base.register_buffer("weight", empty, persistent=False)
        if has_bias:
            del base.bias
            base.register_buffer("bias", empty.clone(), persistent=False)

    def scaling(self) -> torch.Tensor:
        return self.scaling_logit.tanh() if self.scaling_logit is not None else self.fixed_scaling

    def needs_base_out(self) -> bool:
        return False

    def adapter_forward(self, x: torch.Tensor, base_out) -> torch.Tensor:
        a = self.lora_A * self.scaling()
        return SparseLowRankLinearFn.apply(x, self.lora_B, a, self.sparse_value, self.sparse_index, self.sl_bias)

    @torch.no_grad()
    def dense(self) -> torch.Tensor:
        """The layer's full weight s·B·A + S (d_out, d_in)."""
        return dense_weight(self.lora_B, self.lora_A * self.scaling(), self.sparse_value, self.sparse_index)

    def to_plain(self) -> nn.Linear:
        lin = nn.Linear(self.in_features, self.out_features, bias=self.sl_bias is not None,
                        device=self.lora_A.device, dtype=self.lora_A.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.dense())
            if self.sl_bias is not None:
                lin.bias.copy_(self.sl_bias)
        return lin

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.method.rank}, nnz={self.nnz}"


@register
class SLTrain(Method):
    name = "sltrain"
    paper = ("Han et al., SLTrain: a sparse plus low-rank approach for parameter and memory efficient pretraining, "
             "NeurIPS 2024 (arXiv:2406.02214)")
    Options = SLTrainOptions
    needs_rank = True
    init_is_identity = False  # the layer starts from S (and s·B·A = 0), not from the dense weight it replaces
    mergeable = False  # nothing to merge into: the dense weight is gone (see `to_plain`)
    foldable = True
    trains_backbone = True  # every parameter that remains trains (non-target ones in full)
    default_targets = ("*attn*", "*attention*", "*mlp*")
    option_cases = ({"sparsity": 0.0}, {"trainable_scaling": True}, {"seed": 3})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 765_460,
         "source": "methods.md §1: r·(d_in+d_out) + ⌊0.03·4096²⌋"},
        {"shapes": [(33, 17)], "rank": 4, "options": {"sparsity": 0.1, "trainable_scaling": True}, "count": 257,
         "source": "4·50 + ⌊0.1·561⌋ + 1"},
    )

    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        self._next = 0
        self._bias_out = 0

    def layer_count(self, d_out, d_in):
        return self.rank * (d_in + d_out) + int(self.options.sparsity * d_in * d_out) + \
            (1 if self.options.trainable_scaling else 0)

    def wrap(self, name, base, shared):
        if base.bias is not None:
            self._bias_out += base.out_features
        layer = SLTrainLinear(base, self, self._next)
        self._next += 1
        return layer

    def adapt(self, model, targets, ctx):
        if not 0.0 <= self.options.sparsity < 1.0:
            raise ConfigError(f"method.options.sparsity: {self.options.sparsity} is not in [0, 1)",
                              hint="use e.g. 0.03 (the official scripts), or 0 for low-rank only")
        self._next, self._bias_out = 0, 0
        shapes = super().adapt(model, targets, ctx)
        for p in model.parameters():  # non-target parameters train in full (the head included)
            p.requires_grad_(True)
        return shapes

    def formula(self, model, shapes, ctx):
        replaced = {id(p) for m in model.modules() if isinstance(m, SLTrainLinear) for p in m.parameters()}
        others = sum(p.numel() for p in model.parameters() if id(p) not in replaced)
        return self.count(shapes) + self._bias_out + others
