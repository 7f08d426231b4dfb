"""LoRA: low-rank adaptation, with dropout, alpha and rsLoRA scaling.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, arXiv:2106.09685.
rsLoRA scaling: Kalajdzievski, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA", arXiv:2312.03732.

y = W0 x + s · B A dropout(x), with A ∈ R^{r×d_in} (Kaiming-uniform, a=√5, as the official loralib and PEFT),
B ∈ R^{d_out×r} initialised to zero (so the adapted model starts equal to the base), s = α/r or α/√r (rsLoRA).
Trainable parameters per layer: r·(d_in + d_out).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import LowRankLinear, Method, option, register


@dataclass
class LoRAOptions:
    alpha: float = option(8.0, help="scaling numerator α (s = α/r, or α/√r with use_rslora)", min=0.0)
    dropout: float = option(0.0, help="dropout probability on the LoRA path input", min=0.0, max=1.0)
    use_rslora: bool = option(False, help="rank-stabilised scaling s = α/√r (rsLoRA)")


class LoRALinear(LowRankLinear):
    def __init__(self, base: nn.Linear, method: LoRA, shared=None):
        super().__init__(base, method, shared)
        r, opts = method.rank, method.options
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **kw))
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()
        self.scaling = opts.alpha / (math.sqrt(r) if opts.use_rslora else r)
        if not self.on_meta:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))


@register
class LoRA(Method):
    name = "lora"
    paper = "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022 (arXiv:2106.09685)"
    Options = LoRAOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    option_cases = ({"dropout": 0.2}, {"use_rslora": True})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 262_144, "source": "methods.md §1"},
        {"shapes": [(1024, 3072)], "rank": 8, "options": {}, "count": 32_768, "source": "8·(3072+1024)"},
        {"shapes": [(33, 17)], "rank": 3, "options": {"use_rslora": True}, "count": 150, "source": "3·(17+33)"},
    )

    def layer_count(self, d_out, d_in):
        return self.rank * (d_in + d_out)

    def wrap(self, name, base, shared):
        return LoRALinear(base, self, shared)
