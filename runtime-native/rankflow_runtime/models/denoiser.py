"""`tiny-denoiser`: a tiny conditional diffusion model (a DiT-style transformer over image patches) for the
`img-gen` task, at the scale of the CPU tests (content/style customisation, `synthetic/content-style`).

Input tokens: the image's patches (patch_size², linear embedding, learned positions) plus three condition tokens —
the content id, the style id (`labels[:, 0]`, `labels[:, 1]`; id `num_styles` is "no style") and the noise level.
The blocks are the built-in encoder's (pre-LN self-attention `attn.query/key/value/out`, MLP `mlp.fc1/fc2`), so every
PEFT method applies unchanged; the default targets are the attention projections, as Break-for-Make adapts the UNet
attention. The head (`head`) maps each patch token back to pixels.

Diffusion (variance preserving, x0-prediction, `noise_levels` T levels): level t ∈ 1..T has a_t = cos(πt/2T),
σ_t = sin(πt/2T), x_t = a_t·x0 + σ_t·ε, and the loss is the MSE between the predicted and the clean image with t
uniform and ε ~ N(0, I) drawn from the torch RNG (or passed in as `noise` / `timesteps`, which Break-for-Make's
auxiliary losses share with the target loss). `generate(labels, noise)` runs the deterministic DDIM sampler from
x_T = noise over all T levels and returns the final x0 estimate, clamped to [-1, 1].
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .builtin import Block, ModelOutput, _init_weights

DENOISER_DEFAULTS: Dict[str, Any] = dict(image_size=16, channels=3, patch_size=4, hidden_size=64, num_layers=2,
                                         num_heads=4, intermediate_size=128, num_contents=8, num_styles=8,
                                         noise_levels=4, dropout=0.0, layer_norm_eps=1e-5)


class TinyDenoiser(nn.Module):
    def __init__(self, config: Dict[str, Any], num_labels: Optional[int] = None):
        super().__init__()
        c = self.config = dict(config)
        h, p, size = c["hidden_size"], c["patch_size"], c["image_size"]
        if size % p:
            raise ValueError("image_size must be a multiple of patch_size")
        self.grid = size // p
        self.patch_dim = c["channels"] * p * p
        self.patch_embed = nn.Linear(self.patch_dim, h)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, h))
        self.content_embed = nn.Embedding(c["num_contents"], h)
        self.style_embed = nn.Embedding(c["num_styles"] + 1, h)  # the last id: no style
        self.level_embed = nn.Embedding(c["noise_levels"] + 1, h)
        self.layers = nn.ModuleList(Block(h, c["num_heads"], c["intermediate_size"], c["dropout"], c["layer_norm_eps"])
                                    for _ in range(c["num_layers"]))
        self.norm = nn.LayerNorm(h, eps=c["layer_norm_eps"])
        self.head = nn.Linear(h, self.patch_dim)
        _init_weights(self)
        nn.init.normal_(self.pos_embed, std=0.02)

    # -- diffusion ----------------------------------------------------------------------------------------
    def schedule(self, t: torch.Tensor):
        angle = t.float() * (math.pi / 2 / self.config["noise_levels"])
        return torch.cos(angle), torch.sin(angle)

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, _, _ = x.shape
        p, g = self.config["patch_size"], self.grid
        return x.reshape(b, ch, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, self.patch_dim)

    def _image(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        p, g, ch = self.config["patch_size"], self.grid, self.config["channels"]
        return tokens.reshape(b, g, g, ch, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, ch, g * p, g * p)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(self._patches(x_t)) + self.pos_embed
        cond = torch.stack([self.content_embed(labels[:, 0]), self.style_embed(labels[:, 1]), self.level_embed(t)], 1)
        x = torch.cat([cond, tokens], dim=1)
        for layer in self.layers:
            x = layer(x, None)
        return self._image(self.head(self.norm(x)[:, 3:]))

    def forward(self, pixel_values, labels, noise: Optional[torch.Tensor] = None,
                timesteps: Optional[torch.Tensor] = None, **_ignored):
        x0 = pixel_values
        b = x0.shape[0]
        if timesteps is None:
            timesteps = torch.randint(1, self.config["noise_levels"] + 1, (b,), device=x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        a, s = self.schedule(timesteps)
        x_t = a[:, None, None, None] * x0 + s[:, None, None, None] * noise
        pred = self.predict_x0(x_t, timesteps, labels)
        return ModelOutput(F.mse_loss(pred.float(), x0.float()), pred)

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM (η = 0) from x_T = noise down to level 0; returns x0 in [-1, 1]."""
        x = noise
        big_t = self.config["noise_levels"]
        x0 = x
        for t in range(big_t, 0, -1):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            a, s = self.schedule(tt)
            x0 = self.predict_x0(x, tt, labels).clamp(-1.0, 1.0)
            eps = (x - a[:, None, None, None] * x0) / s[:, None, None, None]
            a_prev, s_prev = self.schedule(tt - 1)
            x = a_prev[:, None, None, None] * x0 + s_prev[:, None, None, None] * eps
        return x0
