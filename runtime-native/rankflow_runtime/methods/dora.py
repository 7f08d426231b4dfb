"""DoRA: weight-decomposed low-rank adaptation.

Liu, Wang, Yin, Molchanov, Wang, Cheng, Chen, "DoRA: Weight-Decomposed Low-Rank Adaptation", ICML 2024,
arXiv:2402.09353. Official code: NVlabs/DoRA; reference implementation: Hugging Face PEFT
(`LoraConfig(use_dora=True)`, `tuners/lora/dora.py`).

The weight is split into a magnitude and a direction; LoRA updates the direction:

    W' = m ⊙ (W0 + s·B A) / ‖W0 + s·B A‖_row

* The norm is taken per output unit: over d_in for every row of the PyTorch (d_out, d_in) weight (the paper's
  "column-wise" norm of its (d_in, d_out)-oriented W). As the paper recommends (§4.3, to save memory), the norm
  is **detached**: it is treated as a constant in backward, so the gradient flows through m and B A only.
* m ∈ R^{d_out} is trainable, initialised to ‖W0‖_row, so W' = W0 at the start (B = 0).
* A ∈ R^{r×d_in} Kaiming-uniform (a = √5), B ∈ R^{d_out×r} zero, s = α/r (or α/√r with rsLoRA), as LoRA.
* The forward follows PEFT: y = W0 x + b + (m/n − 1) ⊙ W0 x_d + (m/n) ⊙ s·B A x_d, with x_d = dropout(x) and
  n the detached norm; with dropout 0 this is exactly (m/n) ⊙ (W0 + s·B A) x + b (the bias is not rescaled).

Trainable parameters per layer: **r·(d_in + d_out) + d_out**.

Merging folds W' into the base weight; because W' is not W0 plus an additive term that can be recomputed
after merging, the exact ΔW used by the merge is kept (in memory, not in checkpoints) for the unmerge.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .base import AdaptedLinear, Method, register
from .lora import LoRAOptions


class DoRALinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: DoRA, shared=None):
        super().__init__(base, method, shared)
        r, opts = method.rank, method.options
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **kw))
        self.magnitude = nn.Parameter(torch.empty(self.out_features, **kw))
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()
        self.scaling = opts.alpha / (math.sqrt(r) if opts.use_rslora else r)
        self._merged_delta: Optional[torch.Tensor] = None
        if not self.on_meta:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            with torch.no_grad():
                self.magnitude.copy_(torch.linalg.norm(self.base.weight.to(self.magnitude.dtype), dim=1))

    def weight_norm(self) -> torch.Tensor:
        """‖W0 + s·B A‖ per output row, detached from the graph."""
        with torch.no_grad():
            w = self.base.weight.to(self.lora_A.dtype) + self.scaling * (self.lora_B @ self.lora_A)
            return torch.linalg.norm(w, dim=1)

    def adapter_forward(self, x, base_out):
        dt = self.lora_A.dtype
        xd = self.dropout(x)
        scale = self.magnitude / self.weight_norm()  # (d_out,), gradient only through m
        lora = ((xd.to(dt) @ self.lora_A.t()) @ self.lora_B.t()) * self.scaling
        if isinstance(self.dropout, nn.Identity) or not self.training:
            w0x = base_out if self.base.bias is None else base_out - self.base.bias
        else:
            w0x = nn.functional.linear(xd, self.base.weight)
        extra = (scale - 1) * w0x.to(dt) + scale * lora
        return base_out + extra.to(base_out.dtype)

    def delta_weight(self):
        if self._merged_delta is not None:
            return self._merged_delta
        w0 = self.base.weight.to(self.lora_A.dtype)
        w = w0 + self.scaling * (self.lora_B @ self.lora_A)
        return (self.magnitude / self.weight_norm())[:, None] * w - w0

    @torch.no_grad()
    def merge(self):
        if self.merged:
            return
        delta = self.delta_weight().detach().clone()
        self.base.weight.data += delta.to(self.base.weight.dtype)
        self._merged_delta = delta
        self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if not self.merged:
            return
        self.base.weight.data -= self._merged_delta.to(self.base.weight.dtype)
        self._merged_delta = None
        self.merged = False


@register
class DoRA(Method):
    name = "dora"
    paper = ("Liu et al., DoRA: Weight-Decomposed Low-Rank Adaptation, ICML 2024 (arXiv:2402.09353)")
    Options = LoRAOptions  # DoRA's options are LoRA's: α, dropout, rsLoRA scaling (PEFT: use_dora=True)
    needs_rank = True
    init_is_identity = True
    mergeable = True
    option_cases = ({"dropout": 0.2}, {"use_rslora": True})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 266_240, "source": "methods.md §1"},
        {"shapes": [(1024, 3072)], "rank": 8, "options": {}, "count": 33_792, "source": "8·(3072+1024) + 1024"},
    )

    def layer_count(self, d_out, d_in):
        return self.rank * (d_in + d_out) + d_out

    def wrap(self, name, base, shared):
        return DoRALinear(base, self, shared)
