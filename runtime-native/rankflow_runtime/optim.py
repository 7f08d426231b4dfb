"""Optimizer parameter groups and their learning-rate schedule, including groups added during training.

* `make_optimizer` builds one parameter group per (lr group, decay / no decay) from the run spec.
* `GroupSchedule` sets the lr of **every** group at every step: `lr = initial_lr · f(step − start)` with
  `f = lr_lambda(schedule, warmup, total − start)`. Groups present at the start have start 0 (one global
  schedule, bit-identical to `LambdaLR`); a group added later with `restart_warmup` gets its own warmup from
  the step at which it first trains and decays over the steps that remain (IncreLoRA's `Multi_LambdaLR`).
  The per-group schedule state (`initial_lr`, `schedule_start`, `schedule_total`) lives in the param-group
  dicts, so it is checkpointed with the optimizer state.
* `add_param_group` is what `TrainContext.add_parameters` does: new tensors become one or two optimizer groups
  (decay / no decay) recording their parameter names, so `restore_added_groups` can re-create them on resume,
  after the method has grown the model back (`prepare_load`) and before the optimizer state is loaded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch

from .errors import ConfigError, did_you_mean


@dataclass
class GroupRules:
    """How a parameter gets its group hyperparameters (from `training`): lr by lr-group name, weight decay
    only on tensors with ≥ 2 dimensions."""

    lr: float
    lr_groups: Dict[str, float]
    weight_decay: float

    @classmethod
    def from_training(cls, t: Dict[str, Any]) -> GroupRules:
        return cls(lr=float(t["lr"]), lr_groups=dict(t["lr_groups"]), weight_decay=float(t["weight_decay"]))

    def lr_of(self, group: str) -> float:
        return float(self.lr_groups.get(group, self.lr))

    def decay_of(self, p: torch.Tensor) -> float:
        return self.weight_decay if p.ndim >= 2 else 0.0


def make_optimizer(spec, model, method, head_name: Optional[str]) -> torch.optim.Optimizer:
    """One parameter group per (lr group, decay / no decay). lr groups: the method's `lr_groups` and
    `head` (the task head); `training.lr_groups` maps them to learning rates (default: training.lr).
    Weight decay applies where `method.decays(name, p)` (default: tensors with ≥ 2 dims)."""
    t = spec.training
    rules = GroupRules.from_training(t)
    allowed = set(method.lr_groups) | {"head"}
    for g in t["lr_groups"]:
        if g not in allowed:
            raise ConfigError(f"training.lr_groups.{g}: {method.name} has no parameter group {g!r}{did_you_mean(g, allowed)}",
                              hint="remove it; `describe` lists each method's lr_groups")
    groups: Dict[tuple, List[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        g = "head" if head_name and name.startswith(head_name + ".") else method.group_of(name)
        groups.setdefault((g, method.decays(name, p)), []).append(p)
    param_groups = [{"params": params, "lr": rules.lr_of(g), "name": g,
                     "weight_decay": rules.weight_decay if decay else 0.0}
                    for (g, decay), params in groups.items()]
    if not param_groups:
        raise ConfigError(f"method.name: {method.name} leaves nothing to train on this model",
                          hint="check method.targets and training.train_head")
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(param_groups, lr=t["lr"], **{"momentum": 0.9, **method.optimizer_settings("sgd")})
    kw = {"betas": (0.9, 0.999), "eps": 1e-8, **method.optimizer_settings("adamw")}
    return torch.optim.AdamW(param_groups, lr=t["lr"], **kw)


def lr_lambda(schedule: str, warmup: int, total: int, floor: float = 0.0):
    """Linear warmup over `warmup` steps, then constant / linear decay / cosine decay to `floor`·lr (0 by
    default; SLTrain's pretraining decays to 0.1·lr, `procedures/pretrain.py`)."""
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(max(progress, 0.0), 1.0)
        decay = 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return floor + (1.0 - floor) * decay if floor else decay
    return f


class GroupSchedule:
    """The lr schedule of every optimizer group, groups added during training included (see module doc).

    `step()` is called once per optimizer step (after `optimizer.step()`); `count` is the number of calls so
    far, i.e. the index of the next optimizer step. A group whose `schedule_start` lies in the future has lr 0.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: str, warmup: int, total: int, floor: float = 0.0):
        self.optimizer, self.schedule, self.warmup, self.total = optimizer, schedule, warmup, total
        self.floor = floor  # from the run's procedure options (part of the spec), so not checkpointed
        self.count = 0
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
            g.setdefault("schedule_start", 0)
            g.setdefault("schedule_total", total)
        self._apply()

    def factor(self, group: Dict[str, Any]) -> float:
        start, local = int(group["schedule_start"]), self.count - int(group["schedule_start"])
        if local < 0:
            return 0.0
        return lr_lambda(self.schedule, self.warmup, int(group["schedule_total"]) - start, self.floor)(local)

    def _apply(self) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * self.factor(g)

    def step(self) -> None:
        self.count += 1
        self._apply()

    def get_last_lr(self) -> List[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        return {"count": self.count, "schedule": self.schedule, "warmup": self.warmup, "total": self.total}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        # `last_epoch`: a checkpoint written while the loop used torch's LambdaLR (same values, start 0).
        self.count = int(state["count"] if "count" in state else state["last_epoch"])
        for g in self.optimizer.param_groups:
            g.setdefault("schedule_start", 0)
            g.setdefault("schedule_total", self.total)
        self._apply()


def add_param_group(optimizer: torch.optim.Optimizer, schedule: Optional[GroupSchedule], model: torch.nn.Module,
                    params: Sequence[torch.nn.Parameter], *, rules: GroupRules, start: int,
                    lr_group: str = "default", restart_warmup: bool = False,
                    weight_decay: Optional[float] = None) -> List[Dict[str, Any]]:
    """Add `params` (tensors of `model` that the optimizer does not hold yet) as new optimizer groups, one per
    weight-decay value. `start`: the index of the first optimizer step that updates them (used by the schedule
    when `restart_warmup`; otherwise they follow the global schedule). `weight_decay` None applies the training
    rule (decay on ≥ 2-D tensors). Returns the new group dicts."""
    names = {id(p): n for n, p in model.named_parameters()}
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    by_decay: Dict[float, List[torch.nn.Parameter]] = {}
    for p in params:
        if id(p) not in names:
            raise ValueError("add_parameters: a tensor is not a parameter of the model (register it first)")
        if id(p) in held:
            raise ValueError(f"add_parameters: {names[id(p)]} is already in the optimizer")
        if not p.requires_grad:
            raise ValueError(f"add_parameters: {names[id(p)]} does not require grad")
        wd = rules.decay_of(p) if weight_decay is None else float(weight_decay)
        by_decay.setdefault(wd, []).append(p)
    lr = rules.lr_of(lr_group)
    new = []
    for wd, ps in by_decay.items():
        group = {"params": ps, "lr": lr, "initial_lr": lr, "name": lr_group, "weight_decay": wd, "added": True,
                 "tensor_names": [names[id(p)] for p in ps],
                 "schedule_start": start if restart_warmup else 0,
                 "schedule_total": schedule.total if schedule is not None else 0}
        optimizer.add_param_group(group)
        new.append(optimizer.param_groups[-1])
    if schedule is not None:
        schedule._apply()
    return new


def restore_added_groups(optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                         saved_groups: Iterable[Dict[str, Any]], where: str) -> None:
    """Re-create, in order, the groups a checkpoint's optimizer had added during training (`added: true`),
    taking the tensors by name from the (already grown) model. Their state is loaded afterwards."""
    params = dict(model.named_parameters())
    present = len(optimizer.param_groups)
    saved = list(saved_groups)
    for g in saved[present:]:
        if not g.get("added"):
            raise ConfigError(f"--resume {where}: the checkpoint's optimizer has {len(saved)} parameter groups, "
                              f"this run builds {present}", hint="resume with the same method, targets and training")
        missing = [n for n in g["tensor_names"] if n not in params]
        if missing:
            raise ConfigError(f"--resume {where}: the checkpoint trains {missing[0]}, which the model does not have",
                              hint="the method did not restore its grown tensors; resume with the same method")
        group = {k: v for k, v in g.items() if k != "params"}
        group["params"] = [params[n] for n in g["tensor_names"]]
        if "betas" in group and isinstance(group["betas"], list):
            group["betas"] = tuple(group["betas"])
        optimizer.add_param_group(group)
