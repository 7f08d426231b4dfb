"""VeRA: vector-based random matrix adaptation.

Kopiczko, Blankevoort, Asano, "VeRA: Vector-based Random Matrix Adaptation", ICLR 2024, arXiv:2310.11454.
Reference implementation: Hugging Face PEFT `tuners/vera` (the paper has no separate official code).

    y = W0 x + Λ_b B Λ_d A dropout(x),   ΔW = diag(λ_b) · B · diag(λ_d) · A

* A ∈ R^{r×d_in,max} and B ∈ R^{d_out,max×r} are frozen random matrices **shared by every adapted layer**:
  created once per model at the largest in/out sizes among the targets and sliced to each layer
  (A[:, :d_in], B[:d_out, :]). Both are Kaiming-uniform (gain √2, bound √6/√fan_in) drawn from a CPU
  `torch.Generator` seeded with `seed`, A first then B, exactly as PEFT with `projection_prng_key = seed`,
  so the same seed gives the same bases as PEFT, on any device.
* Trainable per layer: λ_d ∈ R^r initialised to `d_initial` (0.1, the paper's and PEFT's default) and
  λ_b ∈ R^{d_out} initialised to 0, so ΔW = 0 at the start. There is no α scaling.

Trainable parameters per (d_out, d_in) layer: **d_out + r** (the shared bases are frozen).

Deviation: `seed` defaults to the run seed (PEFT's `projection_prng_key` defaults to 0: set `seed: 0` to get
PEFT's bases). The bases are regenerated from the seed at setup rather than stored in checkpoints unless
`save_bases` is set (PEFT's `save_projection`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .base import AdaptedLinear, Method, option, register


@dataclass
class VeRAOptions:
    d_initial: float = option(0.1, help="initial value of every entry of the trainable vector λ_d (paper/PEFT: 0.1)")
    dropout: float = option(0.0, help="dropout probability on the adapter path input", min=0.0, max=1.0)
    seed: Optional[int] = option(None, help="seed of the shared random bases (PEFT projection_prng_key); "
                                            "default: the run seed", min=0)
    save_bases: bool = option(False, help="store the shared bases in checkpoints (they are regenerated "
                                          "from the seed otherwise)")


def kaiming_uniform_like_peft(shape, generator: torch.Generator) -> torch.Tensor:
    """Kaiming-uniform with gain √2 (a = 0) on a CPU float32 tensor, fan_in = shape[1]."""
    t = torch.empty(shape, dtype=torch.float32)
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(shape[1])
    return t.uniform_(-bound, bound, generator=generator)


class VeRAShared(nn.Module):
    """The frozen bases shared by all VeRA layers of one model."""

    def __init__(self, r: int, max_out: int, max_in: int, seed: int, device, dtype, persistent: bool):
        super().__init__()
        if torch.device(device).type == "meta":
            a = torch.empty(r, max_in, device="meta", dtype=dtype)
            b = torch.empty(max_out, r, device="meta", dtype=dtype)
        else:
            g = torch.Generator(device="cpu").manual_seed(int(seed))
            a = kaiming_uniform_like_peft((r, max_in), g)
            b = kaiming_uniform_like_peft((max_out, r), g)
            a, b = a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)
        self.register_buffer("vera_A", a, persistent=persistent)
        self.register_buffer("vera_B", b, persistent=persistent)


class VeRALinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: VeRA, shared: VeRAShared):
        super().__init__(base, method, shared)
        r, opts = method.rank, method.options
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.lambda_d = nn.Parameter(torch.full((r,), float(opts.d_initial), **kw))
        self.lambda_b = nn.Parameter(torch.zeros(self.out_features, **kw))
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()

    def _bases(self):
        s = self.shared
        return s.vera_A[:, : self.in_features], s.vera_B[: self.out_features, :]

    def adapter_forward(self, x, base_out):
        a, b = self._bases()
        h = self.dropout(x).to(self.lambda_d.dtype)
        h = (h @ a.t().to(h.dtype)) * self.lambda_d
        delta = (h @ b.t().to(h.dtype)) * self.lambda_b
        return base_out + delta.to(base_out.dtype)

    def delta_weight(self):
        a, b = self._bases()
        return (self.lambda_b[:, None] * b.to(self.lambda_b.dtype)) @ (self.lambda_d[:, None] * a.to(self.lambda_d.dtype))


@register
class VeRA(Method):
    name = "vera"
    paper = ("Kopiczko, Blankevoort, Asano, VeRA: Vector-based Random Matrix Adaptation, ICLR 2024 "
             "(arXiv:2310.11454)")
    Options = VeRAOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    option_cases = ({"dropout": 0.2}, {"save_bases": True}, {"seed": 3, "d_initial": 0.5})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 256, "options": {}, "count": 4_352, "source": "methods.md §1: d_out + r"},
        {"shapes": [(1024, 3072)], "rank": 8, "options": {}, "count": 1_032, "source": "1024 + 8"},
    )

    def base_seed(self) -> int:
        return int(self.options.seed if self.options.seed is not None else self.seed)

    def layer_count(self, d_out, d_in):
        return d_out + self.rank

    def create_shared(self, shapes, device, dtype):
        max_out = max(o for o, _ in shapes)
        max_in = max(i for _, i in shapes)
        bdtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        return VeRAShared(self.rank, max_out, max_in, self.base_seed(), device, bdtype, self.options.save_bases)

    def wrap(self, name, base, shared):
        return VeRALinear(base, self, shared)
