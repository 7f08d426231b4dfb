"""Bone / MiSS: block-shared (shard-shared) weight updates, and Bone's block-affine "weight guide" variant.

Kang, "Bone: Block-Affine Adaptation of Large Language Models" (v1–v5; later revised as "DiSHA:
Dimension-Sharding Adaptation" and "MiSS: Balancing LoRA Performance and Efficiency with Simple Shard
Sharing"), arXiv:2409.15371. Official code: JL-er/Bone, JL-er/MiSS; reference implementation: Hugging Face PEFT
`tuners/miss` (`MissConfig`; PEFT's older `BoneConfig` was folded into MiSS and removed). PEFT calls it MiSS.

Variants (`variant`), with r the block size (= `method.rank`):

* **balance** (default; PEFT `init_weights=True`): a trainable D ∈ R^{r×d_out}, zero-initialised. The input is
  cut into r-wide chunks (zero-padded to a multiple of r) that are summed, then multiplied by D:
      y = W0 x + D^T · Σ_j x[j·r:(j+1)·r]     ⇔   ΔW = [D^T D^T … D^T] (first d_in columns),
  i.e. every r-wide column block of W receives the same update (rank ≤ r).
* **mini** (PEFT `init_weights="mini"`): D ∈ R^{r×mini_r} repeated d_out/mini_r times along the output
  dimension, then as balance. Needs d_out divisible by mini_r.
* **bat** (Bone's "block affine transformation", PEFT `init_weights="bat"`): D ∈ R^{(d_out/r)×r×r}, zero init.
  W0 is viewed as r×r blocks W_{p,q} (p: output block, q: input block) and each block gets the affine update
      ΔW_{p,q} = W_{p,q} · D_p + D_p,
  so the update is guided by the frozen weight; the forward uses the dense W0 + ΔW. Needs d_in and d_out
  divisible by r. Unmerging inverts (I + D_p): W_{p,q} = (W'_{p,q} − D_p)(I + D_p)^{-1}.

There is no scaling factor (PEFT warns that scaling is unsupported). All variants start from ΔW = 0.

Trainable parameters per (d_out, d_in) layer: **r·d_out** (balance and bat), **r·mini_r** (mini).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import AdaptedLinear, Method, option, register


@dataclass
class BoneOptions:
    variant: str = option("balance", help="balance: block-shared update (MiSS default); bat: block-affine update "
                                          "guided by W0 (Bone); mini: D shared along the output too",
                          choices=["balance", "bat", "mini"])
    mini_r: int = option(1, help="output-side block size of the mini variant (d_out must be divisible by it)", min=1)
    dropout: float = option(0.0, help="dropout probability on the adapter path input (balance/mini)",
                            min=0.0, max=1.0)


def bat_delta(w: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """ΔW with blocks W_{p,q} D_p + D_p, for w (d_out, d_in) and d (d_out/r, r, r)."""
    p, r, _ = d.shape
    q = w.shape[1] // r
    blocks = w.reshape(p, r, q, r).permute(2, 0, 1, 3)  # (q, p, r, r)
    out = blocks @ d + d
    return out.permute(1, 2, 0, 3).reshape(w.shape)


class BoneLinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: Bone, name: str):
        super().__init__(base, method, None)
        r, opts = method.rank, method.options
        self.r, self.variant = r, opts.variant
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        if self.variant == "bat":
            if self.in_features % r or self.out_features % r:
                raise ConfigError(f"method.rank: Bone bat needs the weight of {name} ({self.out_features}x"
                                  f"{self.in_features}) to split into {r}x{r} blocks",
                                  hint="pick a rank that divides both dimensions, or use variant balance")
            self.bone_block = nn.Parameter(torch.zeros(self.out_features // r, r, r, **kw))
        elif self.variant == "mini":
            if self.out_features % opts.mini_r:
                raise ConfigError(f"method.options.mini_r: {opts.mini_r} does not divide d_out = "
                                  f"{self.out_features} of {name}", hint="pick a mini_r that divides d_out")
            self.bone_block = nn.Parameter(torch.zeros(r, opts.mini_r, **kw))
        else:
            self.bone_block = nn.Parameter(torch.zeros(r, self.out_features, **kw))
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()

    def _d(self) -> torch.Tensor:
        """D as an (r, d_out) matrix (balance / mini)."""
        d = self.bone_block
        if self.variant == "mini":
            d = d.repeat(1, self.out_features // d.shape[1])
        return d

    def needs_base_out(self) -> bool:
        return self.variant != "bat"

    def adapter_forward(self, x, base_out):
        if self.variant == "bat":
            w0 = self.base.weight
            w = w0 + bat_delta(w0.to(self.bone_block.dtype), self.bone_block).to(w0.dtype)
            return F.linear(x, w, self.base.bias)
        d = self._d()
        h = self.dropout(x).to(d.dtype)
        pad = (-self.in_features) % self.r
        if pad:
            h = F.pad(h, (0, pad))
        h = h.reshape(*h.shape[:-1], h.shape[-1] // self.r, self.r).sum(-2)
        return base_out + (h @ d).to(base_out.dtype)

    def delta_weight(self):
        if self.variant == "bat":
            return bat_delta(self.base.weight.to(self.bone_block.dtype), self.bone_block)
        d = self._d()
        cols = torch.arange(self.in_features, device=d.device) % self.r
        return d.t()[:, cols]

    @torch.no_grad()
    def unmerge(self):
        if not self.merged or self.variant != "bat":
            return super().unmerge()
        w = self.base.weight.to(torch.float64)
        d = self.bone_block.to(torch.float64)
        p, r, _ = d.shape
        q = w.shape[1] // r
        blocks = w.reshape(p, r, q, r).permute(2, 0, 1, 3)
        inv = torch.linalg.inv(torch.eye(r, dtype=torch.float64, device=d.device) + d)
        orig = ((blocks - d) @ inv).permute(1, 2, 0, 3).reshape(w.shape)
        self.base.weight.data.copy_(orig.to(self.base.weight.dtype))
        self.merged = False


@register
class Bone(Method):
    name = "bone"
    paper = ("Kang, Bone: Block-Affine Adaptation of Large Language Models / MiSS: Balancing LoRA Performance "
             "and Efficiency with Simple Shard Sharing (arXiv:2409.15371)")
    Options = BoneOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    option_cases = ({"variant": "bat"}, {"variant": "mini", "mini_r": 4}, {"dropout": 0.2})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 64, "options": {}, "count": 262_144, "source": "methods.md §1: r·d_out"},
        {"shapes": [(33, 17)], "rank": 5, "options": {}, "count": 165, "source": "balance: r·d_out = 5·33"},
        {"shapes": [(1024, 3072)], "rank": 8, "options": {"variant": "bat"}, "count": 8_192,
         "source": "bat: (d_out/r) blocks of r×r = 128·64"},
        {"shapes": [(1024, 3072)], "rank": 8, "options": {"variant": "mini", "mini_r": 4}, "count": 32,
         "source": "mini: r·mini_r"},
    )

    def layer_count(self, d_out, d_in):
        if self.options.variant == "mini":
            return self.rank * self.options.mini_r
        return self.rank * d_out

    def wrap(self, name, base, shared):
        return BoneLinear(base, self, name)
