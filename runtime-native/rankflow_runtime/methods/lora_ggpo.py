"""LoRA-GGPO / LoRA-MGPO: LoRA trained at perturbed frozen weights (sharpness-aware, one forward/backward).

Paper: Yupeng Chang, Chenlu Guo, Yi Chang, Yuan Wu, "LoRA-GGPO: Mitigating Double Descent in LoRA Fine-Tuning via
Gradient-Guided Perturbation Optimization", arXiv:2502.14538 v1 (2025); v2/v3 and the published version are
"LoRA-MGPO: Mitigating Double Descent in Low-Rank Adaptation via Momentum-Guided Perturbation Optimization",
Findings of EMNLP 2025, pp. 648-659. Official code (MGPO only; the GGPO repository was renamed):
github.com/llm172/LoRA-MGPO (`lora_mgpo/trainer.py` `LoraMGPOTrainer`, `lora_mgpo/config.py`; read at b45656c).

The layer is plain LoRA, y = W0 x + s·B A x (see lora.py), and so is the trained adapter (PEFT export: LORA).
What changes is the training step: before the forward pass every adapted layer's frozen W0 is replaced by
W0 + ε, the forward and backward run there (one of each per micro-batch: no second pass as in SAM), and W0 is
restored bit for bit before clipping and the optimizer step. Both variants use the weight-space gradient
G = s·(∇B·A + B·∇A) (what ΔW = sBA moves by to first order) of the previous step, measured after backward
(before clipping). No layer is perturbed before the optimizer has state (the first step) or before G exists.

`variant: mgpo` (the released code, the published paper):
    V = s·(m_B·A + B·m_A)      (m: the optimizer's first moment, AdamW `exp_avg` / SGD `momentum_buffer`)
    ε = −ρ · V/‖V‖_F · min(1/(ḡ + eps), max_scale),    ḡ = EMA_β(‖G‖_F)  (one number per layer)
  skipped for a layer where V is non-finite or ‖V‖_F ≤ eps; the scale is 1 until ḡ exists. The official μ
  (AdamW β1) is the option `mu` (null: the run's optimizer default, 0.9).

`variant: ggpo` (default; the v1 paper's gradient-guided perturbation). The v1 paper's text could not be read
(only its abstract: "leverages gradient and weight norms to generate targeted perturbations") and the authors
released no v1 code, so this follows the one v1 implementation found, the third-party one in kohya-ss/sd-scripts
(`networks/lora_flux.py` `LoRAModule.forward`, `update_norms`, `update_grad_norms`; read at 450630c):
    ε_{i,:} ~ N(0, σ_i² I),   σ_i = (sigma·‖W'_{i,:}‖ + grad_weight·‖G_{i,:}‖²) / √d_out,   W' = W0 + s·B A,
  with G the last step's weight-space gradient (per output row; no EMA) and fresh noise every step; sd-scripts'
  defaults sigma 0.03, grad_weight 0.01 (its `ggpo_sigma`, `ggpo_beta`). The noise comes from a generator
  seeded by (seed, step, layer), so a resumed run draws the same noise.

Defaults: mgpo as the official NLU profile, ρ 0.05, β 0.9, eps 1e-12, max_scale 10 (NLG: ρ 0.01, μ 0.8, β 0.8);
ggpo as sd-scripts, sigma 0.03, grad_weight 0.01.
Trainable parameters: LoRA's, r·(d_in + d_out) per layer. The gradient norms (mgpo: the EMA ḡ; ggpo: the last per-row
norms) are persistent buffers of each layer (`grad_norm_ema`, `ema_steps`), so checkpoints resume exactly.

Deviations and notes
--------------------
* W0 is restored by putting the original tensor back (the perturbed weight is a separate tensor), not by
  subtracting ε as the official code does ((W0 + ε) − ε ≠ W0 in floating point); W0 is bit-identical after
  every step, at the cost of one weight-sized tensor per adapted layer during the step.
* Under gradient accumulation the perturbation is drawn once per optimizer step and ḡ is updated once per step
  from the accumulated gradient (the official trainer re-applies it per micro-batch and updates ḡ after every
  micro-batch from the partially accumulated gradient); with grad_accum 1 (the released setting) they agree.
* ḡ is measured before gradient clipping (as the official code, whose HF Trainer clips after accumulation).
* GGPO follows a third-party implementation (sd-scripts), not the authors' (none exists) and not the paper (not
  readable here). Differences from sd-scripts: ‖W'_{i,:}‖ is computed exactly (sd-scripts approximates it by
  √(mean sampled ‖W0_{j,:}‖² + ‖(sBA)_{i,:}‖²)); the noise is drawn once per optimizer step from a seeded
  generator (sd-scripts: every forward, from the global RNG) and applied by replacing W0 with W0 + ε for the
  step (sd-scripts adds x·εᵀ: the same product); G is measured before clipping (sd-scripts: after).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .base import TrainContext, adapted_layers, option, register
from .lora import LoRA, LoRALinear, LoRAOptions


@dataclass
class LoRAGGPOOptions(LoRAOptions):
    variant: str = option("ggpo", help="ggpo: random perturbation scaled per row by weight and gradient norms (v1, "
                                       "as sd-scripts); mgpo: −ρ·momentum direction / EMA gradient norm (released code)",
                          choices=["ggpo", "mgpo"])
    sigma: float = option(0.03, help="ggpo: weight-norm coefficient σ (sd-scripts ggpo_sigma)", min=0.0)
    grad_weight: float = option(0.01, help="ggpo: coefficient of the squared gradient norm (sd-scripts ggpo_beta)",
                                min=0.0)
    rho: float = option(0.05, help="mgpo: perturbation radius ρ (official NLU 0.05, NLG 0.01)", min=0.0)
    beta: float = option(0.9, help="mgpo: EMA decay β of the gradient norm, 0 <= β < 1 (official NLU 0.9, NLG 0.8)",
                         min=0.0, max=1.0)
    mu: Optional[float] = option(None, help="μ: the optimizer's momentum (AdamW β1 / SGD momentum) for the run; "
                                            "null keeps the run's 0.9 (official NLU 0.9, NLG 0.8)", min=0.0, max=1.0)
    max_scale: float = option(10.0, help="mgpo: cap of the inverse gradient-norm scale 1/(ḡ + eps) (official 10)",
                              min=0.0)
    eps: float = option(1e-12, help="numerical floor of the norms (official 1e-12)", min=0.0)


class GGPOLinear(LoRALinear):
    def __init__(self, base: nn.Linear, method: LoRAGGPO, shared=None):
        super().__init__(base, method, shared)
        rows = self.out_features if method.options.variant == "ggpo" else 1
        kw = dict(device=self.device, dtype=torch.float32)
        self.register_buffer("grad_norm_ema", torch.zeros(rows, **kw) if rows > 1 else torch.zeros((), **kw))
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long, device=self.device))

    @torch.no_grad()
    def weight_space(self, da: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
        """s·(dB·A + B·dA): the first-order change of ΔW = sBA for a change (dA, dB) of the factors."""
        a, b = self.lora_A.detach().float(), self.lora_B.detach().float()
        return self.scaling * (db.float() @ a + b @ da.float())


@register
class LoRAGGPO(LoRA):
    name = "lora-ggpo"
    paper = ("Chang, Guo, Chang, Wu, LoRA-GGPO: Mitigating Double Descent in LoRA Fine-Tuning via Gradient-Guided "
             "Perturbation Optimization, arXiv:2502.14538 (v2+: LoRA-MGPO, Findings of EMNLP 2025)")
    Options = LoRAGGPOOptions
    option_cases = ({"variant": "mgpo"}, {"use_rslora": True}, {"dropout": 0.1}, {"variant": "mgpo", "mu": 0.8},
                    {"sigma": 0.1, "grad_weight": 0.0})
    mutable_buffers = ("grad_norm_ema", "ema_steps")  # the gradient-norm EMAs (the frozen W0 never changes)
    count_examples = ({"shapes": [(48, 32)], "rank": 4, "options": {}, "count": 4 * (32 + 48),
                       "source": "LoRA's r·(d_in + d_out) (the perturbation adds no parameters)"},)

    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        o = self.options
        if o.variant == "mgpo" and not o.rho > 0:
            raise ConfigError(f"method.options.rho: must be positive, got {o.rho}", hint="e.g. 0.05")
        if not o.beta < 1:
            raise ConfigError(f"method.options.beta: must satisfy 0 <= beta < 1, got {o.beta}", hint="e.g. 0.9")
        if o.mu is not None and not o.mu < 1:
            raise ConfigError(f"method.options.mu: must satisfy 0 <= mu < 1, got {o.mu}", hint="e.g. 0.9")
        self._saved: List[Tuple[nn.Linear, torch.Tensor]] = []
        self.last_norms: List[float] = []  # ‖ε‖_F per perturbed layer in the current step (tests, logs)

    def wrap(self, name, base, shared):
        return GGPOLinear(base, self, shared)

    # -- hooks ----------------------------------------------------------------------------------------
    def optimizer_settings(self, optimizer: str) -> Dict[str, Any]:
        mu = self.options.mu  # the official μ is the optimizer's β1 (SGD: its momentum)
        if mu is None:
            return {}
        return {"momentum": mu} if optimizer == "sgd" else {"betas": (mu, 0.999)}

    def before_forward(self, ctx: TrainContext) -> None:
        self._restore()
        self.last_norms = []
        if ctx.optimizer is None:
            return
        layers = [m for m in adapted_layers(ctx.model) if isinstance(m, GGPOLinear)]
        for index, layer in enumerate(layers):
            eps = self._perturbation(layer, ctx, index)
            if eps is None:
                continue
            w = layer.base.weight
            self._saved.append((layer.base, w.data))
            w.data = w.data + eps.to(w.dtype)  # a new tensor: the original is kept untouched
            self.last_norms.append(float(torch.linalg.vector_norm(eps)))

    def after_backward(self, ctx: TrainContext) -> None:
        self._restore()
        beta = self.options.beta if self.options.variant == "mgpo" else 0.0  # ggpo: the last step's norms
        for layer in adapted_layers(ctx.model):
            if not isinstance(layer, GGPOLinear) or layer.lora_A.grad is None or layer.lora_B.grad is None:
                continue
            g = layer.weight_space(layer.lora_A.grad, layer.lora_B.grad)
            norm = torch.linalg.vector_norm(g, dim=1) if layer.grad_norm_ema.dim() else torch.linalg.vector_norm(g)
            with torch.no_grad():
                if int(layer.ema_steps) == 0:
                    layer.grad_norm_ema.copy_(norm)
                else:
                    layer.grad_norm_ema.mul_(beta).add_(norm, alpha=1 - beta)
                layer.ema_steps.add_(1)

    def _restore(self) -> None:
        for base, original in reversed(self._saved):
            base.weight.data = original
        self._saved = []

    # -- the perturbation -----------------------------------------------------------------------------
    def _momentum(self, opt, p) -> Optional[torch.Tensor]:
        state = opt.state.get(p, {})
        return state.get("exp_avg", state.get("momentum_buffer"))

    @torch.no_grad()
    def _perturbation(self, layer: GGPOLinear, ctx: TrainContext, index: int) -> Optional[torch.Tensor]:
        ma, mb = self._momentum(ctx.optimizer, layer.lora_A), self._momentum(ctx.optimizer, layer.lora_B)
        if ma is None or mb is None or int(layer.ema_steps) == 0:
            return None  # no optimizer state yet (the first step) or no gradient norm yet
        o = self.options
        if o.variant == "mgpo":
            v = layer.weight_space(ma, mb)
            norm = torch.linalg.vector_norm(v)
            if not bool(torch.isfinite(v).all()) or float(norm) <= o.eps:
                return None
            scale = torch.reciprocal(layer.grad_norm_ema + o.eps).clamp(max=o.max_scale)
            return -o.rho * v / (norm + o.eps) * scale
        return self._ggpo_noise(layer, ctx, index)

    def _ggpo_noise(self, layer: GGPOLinear, ctx: TrainContext, index: int) -> Optional[torch.Tensor]:
        o = self.options
        g = layer.grad_norm_ema
        if not bool(torch.isfinite(g).all()):
            return None
        w = layer.base.weight.detach().float() + layer.delta_weight().detach().float()
        sigma = (o.sigma * torch.linalg.vector_norm(w, dim=1) + o.grad_weight * g ** 2) / math.sqrt(layer.out_features)
        gen = torch.Generator(device=w.device)
        gen.manual_seed((self.seed * 1_000_003 + int(ctx.step) * 7919 + index) % (2**63 - 1))
        noise = torch.randn(w.shape, generator=gen, device=w.device, dtype=torch.float32)
        return noise * sigma[:, None]
