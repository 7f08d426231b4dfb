"""One optimizer step with the method hooks: the single place that defines the step order.

`Stepper.step(micro_batches)` runs, for the method `m` and its `TrainContext` `ctx`:

  1. m.before_forward(ctx)
  2. for each micro-batch:  ctx.batch = batch;  loss = loss_fn(model, batch);  extra = m.extra_loss(ctx)
                            (under autocast);  total = loss + extra;  non-finite total -> NanError;
                            ctx.loss = total;  backward(total / n_micro)  (scaled by the GradScaler in fp16)
  3. scaler.unscale_ (fp16 only)
  4. m.after_backward(ctx)          raw accumulated gradients, weights before the update
  5. clip_grad_norm_ over every optimizer group (when max_grad_norm is set)
  6. optimizer.step()               (scaler.step + scaler.update in fp16)
  7. scheduler.step()               every group's lr, groups added during this step included
  8. m.after_optimizer_step(ctx)    p.grad = the clipped gradients, p = the updated weights (AdaLoRA's
                                    |θ·∇θ| and masking, SNELLA's importance); ctx.step is still the step index
  9. optimizer.zero_grad(set_to_none=True)
 10. ctx.step += 1;  m.after_step(ctx)   no gradients; ctx.step counts the steps done

Any hook may call `ctx.add_parameters(params, lr_group=..., restart_warmup=..., weight_decay=...)`: the
tensors join the optimizer as new groups (see `optim.add_param_group`) and first update at the next step
(a tensor added before 6 has no gradient yet, so the optimizer skips it on this step). Methods that add
nothing, report nothing and define no hooks pay one no-op call per hook.

The training loop (`train.py`), the conformance helpers (`testing.py`) and procedures that run their own inner
loops (stages, federated client rounds, two-optimizer steps) all step through this class. `loss_fn` replaces
the default `model(**inputs).loss` for procedures with their own objective.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn

from .errors import NanError
from .methods.base import Method, TrainContext
from .optim import GroupRules, GroupSchedule, add_param_group

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "labels", "token_type_ids")


def model_inputs(batch: Dict[str, Any]) -> Dict[str, Any]:
    """The keys of a collated batch that the model's forward takes."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUTS}


def default_loss(model: nn.Module, batch: Dict[str, Any]) -> torch.Tensor:
    return model(**model_inputs(batch)).loss


@dataclass
class StepResult:
    loss: float  # mean of the model loss (without the method's extra loss) over the micro-batches
    micro_batches: int
    examples: int
    tokens: int = 0  # non-padding input tokens (0 for image batches)


@dataclass
class Stepper:
    """Everything one optimizer step needs. Build it once per optimizer; call `step` once per update."""

    model: nn.Module
    method: Method
    optimizer: torch.optim.Optimizer
    ctx: TrainContext
    scheduler: Optional[GroupSchedule] = None
    rules: Optional[GroupRules] = None  # lr / weight decay of groups added during training (default: lr 0 wd 0)
    max_grad_norm: Optional[float] = None
    scaler: Optional[Any] = None  # torch.amp.GradScaler for fp16
    autocast: Callable[[], Any] = nullcontext
    loss_fn: Callable[[nn.Module, Dict[str, Any]], torch.Tensor] = default_loss
    _in_step: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.ctx.optimizer, self.ctx.scheduler = self.optimizer, self.scheduler
        self.ctx.grow = self.add_parameters

    # -- parameters that appear during training ------------------------------------------------------
    def add_parameters(self, params: Sequence[nn.Parameter], *, lr_group: str = "default",
                       restart_warmup: bool = False, weight_decay: Optional[float] = None) -> List[Dict[str, Any]]:
        """Give new trainable tensors to the optimizer (see `TrainContext.add_parameters`)."""
        rules = self.rules or GroupRules(lr=self.optimizer.defaults.get("lr", 0.0), lr_groups={}, weight_decay=0.0)
        start = self.ctx.step + 1 if self._in_step else self.ctx.step
        return add_param_group(self.optimizer, self.scheduler, self.model, params, rules=rules, start=start,
                               lr_group=lr_group, restart_warmup=restart_warmup, weight_decay=weight_decay)

    def trainable(self) -> List[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    # -- the step ------------------------------------------------------------------------------------
    def step(self, micro_batches: Iterable[Dict[str, Any]], n_micro: Optional[int] = None) -> StepResult:
        """One optimizer step over `micro_batches` (on the device; gradients are accumulated over them and
        averaged). An iterator is consumed lazily (one micro-batch in memory at a time) and then needs
        `n_micro`, the number it yields. The order is the module docstring's."""
        m, ctx = self.method, self.ctx
        if n_micro is None:
            micro_batches = list(micro_batches)
            n_micro = len(micro_batches)
        self._in_step = True
        try:
            m.before_forward(ctx)
            loss, examples, tokens = self._accumulate(micro_batches, n_micro)
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            m.after_backward(ctx)
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.trainable(), self.max_grad_norm)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            m.after_optimizer_step(ctx)
            self.optimizer.zero_grad(set_to_none=True)
        finally:
            self._in_step = False
        ctx.step += 1
        m.after_step(ctx)
        return StepResult(loss=loss, micro_batches=n_micro, examples=examples, tokens=tokens)

    def _accumulate(self, batches: Iterable[Dict[str, Any]], n: int):
        m, ctx = self.method, self.ctx
        loss_mean, examples, tokens, seen = 0.0, 0, 0, 0
        for batch in batches:
            seen += 1
            ctx.batch = batch
            with self.autocast():
                loss = self.loss_fn(self.model, batch)
                extra = m.extra_loss(ctx)
                total = loss + extra if extra is not None else loss
            if not torch.isfinite(total.detach()):
                raise NanError(f"loss is {float(total.detach())} at step {ctx.step + 1}",
                               hint="lower training.lr, set training.max_grad_norm, or use fp32/bf16")
            ctx.loss = total
            scaled = total / n
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_mean += float(loss.detach()) / n
            examples += _batch_size(batch)
            tokens += _batch_tokens(batch)
        if seen != n:
            raise ValueError(f"Stepper.step: got {seen} micro-batches, n_micro says {n}")
        return loss_mean, examples, tokens


def _batch_size(batch: Dict[str, Any]) -> int:
    for k in ("input_ids", "pixel_values", "labels"):
        v = batch.get(k)
        if torch.is_tensor(v) and v.ndim > 0:
            return int(v.shape[0])
    return 0


def _batch_tokens(batch: Dict[str, Any]) -> int:
    mask = batch.get("attention_mask")
    if torch.is_tensor(mask):
        return int(mask.sum())
    ids = batch.get("input_ids")
    return int(ids.numel()) if torch.is_tensor(ids) else 0
