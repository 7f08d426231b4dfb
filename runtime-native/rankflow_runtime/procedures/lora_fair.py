"""`lora-fair`: federated LoRA fine-tuning over simulated clients, with the server aggregation of LoRA-FAIR or of
its baselines (FedIT, FLoRA-style re-initialisation).

Paper: Bian, Wang, Zhang, Xu, "LoRA-FAIR: Federated LoRA Fine-Tuning with Aggregation and Initialization
Refinement", ICCV 2025 (arXiv:2411.14961). No official code is public (a survey links github.com/jmbian/LoRA-FAIR,
which could not be retrieved); the solver follows a third-party paper note and re-implementations (see
`federated/aggregate.py`, which also holds the formulas).

A run: the training split is partitioned over `num_clients` clients (`partition`: iid, dirichlet label skew with
`alpha`, or domain — feature shift, client k holds domain k mod D, optionally with Dirichlet label skew inside the
domain when `alpha` > 0). Round t (of `rounds` = training.max_steps / local_steps): `clients_per_round` clients
are sampled (a function of seed and t); each starts from the global adapter, trains `local_steps` optimizer
steps of the run's `training` settings on its own examples (`federated/clients.py`; one process, one client after
the other, through the loop's `Stepper`), and uploads its adapter. The server aggregates (`federated/server.py`):
FedIT broadcasts (Ā, B̄); LoRA-FAIR (Ā, B̄ + ΔB) with ΔB from the paper's similarity objective and λ; reinit
merges the exact Σ p_k s·B_kA_k into the frozen weights and broadcasts a fresh LoRA (FLoRA). The global model is
evaluated on the run's evaluation split after every round (a `round` event with the metrics, the mean client loss
and the aggregation report: ‖B̄′Ā − ΔW*‖/‖ΔW*‖ after and before the correction, the cosines, ‖ΔB‖/‖B̄‖) and a
checkpoint is written at every round boundary (`federated/state.py`). SIGTERM is honoured between clients: the
checkpoint then also holds the uploads of the round's finished clients, and the resumed run trains only the
others, so the result equals an uninterrupted run's bit for bit (client RNG streams, data positions, optimizer
states and the sampled clients are all in the checkpoint).

Deviations and choices: the paper's clients train with SGD (lr 0.01, batch 128, rank 16, per the note); here they
use the run's `training` section. `training.eval_every` / `checkpoint_every` do not apply (every round is
evaluated and checkpointed). `stop_at_step` (tests) counts client trainings: the run behaves as if SIGTERM
arrived once that many clients have trained.
"""
from __future__ import annotations

import math
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Dict, List

import torch

from .. import __version__
from ..build import build, data_model_info, resolve_info
from ..errors import EXIT_OK, EXIT_PREEMPTED, ConfigError
from ..events import emit, finite_metrics, log
from ..federated import partition as fpart
from ..federated.clients import ClientState, Trainer
from ..federated.sampling import sample_clients
from ..federated.server import AGGREGATIONS, ServerSettings, aggregate_round, lora_layers, payload_numel
from ..federated import state as fstate
from ..methods.base import adapter_state_dict, load_adapter_state_dict, option
from ..optim import make_optimizer
from ..train import Preemption, _prune, _to, epoch_order, peak_mem_mb, pick_device, seed_everything
from .base import Procedure, RunContext, register_procedure

KEEP_CHECKPOINTS = 2


@dataclass
class LoraFairOptions:
    aggregation: str = option("lora-fair", help="server aggregation: lora-fair (Ā, B̄+ΔB), fedit (Ā, B̄) or reinit "
                                                "(exact ΔW* merged into the frozen weights, fresh LoRA: FLoRA-style)",
                              choices=list(AGGREGATIONS))
    num_clients: int = option(10, help="simulated clients the training split is partitioned over", min=1)
    clients_per_round: int = option(0, help="clients sampled per round (0: all)", min=0)
    local_steps: int = option(5, help="optimizer steps per client and round; rounds = training.max_steps / "
                                      "local_steps", min=1)
    partition: str = option("iid", help="iid, dirichlet (label skew) or domain (feature shift: client k holds "
                                        "domain k mod D)", choices=list(fpart.KINDS))
    alpha: float = option(0.5, help="Dirichlet concentration of the label skew (dirichlet; with domain, label skew "
                                    "inside each domain when > 0)", min=0.0)
    lam: float = option(0.01, help="LoRA-FAIR's λ: weight of ‖ΔB‖² against 1 − cos((B̄+ΔB)Ā, ΔW*)", min=0.0)
    solver: str = option("gd", help="gd: gradient descent on the paper's objective (from ΔB = 0, Armijo "
                                    "backtracking); ridge: closed form of the Frobenius variant",
                         choices=["gd", "ridge"])
    solver_lr: float = option(1e-2, help="gd: initial step size (the re-implementations' SGD lr)", min=0.0)
    solver_steps: int = option(1000, help="gd: steps per layer and round", min=1)
    client_state: str = option("reset", help="client optimizer state across its rounds: reset (FedAvg/FedIT "
                                             "clients) or keep", choices=["reset", "keep"])
    min_client_examples: int = option(1, help="a partition leaving a client fewer examples is re-drawn (dirichlet) "
                                              "or refused", min=1)


@register_procedure
class LoraFair(Procedure):
    name = "lora-fair"
    summary = "federated LoRA over simulated clients with LoRA-FAIR's server correction (or FedIT / re-init)"
    paper = ("Bian, Wang, Zhang, Xu, LoRA-FAIR: Federated LoRA Fine-Tuning with Aggregation and Initialization "
             "Refinement, ICCV 2025 (arXiv:2411.14961)")
    Options = LoraFairOptions
    methods = ("lora",)

    def check(self, spec) -> None:
        super().check(spec)
        t = spec.training
        if t["max_steps"] is None:
            raise ConfigError("training.max_steps: a lora-fair run counts local steps (rounds × local_steps); "
                              "epochs do not apply", hint="set training.max_steps and training.epochs: null")
        if t["max_steps"] % self.options.local_steps:
            raise ConfigError(f"training.max_steps: {t['max_steps']} is not a multiple of procedure.options."
                              f"local_steps ({self.options.local_steps})",
                              hint="set max_steps = rounds × local_steps")
        if self.options.clients_per_round > self.options.num_clients:
            raise ConfigError("procedure.options.clients_per_round: more than num_clients",
                              hint="use at most num_clients (0: all)")

    def run(self, ctx: RunContext) -> int:
        return FederatedRun(self.options, ctx).run()


class FederatedRun:
    """One federated run (the procedure's `run`, in pieces)."""

    def __init__(self, options: LoraFairOptions, ctx: RunContext):
        self.o, self.ctx, self.spec = options, ctx, ctx.spec
        self.t = dict(ctx.spec.training)
        self.local = options.local_steps
        self.rounds = self.t["max_steps"] // self.local
        self.per_round = options.clients_per_round or options.num_clients
        self.total_work = self.rounds * self.per_round * self.local
        self.ckpt_root = os.path.join(ctx.out_dir, "checkpoints")
        self.settings = ServerSettings(options.aggregation, options.lam, options.solver, options.solver_lr,
                                       options.solver_steps)
        self.trained = 0  # client trainings in this process (stop_at_step)

    # -- setup ---------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from ..data import load_task_data
        spec = self.spec
        self.device = pick_device(spec.device)
        info = resolve_info(spec)
        self.task_data = load_task_data(dict(spec.dataset), data_model_info(info), spec.seed)
        self.built = build(spec, info, self.task_data.num_labels, self.device)
        self.model, self.method = self.built.model, self.built.method
        self.layers = lora_layers(self.model)
        self.base = {layer.name: self.model.get_submodule(layer.name).base.weight for layer in self.layers}
        self.parts = self.partition()
        self.sizes = [len(p) for p in self.parts]
        warmup = int(math.ceil(self.t["warmup_ratio"] * self.t["max_steps"]))
        self.trainer = Trainer(model=self.model, method=self.method, task_data=self.task_data, device=self.device,
                               make_optimizer=lambda: make_optimizer(spec, self.model, self.method, info.head_name),
                               training=self.t, total_steps=self.t["max_steps"], warmup=warmup, seed=spec.seed,
                               autocast=nullcontext, to_device=lambda b: _to(b, self.device), epoch_order=epoch_order)
        seed_everything(spec.seed)
        self.global_state = _clone(adapter_state_dict(self.model))
        self.server = fstate.ServerState()
        self.clients: Dict[int, ClientState] = {}

    def partition(self) -> List[List[int]]:
        train = self.task_data.train
        n = len(train)
        labels = domains = None
        if self.o.partition in ("dirichlet", "domain") and n and "labels" in train[0]:
            first = train[0]["labels"]
            if torch.is_tensor(first) and first.ndim == 0 and not first.is_floating_point():
                labels = [int(train[i]["labels"]) for i in range(n)]
        if self.o.partition == "domain" and n and "domain" in train[0]:
            domains = [int(train[i]["domain"]) for i in range(n)]
        alpha = self.o.alpha if (self.o.partition == "dirichlet" or self.o.alpha > 0) else None
        if self.o.partition == "domain" and self.o.alpha > 0 and labels is None:
            raise ConfigError("procedure.options.alpha: label skew inside domains needs class labels",
                              hint="set alpha: 0 for a pure feature-shift split")
        parts = fpart.partition(self.o.partition, n, self.o.num_clients, self.spec.seed, labels=labels,
                                domains=domains, alpha=alpha if self.o.partition != "iid" else None,
                                min_size=self.o.min_client_examples, dataset=self.spec.dataset["name"])
        return [p.tolist() for p in parts]

    def facts(self) -> Dict[str, Any]:
        return {"sizes": self.sizes, "rounds": self.rounds, "clients_per_round": self.per_round}

    # -- checkpoints ---------------------------------------------------------------------------------------
    def work(self) -> int:
        """The progress unit of events and checkpoints: client local steps done (rounds · clients · E)."""
        return (self.server.round * self.per_round + len(self.server.partial)) * self.local

    def checkpoint(self, reason: str) -> str:
        step = self.work()
        path = os.path.join(self.ckpt_root, f"step-{step:08d}")
        files = fstate.save(path, step=step, spec_identity=self.spec.identity(), method=self.method,
                            global_state=self.global_state, server=self.server, clients=self.clients,
                            facts=self.facts())
        emit("checkpoint", step=step, path=os.path.abspath(path), files=files,
             best=self.server.best_round == self.server.round - 1 and not self.server.partial, reason=reason)
        _prune(self.ckpt_root, keep=KEEP_CHECKPOINTS)
        return os.path.abspath(path)

    def resume(self, path: str) -> None:
        loaded = fstate.load(path, spec_identity=self.spec.identity(), model=self.model, method=self.method,
                             facts=self.facts())
        self.server, self.clients, self.global_state = loaded.server, loaded.clients, _clone(loaded.global_state)
        with torch.no_grad():
            for name, delta in self.server.merges.items():
                self.base[name].add_(delta.to(self.base[name].device, self.base[name].dtype))
        log.info("resumed from %s at round %d (%d clients of the round done)", path, self.server.round,
                 len(self.server.partial))

    # -- one round -----------------------------------------------------------------------------------------
    def train_clients(self, r: int, sampled: List[int], pre: Preemption) -> bool:
        """Local training of the round's clients not done yet; False when preempted (checkpoint written)."""
        for k in sampled:
            if k in self.server.partial:
                continue
            if pre.requested:
                path = self.checkpoint("preempt")
                emit("preempted", step=self.work(), path=path)
                return False
            load_adapter_state_dict(self.model, self.global_state)
            state = self.clients.setdefault(k, ClientState())
            self.server.partial[k] = self.trainer.local_round(k, self.parts[k], state, r, self.local,
                                                              self.o.client_state == "keep")
            self.trained += 1
            if self.ctx.stop_at_step is not None and self.trained >= self.ctx.stop_at_step:
                pre.requested = True
        return True

    def aggregate(self, r: int, sampled: List[int]) -> Dict[str, float]:
        g = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + 7919 * (r + 1))
        uploads = {k: self.server.partial[k].upload for k in sampled}
        result = aggregate_round(uploads, {k: self.sizes[k] for k in sampled}, self.layers, self.settings, g)
        with torch.no_grad():
            for name, delta in result.merges.items():
                self.base[name].add_(delta.to(self.base[name].device, self.base[name].dtype))
                prev = self.server.merges.get(name)
                self.server.merges[name] = delta if prev is None else prev + delta
        self.global_state = _clone(result.broadcast)
        load_adapter_state_dict(self.model, self.global_state)
        return result.report

    def finish_round(self, r: int, sampled: List[int], report: Dict[str, float]) -> None:
        from ..data import evaluate
        metrics = finite_metrics(evaluate(self.model, self.task_data, self.t["eval_batch_size"], self.device))
        losses = [self.server.partial[k].loss for k in sampled]
        client_loss = sum(losses) / len(losses)
        self.server.partial, self.server.round = {}, r + 1
        step = self.work()
        record = {"round": r + 1, "step": step, "clients": sampled, "client_loss": client_loss, "metrics": metrics,
                  "aggregation": report}
        self.server.history.append(record)
        value = metrics.get(self.task_data.primary_metric)
        better = (value is not None and (self.server.best_value is None or (
            value > self.server.best_value if self.task_data.greater_is_better else value < self.server.best_value)))
        if better:
            self.server.best_value, self.server.best_round = value, r
        emit("progress", step=step, total_steps=self.total_work, epoch=float(r + 1), loss=client_loss,
             lr=float(self.t["lr"]), throughput=0.0, peak_mem_mb=peak_mem_mb(self.device))
        emit("eval", step=step, split=self.task_data.eval_split, metrics=metrics)
        emit("round", round=r + 1, rounds=self.rounds, step=step, clients=sampled, client_loss=client_loss,
             metrics=metrics, aggregation=report)

    # -- the run -------------------------------------------------------------------------------------------
    def run(self) -> int:
        t_start = time.time()
        os.makedirs(self.ctx.out_dir, exist_ok=True)
        with Preemption() as pre:
            self.setup()
            if self.ctx.resume:
                self.resume(self.ctx.resume)
            emit("started", pid=os.getpid(), device=str(self.device), torch=torch.__version__,
                 python=platform.python_version(), runtime=__version__, step=self.work(),
                 total_steps=self.total_work, trainable_params=self.built.trainable,
                 total_params=self.built.total)
            for rec in self.server.history:  # a resumed run first replays the rounds its checkpoint records
                emit("round", rounds=self.rounds, **rec)
            log.info("lora-fair: %d clients (sizes %s), %d rounds of %d local steps, %d clients per round, "
                     "aggregation %s", self.o.num_clients, self.sizes, self.rounds, self.local, self.per_round,
                     self.o.aggregation)
            for r in range(self.server.round, self.rounds):
                sampled = sample_clients(self.o.num_clients, self.per_round, self.spec.seed, r)
                if not self.train_clients(r, sampled, pre):
                    return EXIT_PREEMPTED
                report = self.aggregate(r, sampled)
                self.finish_round(r, sampled, report)
                path = self.checkpoint("final" if r + 1 == self.rounds else "interval")
                if pre.requested and r + 1 < self.rounds:
                    emit("preempted", step=self.work(), path=path)
                    return EXIT_PREEMPTED
            return self.done(t_start)

    def done(self, t_start: float) -> int:
        hist = self.server.history
        last = hist[-1]["metrics"] if hist else {}
        best = hist[self.server.best_round]["metrics"] if self.server.best_round >= 0 else last
        stats = {f"final_{k}": float(v) for k, v in (hist[-1]["aggregation"] if hist else {}).items()}
        stats["payload_numel"] = float(payload_numel(self.global_state))
        stats["rounds"] = float(self.rounds)
        emit("done", step=self.total_work, metrics=last, best_metrics=best,
             best_step=hist[self.server.best_round]["step"] if self.server.best_round >= 0 else self.total_work,
             trainable_params=self.built.trainable, total_params=self.built.total, wall_time_s=time.time() - t_start,
             stats=stats)
        return EXIT_OK


def _clone(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}
