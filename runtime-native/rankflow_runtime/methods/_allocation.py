"""Pieces shared by the methods that move rank during training (AdaLoRA, IncreLoRA, TriAdaptLoRA, DiffoRA):
the orthogonality regulariser, EMA importance smoothing, AdaLoRA's budget schedule. Not a method (the leading
underscore keeps it out of the registry's discovery)."""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

import torch


def orth_regulariser(pairs: Iterable[Tuple[torch.Tensor, torch.Tensor]]) -> Optional[torch.Tensor]:
    """Σ_m (‖A_m A_mᵀ − I‖_F + ‖B_mᵀ B_m − I‖_F) / (2M) over (A (r×d_in), B (d_out×r)) pairs: the mean over
    all 2M A and B tensors, as PEFT's AdaLoRA and IncreLoRA's `compute_svd_orth_regu` compute it. None if
    there is no pair."""
    total, n = None, 0
    for a, b in pairs:
        for cov in (a @ a.t(), b.t() @ b):
            eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
            term = torch.linalg.matrix_norm(cov - eye, ord="fro")
            total = term if total is None else total + term
            n += 1
    return None if total is None else total / n


@torch.no_grad()
def ema_update(avg: torch.Tensor, unc: torch.Tensor, ipt: torch.Tensor, beta1: float, beta2: float) -> None:
    """AdaLoRA's smoothing, in place: Ī ← β1·Ī + (1−β1)·I, then Ū ← β2·Ū + (1−β2)·|I − Ī| (with the new Ī)."""
    avg.mul_(beta1).add_(ipt, alpha=1 - beta1)
    unc.mul_(beta2).add_((ipt - avg).abs(), alpha=1 - beta2)


def cubic_budget(step: int, init_bgt: int, target_bgt: int, tinit: int, tfinal: int, total: int,
                 delta_t: int) -> Tuple[int, bool]:
    """AdaLoRA's budget schedule b(t) and whether step t masks (PEFT `RankAllocator.budget_schedule`):
    t ≤ tinit: (init, no mask); t > T − tfinal: (target, mask); otherwise
    b = ⌊(init − target)·(1 − (t − tinit)/(T − tfinal − tinit))³ + target⌋, masking when t % ΔT == 0."""
    if step <= tinit:
        return init_bgt, False
    if step > total - tfinal:
        return target_bgt, True
    mul = 1 - (step - tinit) / (total - tfinal - tinit)
    return int((init_bgt - target_bgt) * (mul ** 3) + target_bgt), step % delta_t == 0

