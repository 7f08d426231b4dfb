"""Simulated clients: their persistent state and one round of local training through the loop's `Stepper`.

A client k holds the training examples `indices` (its partition), draws its batches from its own permutation
per local epoch (`train.epoch_order` over its examples, seeded by `client_seed(seed, k)`), and has its own torch
RNG stream (dropout, the denoiser's noise) that continues across the rounds it takes part in. Both are saved
after each round, so a client's local training is independent of the other clients and of the order in which a
round's clients run. The optimizer is the run's (`training.optimizer`, lr, weight decay, clipping); it starts
fresh every round (`client_state: reset`, the usual FedAvg/FedIT client) or continues from the client's
previous round (`keep`). The lr schedule is a function of the round's position in the run: local step i of round
t is schedule step t·E + i of `training.max_steps` = rounds·E.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import torch

from ..methods.base import TrainContext, adapter_state_dict
from ..optim import GroupRules, GroupSchedule
from ..step import Stepper
from .sampling import client_seed


@dataclass
class ClientState:
    rng: Optional[torch.Tensor] = None  # torch CPU RNG state (None: fresh from the client's seed)
    cuda_rng: Optional[torch.Tensor] = None
    epoch: int = 0
    batch: int = 0
    optimizer: Optional[Dict[str, Any]] = None  # state dict (client_state: keep)
    rounds: int = 0  # rounds taken part in


@dataclass
class LocalResult:
    upload: Dict[str, torch.Tensor]
    loss: float  # mean training loss over the local steps
    examples: int


@dataclass
class Trainer:
    """What local training needs of the run (built once; shared by every client of the run)."""

    model: torch.nn.Module
    method: Any
    task_data: Any
    device: torch.device
    make_optimizer: Callable[[], torch.optim.Optimizer]
    training: Dict[str, Any]
    total_steps: int
    warmup: int
    seed: int
    autocast: Callable[[], Any]
    to_device: Callable[[Dict[str, Any]], Dict[str, Any]]
    epoch_order: Callable[[int, int, int], torch.Tensor]

    def local_round(self, k: int, indices: List[int], state: ClientState, round_index: int,
                    local_steps: int, keep_optimizer: bool) -> LocalResult:
        """Train client k for `local_steps` optimizer steps from the model's current (global) adapter; returns
        its upload. Restores the caller's torch RNG afterwards."""
        t = self.training
        saved_rng = torch.get_rng_state()
        cuda = self.device.type == "cuda"
        saved_cuda = torch.cuda.get_rng_state() if cuda else None
        _enter_rng(state, client_seed(self.seed, k), cuda)
        optimizer = self.make_optimizer()
        if keep_optimizer and state.optimizer is not None:
            optimizer.load_state_dict(state.optimizer)
        schedule = GroupSchedule(optimizer, t["schedule"], self.warmup, self.total_steps)
        schedule.count = round_index * local_steps
        schedule._apply()
        ctx = TrainContext(model=self.model, step=round_index * local_steps, total_steps=self.total_steps,
                           device=self.device)
        stepper = Stepper(self.model, self.method, optimizer, ctx, scheduler=schedule,
                          rules=GroupRules.from_training(t), max_grad_norm=t["max_grad_norm"], autocast=self.autocast)
        self.model.train()
        losses, examples = [], 0
        for _ in range(local_steps):
            result = stepper.step(self._micro_batches(k, indices, state), n_micro=t["grad_accum"])
            losses.append(result.loss)
            examples += result.examples
        state.rng = torch.get_rng_state()
        state.cuda_rng = torch.cuda.get_rng_state() if cuda else None
        state.optimizer = optimizer.state_dict() if keep_optimizer else None
        state.rounds += 1
        torch.set_rng_state(saved_rng)
        if cuda:
            torch.cuda.set_rng_state(saved_cuda)
        upload = {n: v.detach().cpu().clone() for n, v in adapter_state_dict(self.model).items()}
        return LocalResult(upload=upload, loss=sum(losses) / len(losses), examples=examples)

    def _micro_batches(self, k: int, indices: List[int], state: ClientState):
        bs = self.training["batch_size"]
        n = len(indices)
        per_epoch = n // bs if n >= bs else 1
        order = self.epoch_order(n, client_seed(self.seed, k), state.epoch)
        for _ in range(self.training["grad_accum"]):
            if state.batch >= per_epoch:
                state.epoch, state.batch = state.epoch + 1, 0
                order = self.epoch_order(n, client_seed(self.seed, k), state.epoch)
            local = order[state.batch * bs:(state.batch + 1) * bs].tolist()
            state.batch += 1
            yield self.to_device(self.task_data.collate([self.task_data.train[indices[i]] for i in local]))


def _enter_rng(state: ClientState, seed: int, cuda: bool) -> None:
    if state.rng is None:
        torch.manual_seed(seed)  # seeds the CUDA generators too
    else:
        torch.set_rng_state(state.rng)
        if cuda and state.cuda_rng is not None:
            torch.cuda.set_rng_state(state.cuda_rng)
