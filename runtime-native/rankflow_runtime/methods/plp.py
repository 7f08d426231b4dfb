"""PLP: the partly learnable projections of Break-for-Make (B4M) — a LoRA whose down/up projections are half frozen.

Paper: Yu Xu, Fan Tang, Juan Cao, Yuxin Zhang, Oliver Deussen, Weiming Dong, Jintao Li, Tong-Yee Lee, "B4M: Breaking
Low-Rank Adapter for Making Content-Style Customization", ACM Transactions on Graphics 2025, arXiv:2403.19456
(first titled "Break-for-Make: Modular Low-Rank Adaptations for Composable Content-Style Customization").
Official code: github.com/ICTMCG/Break-for-make (`src/diffusers/models/lora.py` LoRALinearLayer(orth=True),
`code/train_content.py`, `code/train_style.py`, `code/*.sh`; read at 7898be7).

Method (the PLP layer, as the official code builds it)
------------------------------------------------------
A LoRA ΔW = s·up·down with down ∈ R^{r×d_in}, up ∈ R^{d_out×r}. The first ⌊d_in/2⌋ columns of down and the first
⌊d_out/2⌋ rows of up are frozen (the official code masks their gradients with hooks); the rest trains. For a square
layer the frozen halves are an orthogonal prior: a random O ∈ R^{N×r} with orthonormal columns (N = 1280 in the
code, `nn.init.orthogonal_`, drawn per layer), a random row subset idx1 of O and a disjoint subset idx2,
down[:, :d_in/2] = O[idx1]ᵀ and up[:d_out/2, :] = O[idx2]; so the stacked frozen blocks [down_fᵀ; up_f] are rows of
one orthonormal-column matrix (orthonormal columns themselves when 2·(d/2) = N). The learnable half of down is
N(0, std 1/r) and the learnable half of up is 0. Layers without the prior (non-square ones in the code) keep the
plain LoRA init in the frozen halves: down N(0, std 1/r), up 0. The scale s is network_alpha / r when alpha is set,
1 otherwise (the official scripts do not set it). Note ΔW ≠ 0 at initialisation for a layer with the prior
(up_f = O[idx2] ≠ 0), so `init_is_identity` is False.

Trainable parameters per (d_out, d_in) layer: r·(d_in − ⌊d_in/2⌋) + r·(d_out − ⌊d_out/2⌋).

Learning rates and losses. The released stage-1 scripts do **not** train the layer on one loss with two learning
rates. Each micro-step of `code/train_content.py` computes two losses on different data and steps two AdamW
optimizers: `loss_1` on the target concept (the content images) steps `optimizer` (down, lr 1e-4), then `loss_2`,
the mean loss over three auxiliary datasets of the other kind (style images), steps `optimizer_2` (up, lr 1e-5);
`code/train_style.py` swaps the roles (up on the style loss at 1e-4, down on the content auxiliaries at 1e-5).
Because each optimizer zeroes only its own gradients, the halves also receive the other loss's gradient (up steps
on ∇loss_1 + ∇loss_2; down on ∇loss_1 plus the previous cycle's ∇loss_2). That two-loss, two-data stage is the
Break-for-Make procedure (`shared/reference/procedures.md` §4), not something this layer does. What the layer
offers is the parameter group "up" (the learnable half of up): `training.lr_groups: {up: ...}` gives the two halves
different learning rates **on the run's single loss**, e.g. `lr: 1e-4, lr_groups: {up: 1e-5}` for the content
stage's rates; on its own that is a single-loss approximation of a stage, not the B4M recipe. Official defaults:
rank 64, constant LR, 1000 steps (the content script runs until step 9000), batch 1 × grad-accum 4, AdamW weight
decay 1e-2, targets to_q/to_k/to_v/to_out.0 of the SDXL UNet attention.

The break-for-make pipeline (separate content and style PLP training on their two losses, then combining the style
LoRA with the content LoRA's learnable down columns and joint fine-tuning with the Riemannian-preconditioned AdamWr)
is a procedure built on this layer, not part of this file.

Deviations
----------
* The frozen halves are buffers rather than gradient-masked parameters, so they are truly constant; in the official
  code AdamW's decoupled weight decay still shrinks the masked entries by (1 − lr·wd) per step.
* N = max(`basis_rows`, ⌊d_in/2⌋ + ⌊d_out/2⌋): the code's fixed 1280 cannot host layers wider than 1280. On
  narrow layers the fixed 1280 also shrinks the frozen halves (⌊d/2⌋ rows of an N×r orthonormal basis have
  singular values ≈ √(⌊d/2⌋/N)): 0.09–0.19 at d = 64, r = 8, against 0.30–0.84 on SDXL's 640/1280-wide layers;
  `basis_rows: 0` (N = ⌊d_in/2⌋ + ⌊d_out/2⌋) keeps the paper's scale there (0.51–0.84 at d = 64).
* `orthogonal_prior` = "square" gives every square target the prior; the official script passes orth=True to
  to_q/to_k/to_v but not to to_out.0 (square too). "all" extends the prior to non-square layers, "none" drops it.
* The fixed halves are drawn from the method's CPU generator (reproducible across devices) and are saved in
  checkpoints (persistent buffers; part 2 composes adapters from them). O is built like nn.init.orthogonal_
  (QR of a Gaussian with the sign of diag(R)); idx2 is the first ⌊d_out/2⌋ rows of O not in idx1 in ascending
  order, as the code's set difference gives.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
from torch import nn

from .base import AdaptedLinear, Method, option, register


@dataclass
class PLPOptions:
    orthogonal_prior: str = option("square", help="which layers get the frozen orthogonal halves: 'square' (official "
                                                  "q/k/v rule), 'all', or 'none' (frozen halves keep the LoRA init)",
                                   choices=["square", "all", "none"])
    basis_rows: int = option(1280, help="rows N of the random orthogonal basis O ∈ R^{N×r} (official 1280); raised "
                                        "to ⌊d_in/2⌋+⌊d_out/2⌋ when smaller", min=0)
    alpha: float = option(0.0, help="scale s = alpha / r; 0 means no scaling (official network_alpha=None)", min=0.0)


def orthogonal_basis(rows: int, cols: int, g: torch.Generator) -> torch.Tensor:
    """A rows×cols matrix with orthonormal columns (rows when rows < cols), as nn.init.orthogonal_ draws it."""
    flat = torch.randn(rows, cols, generator=g)
    if rows < cols:
        flat = flat.t()
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.t() if rows < cols else q


class PLPLinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: PLP, name: str, shared=None):
        super().__init__(base, method, shared)
        o, r = method.options, method.rank
        d_in, d_out = self.in_features, self.out_features
        self.h_in, self.h_out = d_in // 2, d_out // 2
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.scaling = o.alpha / r if o.alpha > 0 else 1.0
        self.down_learn = nn.Parameter(torch.empty(r, d_in - self.h_in, **kw))
        self.up_learn = nn.Parameter(torch.zeros(d_out - self.h_out, r, **kw))
        if self.on_meta:
            self.register_buffer("down_frozen", torch.empty(r, self.h_in, **kw))
            self.register_buffer("up_frozen", torch.empty(self.h_out, r, **kw))
            return
        g = method.generator(offset=zlib.crc32(name.encode()))
        down = torch.randn(r, d_in, generator=g) / r  # N(0, std 1/r)
        up_f = torch.zeros(self.h_out, r)
        if method.prior_applies(d_out, d_in):
            n = max(o.basis_rows, self.h_in + self.h_out)
            basis = orthogonal_basis(n, r, g)
            idx1 = torch.randperm(n, generator=g)[: self.h_in]
            taken = torch.zeros(n, dtype=torch.bool)
            taken[idx1] = True
            idx2 = torch.arange(n)[~taken][: self.h_out]
            down[:, : self.h_in] = basis[idx1].t()
            up_f = basis[idx2].clone()
        self.register_buffer("down_frozen", down[:, : self.h_in].contiguous().to(**kw))
        self.register_buffer("up_frozen", up_f.to(**kw))
        with torch.no_grad():
            self.down_learn.copy_(down[:, self.h_in:])

    def down(self) -> torch.Tensor:
        return torch.cat([self.down_frozen, self.down_learn], dim=1)

    def up(self) -> torch.Tensor:
        return torch.cat([self.up_frozen, self.up_learn], dim=0)

    def adapter_forward(self, x, base_out):
        h = x.to(self.down_learn.dtype) @ self.down().t()
        delta = h @ self.up().t()
        return base_out + (delta * self.scaling).to(base_out.dtype)

    def delta_weight(self):
        return (self.up() @ self.down()) * self.scaling


@register
class PLP(Method):
    name = "plp"
    paper = ("Xu, Tang, Cao, Zhang, Deussen, Dong, Li, Lee, B4M: Breaking Low-Rank Adapter for Making Content-Style "
             "Customization (Break-for-Make), ACM TOG 2025 (arXiv:2403.19456)")
    Options = PLPOptions
    needs_rank = True
    init_is_identity = False  # the frozen orthogonal half of `up` makes ΔW ≠ 0 at start (square layers)
    property_rules = ({"when": {"orthogonal_prior": ["none"]}, "then": {"init_is_identity": True}},)  # up = 0
    mergeable = True
    lr_groups = ("up",)
    option_cases = ({"orthogonal_prior": "all"}, {"orthogonal_prior": "none"}, {"alpha": 16.0}, {"basis_rows": 0})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 131_072, "source": "r·2048 + r·2048"},
        {"shapes": [(33, 17)], "rank": 4, "options": {}, "count": 104, "source": "4·(17−8) + 4·(33−16)"},
    )

    def prior_applies(self, d_out: int, d_in: int) -> bool:
        p = self.options.orthogonal_prior
        return p == "all" or (p == "square" and d_out == d_in)

    def layer_count(self, d_out, d_in):
        return self.rank * ((d_in - d_in // 2) + (d_out - d_out // 2))

    def wrap(self, name, base, shared):
        return PLPLinear(base, self, name, shared)

    def group_of(self, param_name: str) -> str:
        return "up" if param_name.endswith("up_learn") else "default"
