"""Break-for-Make's pieces around the PLP layer (`methods/plp.py`): the two-optimizer break step, the merge, and
the Riemannian-preconditioned AdamW of the make stage. The stages that use them are procedures
(`procedures/b4m.py`).

Paper: Xu, Tang, Cao, Zhang, Deussen, Dong, Li, Lee, "B4M: Breaking Low-Rank Adapter for Making Content-Style
Customization", ACM TOG 2025 (arXiv:2403.19456). Official code: github.com/ICTMCG/Break-for-make @7898be7
(`code/train_content.py`, `train_style.py`, `train_second_stage.py`, `custom_optimizer.py`). The preconditioner is
that of Zhang & Pilanci, "Riemannian Preconditioned LoRA for Fine-Tuning Foundation Models", ICML 2024
(arXiv:2402.02347), whose scaled AdamW the B4M code carries as `AdamWr`.

Break (one micro-step of the released scripts, by reading): the target-concept loss L₁ drives one optimizer, the
mean L₂ of the losses on three auxiliary datasets of the other kind (with the target batch's noise and noise
levels) drives the other; the content run gives `down` (A) to the first optimizer (lr 1e-4) and `up` (B) to the
second (lr 1e-5), the style run the reverse. `split_groups` gives the two groups; the step itself is the
`b4m-break` procedure's. It implements the paper's intent: L₁ alone reaches the first group and L₂ alone the
second. The released code lets the gradients leak (it zeroes only the stepping optimizer's group, so the second
optimizer steps on ∇L₁ + ∇L₂ and the first on ∇L₁ plus the previous micro-step's ∇L₂).

Merge (train_second_stage.py L855–865): the style adapter with its learnable down half replaced by the content
adapter's; up stays the style adapter's. The frozen halves of the two runs coincide only because both runs use
the same seed and build their layers in the same order: `merge_plp` checks that they are bit-identical.

Make: `RiemannianAdamW`, for each adapted layer with factors A (r×d_in) and B (d_out×r):
∇A ← (BᵀB + reg·I)⁻¹∇A and ∇B ← ∇B(AAᵀ + reg·I)⁻¹ (the identity when ‖BᵀB‖ resp. ‖AAᵀ‖ ≤ 1e-6, e.g. B = 0),
then Adam moments and the bias-corrected step on the preconditioned gradients, then decoupled weight decay
p ← p − lr·wd·p (the official order: decay after the step). Both matrices come from the same (pre-step) weights.
The preconditioners use the whole factors, frozen halves included; only the learnable halves are stepped (their
rows of ∇B and columns of ∇A transform independently, so this equals preconditioning the whole gradient).

Differences from the released stage 2 (documented in the runtime README): there, AdamWr steps after both plain
AdamW optimizers have zeroed the gradients, so the preconditioned moments stay 0 and only its weight decay acts,
and the loaded square q/k/v layers are re-initialised by `initialize_weights_feature()`, discarding the merged
down half. Here the make stage trains the merged adapter with `RiemannianAdamW` alone and nothing is
re-initialised (the paper's intent, as procedures.md §4(6) recommends).

Toy claim (`bench/b4m_toy.py`, tiny denoiser on synthetic/content-style, seeds 0-2): not reproduced. On the unseen
pair (6, 6) the made adapter, the sum and the average of two plain LoRAs all score joint 0.00 while a LoRA
trained on (6, 6) itself scores 0.92; the made adapter is not closer in MSE than the sum (0.325 vs 0.301). At
that width PLP needs `basis_rows: 0` to give the frozen halves the paper's scale (runtime README, Break-for-Make).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .errors import ConfigError

FALLBACK_NORM = 1e-6


# ---------------------------------------------------------------------------------------------------------
# The make stage's optimizer
# ---------------------------------------------------------------------------------------------------------


def precondition(a: torch.Tensor, b: torch.Tensor, grad_a: Optional[torch.Tensor], grad_b: Optional[torch.Tensor],
                 reg: float) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(BᵀB + reg·I)⁻¹∇A and ∇B(AAᵀ + reg·I)⁻¹ for a layer with factors A (r×d_in), B (d_out×r); ∇A may be the
    gradient of a subset of A's columns and ∇B of a subset of B's rows."""
    a, b = a.detach().float(), b.detach().float()
    r = a.shape[0]
    eye = torch.eye(r, device=a.device, dtype=torch.float32)
    out_a = out_b = None
    if grad_a is not None:
        btb = b.t() @ b
        if float(torch.linalg.matrix_norm(btb)) > FALLBACK_NORM:
            out_a = torch.linalg.solve(btb + reg * eye, grad_a.float()).to(grad_a.dtype)
        else:
            out_a = grad_a
    if grad_b is not None:
        aat = a @ a.t()
        if float(torch.linalg.matrix_norm(aat)) > FALLBACK_NORM:
            # ∇B M⁻¹ = (M⁻¹ ∇Bᵀ)ᵀ for the symmetric M = AAᵀ + reg·I
            out_b = torch.linalg.solve(aat + reg * eye, grad_b.float().t()).t().to(grad_b.dtype)
        else:
            out_b = grad_b
    return out_a, out_b


Factors = Callable[[], Tuple[torch.Tensor, torch.Tensor]]


class RiemannianAdamW(torch.optim.Optimizer):
    """AdamW on Riemannian-preconditioned gradients. `pairs`: (down parameter or None, up parameter or None,
    factors) per adapted layer, where `factors()` returns the layer's whole (A, B); every other parameter in
    `params` takes plain AdamW steps. State per parameter is torch's (`step`, `exp_avg`, `exp_avg_sq`), so it is
    checkpointed like AdamW's."""

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 reg: float = 0.0, pairs: Sequence[Tuple[Optional[nn.Parameter], Optional[nn.Parameter], Factors]] = (),
                 ) -> None:
        if reg < 0:
            raise ValueError("reg must be non-negative")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, reg=reg))
        self._pairs = list(pairs)

    def _preconditioned(self) -> Dict[int, torch.Tensor]:
        """id(parameter) -> preconditioned gradient, from the pre-step weights of every layer. The r×r systems of
        all layers of one rank are solved in one batched call."""
        reg_of = {id(p): g["reg"] for g in self.param_groups for p in g["params"]}
        todo = []  # (layer index, which, r×r matrix, gradient, parameter)
        for down, up, factors in self._pairs:
            gd = down.grad if down is not None else None
            gu = up.grad if up is not None else None
            if gd is None and gu is None:
                continue
            a, b = (t.detach().float() for t in factors())
            reg = reg_of.get(id(down if down is not None else up), 0.0)
            eye = torch.eye(a.shape[0], device=a.device)
            if gd is not None:
                todo.append(("a", b.t() @ b, reg * eye, gd, down))
            if gu is not None:
                todo.append(("b", a @ a.t(), reg * eye, gu, up))
        out: Dict[int, torch.Tensor] = {}
        by_rank: Dict[tuple, List[int]] = {}
        for i, item in enumerate(todo):
            by_rank.setdefault((item[1].shape[0], item[1].device), []).append(i)
        for idx in by_rank.values():
            grams = torch.stack([todo[i][1] for i in idx])
            ok = torch.linalg.matrix_norm(grams) > FALLBACK_NORM  # else the identity (e.g. B = 0)
            mats = torch.where(ok[:, None, None], grams + torch.stack([todo[i][2] for i in idx]),
                               torch.eye(grams.shape[-1], device=grams.device).expand_as(grams))
            inv = torch.linalg.inv(mats)
            for j, i in enumerate(idx):
                which, _, _, grad, param = todo[i]
                if not bool(ok[j]):
                    out[id(param)] = grad
                elif which == "a":  # (BᵀB + reg·I)⁻¹ ∇A
                    out[id(param)] = (inv[j] @ grad.float()).to(grad.dtype)
                else:  # ∇B (AAᵀ + reg·I)⁻¹
                    out[id(param)] = (grad.float() @ inv[j]).to(grad.dtype)
        return out

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        scaled = self._preconditioned()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params, grads, m, v, c1, c2 = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                params.append(p)
                grads.append(scaled.get(id(p), p.grad))
                m.append(state["exp_avg"])
                v.append(state["exp_avg_sq"])
                c1.append(1 - beta1 ** t)
                c2.append(1 - beta2 ** t)
            if not params:
                continue
            torch._foreach_mul_(m, beta1)
            torch._foreach_add_(m, grads, alpha=1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            # p -= lr · (m / c1) / (sqrt(v / c2) + eps)
            denom = torch._foreach_div(v, c2)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(params, m, denom, [-group["lr"] / c for c in c1])
            if group["weight_decay"] != 0:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
        return loss


def plp_pairs(model: nn.Module) -> List[Tuple[nn.Parameter, nn.Parameter, Factors]]:
    """The (down_learn, up_learn, factors) of every PLP layer of a model."""
    from .methods.plp import PLPLinear
    out = []
    for m in model.modules():
        if isinstance(m, PLPLinear):
            out.append((m.down_learn, m.up_learn, lambda m=m: (m.down(), m.up())))
    return out


# ---------------------------------------------------------------------------------------------------------
# Merge
# ---------------------------------------------------------------------------------------------------------

FROZEN_SUFFIXES = (".down_frozen", ".up_frozen")


def merge_plp(content: Dict[str, torch.Tensor], style: Dict[str, torch.Tensor],
              where: str = "the content and style adapters") -> Dict[str, torch.Tensor]:
    """The make stage's starting adapter: style's tensors with every `…down_learn` taken from content. Both
    must have the same tensor names and shapes and bit-identical frozen halves (same seed, same layer order)."""
    if set(content) != set(style):
        diff = sorted(set(content) ^ set(style))
        raise ConfigError(f"{where}: the two adapters have different tensors ({', '.join(diff[:3])})",
                          hint="train both break stages with the same model, method options, rank and targets")
    merged: Dict[str, torch.Tensor] = {}
    for name in sorted(style):
        c, s = content[name], style[name]
        if c.shape != s.shape:
            raise ConfigError(f"{where}: {name} has shape {tuple(c.shape)} in content, {tuple(s.shape)} in style",
                              hint="train both break stages with the same rank and targets")
        if name.endswith(FROZEN_SUFFIXES) and not torch.equal(c, s):
            raise ConfigError(f"{where}: the frozen half {name} differs between the two runs",
                              hint="the break stages must share the seed (the frozen halves come from it)")
        merged[name] = (c if name.endswith(".down_learn") else s).clone()
    return merged


# ---------------------------------------------------------------------------------------------------------
# Break
# ---------------------------------------------------------------------------------------------------------


def split_groups(model: nn.Module, role: str) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
    """(target-loss group, auxiliary-loss group) of a break run: content drives down with the target loss and up
    with the auxiliary loss; style the reverse. Other trainable tensors (a head) join the target group."""
    if role not in ("content", "style"):
        raise ConfigError(f"procedure.options.role: {role!r} is not content or style",
                          hint="set role: content or style")
    down = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith("down_learn")]
    up = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith("up_learn")]
    if not down or not up:
        raise ConfigError("method.name: Break-for-Make's break stage needs the plp method (down/up halves)",
                          hint="set method.name: plp")
    ids = {id(p) for p in down + up}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return (down + rest, up) if role == "content" else (up + rest, down)
