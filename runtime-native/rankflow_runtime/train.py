"""The training loop: one function, `run_training`, readable top to bottom.

One optimizer step (its hook order, the one place it is defined) is `step.Stepper.step`; the loop around it
draws the micro-batches, logs, evaluates, checkpoints and honours preemption at step boundaries. The optimizer
groups and their per-group lr schedule (groups added during training included) are in `optim.py`.

Exact resume: the data order of every epoch is a permutation drawn from a generator seeded by (seed, epoch);
the checkpoint stores the optimizer (with every group added during training), the schedule, every RNG and
the position (epoch, batch) at a step boundary, so a resumed run replays the same batches with the same
dropout masks.
"""
from __future__ import annotations

import math
import os
import platform
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from . import __version__, signals
from .build import build, data_model_info, resolve_info
from .checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from .errors import EXIT_OK, EXIT_PREEMPTED, CheckpointError, ConfigError, InternalError
from .evals import Efficiency, SplitHistory, eval_sets, peak_mem_mb  # noqa: F401  (peak_mem_mb: re-export)
from .events import emit, finite_metrics, log
from .methods.base import TrainContext, adapter_state_dict, head_numel, trainable_numel
from .optim import GroupRules, GroupSchedule, lr_lambda, make_optimizer  # noqa: F401  (lr_lambda: re-export)
from .spec import RunSpec
from .step import Stepper


KEEP_CHECKPOINTS = 2  # interval checkpoints kept on disk (the orchestrator uploads each one as it appears)


# ---------------------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(want: str) -> torch.device:
    if want == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if want == "cuda":
        raise InternalError("device: the spec asks for cuda but no CUDA device is available",
                            hint="run it on a GPU worker (device class cuda)")
    return torch.device("cpu")


class Preemption:
    """SIGTERM (see signals.py) or `stop_at_step` request a checkpoint and exit at the next step boundary."""

    def __init__(self) -> None:
        self._local = False

    def __enter__(self):
        signals.install()
        return self

    @property
    def requested(self) -> bool:
        return self._local or signals.requested()

    @requested.setter
    def requested(self, value: bool) -> None:
        self._local = value

    def __exit__(self, *exc):
        return False


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def _to(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


class Allocation:
    """Reports the method's allocation (`Method.allocation`) as `allocation` events: at the start, whenever it
    changed (checked at each progress log) and once more at the end, marked final and carrying the history
    (every reported pattern, thinned to at most HISTORY_MAX points; checkpointed, so it survives resumes).
    Methods without an allocation: nothing is emitted."""

    HISTORY_MAX = 200

    def __init__(self, method, model, history: Optional[List[Dict[str, Any]]] = None) -> None:
        self.method, self.model = method, model
        self.history: List[Dict[str, Any]] = list(history or [])
        self.last = (self.history[-1]["ranks"], self.history[-1]["budget"]) if self.history else None

    def report(self, step: int, final: bool = False, start: bool = False) -> None:
        """`start`: emit even if unchanged (the first event of a process); `final`: the last one."""
        a = self.method.allocation(self.model)
        if a is None:
            return
        ranks = {k: int(v) for k, v in a["ranks"].items()}
        budget = None if a.get("budget") is None else int(a["budget"])
        params = None if a.get("params") is None else int(a["params"])
        changed = (ranks, budget) != self.last
        if changed:
            self.last = (ranks, budget)
            self.history.append({"step": step, "total": sum(ranks.values()), "budget": budget, "ranks": ranks})
            if len(self.history) > self.HISTORY_MAX:  # keep the first, the last and every other one between
                self.history = self.history[:-1:2] + self.history[-1:]
        if changed or final or start:
            emit("allocation", step=step, unit=a.get("unit", "rank"), ranks=ranks, total=sum(ranks.values()),
                 budget=budget, params=params, trainable_params=trainable_numel(self.model), final=final,
                 history=self.history if final else None)


@dataclass
class Finished:
    """What a procedure's `finish` hook sees once training is done (after the final checkpoint)."""

    model: torch.nn.Module
    method: Any
    built: Any
    info: Any
    task_data: Any
    metrics: Dict[str, float]
    step: int
    device: torch.device
    tokens_per_s: Optional[float]
    peak_mem_mb: float


@dataclass
class LoopHooks:
    """How a procedure adapts the standard loop (`procedures/`); every field is optional.

    * `build(spec, info, num_labels, device) -> build.Built`: the model (default `build.build`), e.g. rebuilt
      from an upstream run's model artifact or pruned first;
    * `min_lr_ratio`: the linear / cosine decay ends at this fraction of the lr instead of 0 (SLTrain: 0.1);
    * `finish(Finished) -> stats`: after the final evaluation and checkpoint (write output artifacts); the
      numbers it returns go into the `done` event's `stats`;
    * `optimizer(spec, model, method, head_name) -> Optimizer`: instead of `optim.make_optimizer` (one optimizer
      object, so it is checkpointed and resumed like the default; Break-for-Make's make stage);
    * `step(LoopStep) -> StepResult`: one optimizer step instead of `stepper.step(micro_batches)`, for steps
      with more than one loss or data stream (Break-for-Make's break stage); it must step through `Stepper`s
      and leave `stepper.ctx.step` at the next step index. Randomness beyond the torch/numpy/python global
      streams must be a function of the step index (the checkpoint holds nothing else of it).
    """

    build: Optional[Callable[..., Any]] = None
    min_lr_ratio: float = 0.0
    finish: Optional[Callable[[Finished], Dict[str, float]]] = None
    optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None
    step: Optional[Callable[[LoopStep], Any]] = None


@dataclass
class LoopStep:
    """What a `LoopHooks.step` gets: the loop's `Stepper` (model, method, optimizer, schedule, clipping, hooks),
    the run's micro-batches of this step (an iterator of `n_micro` batches on the device, from the run's
    dataset in its resumable order) and the run's facts."""

    stepper: Stepper
    micro_batches: Any
    n_micro: int
    step: int  # optimizer steps done before this one
    spec: RunSpec
    task_data: Any
    device: torch.device


@dataclass
class Position:
    """Where training is: optimizer steps done, epoch, next micro-batch index within the epoch."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    best_value: Optional[float] = None
    best_step: int = 0
    best_metrics: Dict[str, float] = field(default_factory=dict)
    last_metrics: Dict[str, float] = field(default_factory=dict)
    last_eval_step: int = -1
    splits: SplitHistory = field(default_factory=SplitHistory)


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


def run_training(spec: RunSpec, out_dir: str, resume: Optional[str] = None,
                 stop_at_step: Optional[int] = None, hooks: Optional[LoopHooks] = None) -> int:
    """Train one run. `stop_at_step` (tests) behaves as if SIGTERM arrived during that step. `hooks`: how
    the run's procedure adapts the loop (default: none, the plain fine-tuning loop)."""
    hooks = hooks or LoopHooks()
    t_start = time.time()
    os.makedirs(out_dir, exist_ok=True)
    ckpt_root = os.path.join(out_dir, "checkpoints")
    t = spec.training
    # A damaged or foreign checkpoint is refused before the (slow) data and model set-up.
    verified = verify_checkpoint(resume, spec_identity=spec.identity()) if resume else None
    with Preemption() as pre:
        device = pick_device(spec.device)
        info = resolve_info(spec)
        from .data import evaluate, load_task_data
        task_data = load_task_data(dict(spec.dataset), data_model_info(info), spec.seed)
        splits = eval_sets(spec.dataset, task_data, load_task_data, data_model_info(info), spec.seed)
        built = (hooks.build or build)(spec, info, task_data.num_labels, device)
        model, method = built.model, built.method
        log.info("model %s + %s: %d trainable / %d total parameters on %s", info.name, method.name,
                 built.trainable, built.total, device)

        n_train = len(task_data.train)
        if n_train == 0:
            raise ConfigError(f"dataset {spec.dataset['name']}: the training split is empty",
                              hint="raise dataset.train_size or check the data files")
        bs = t["batch_size"]
        batches_per_epoch = n_train // bs if n_train >= bs else 1
        total_steps = t["max_steps"] or max(1, math.ceil(t["epochs"] * batches_per_epoch / t["grad_accum"]))
        warmup = int(math.ceil(t["warmup_ratio"] * total_steps))

        optimizer = (hooks.optimizer or make_optimizer)(spec, model, method, info.head_name)
        scheduler = GroupSchedule(optimizer, t["schedule"], warmup, total_steps, floor=hooks.min_lr_ratio)
        use_amp = device.type == "cuda" and t["precision"] in ("bf16", "fp16")
        amp_dtype = torch.bfloat16 if t["precision"] == "bf16" else torch.float16
        scaler = torch.amp.GradScaler("cuda") if use_amp and t["precision"] == "fp16" else None
        if device.type == "cpu" and t["precision"] != "fp32":
            log.warning("precision %s requested on the CPU: training in fp32", t["precision"])
        autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if use_amp else nullcontext

        seed_everything(spec.seed)  # the training RNG streams start here (model building consumed some)
        pos = Position()
        if resume:
            loaded = load_checkpoint(resume, spec_identity=spec.identity(), model=model, method=method,
                                     optimizer=optimizer, scheduler=scheduler, scaler=scaler, manifest=verified)
            tr = loaded.manifest["trainer"]
            pos = Position(step=loaded.step, epoch=tr["epoch"], batch=tr["batch"], best_value=tr["best_value"],
                           best_step=tr["best_step"], best_metrics=tr["best_metrics"],
                           last_metrics=tr["last_metrics"], last_eval_step=tr["last_eval_step"],
                           splits=SplitHistory.from_state(tr.get("splits")))
            if pos.epoch * batches_per_epoch + pos.batch != pos.step * t["grad_accum"]:
                raise CheckpointError(f"--resume {resume}: the data position (epoch {pos.epoch}, batch {pos.batch}) "
                                      f"is not where step {pos.step} ends",
                                      hint="the checkpoint is damaged; resume from an older one")
            order = epoch_order(n_train, spec.seed, pos.epoch)
            saved = loaded.state_tensors.get("data.order")
            if saved is None or not torch.equal(saved, order):
                raise CheckpointError(f"--resume {resume}: the data order differs from the checkpoint's",
                                      hint="resume with the same dataset (size, seed) as the run that wrote it")
            log.info("resumed from %s at step %d (epoch %d, batch %d)", resume, pos.step, pos.epoch, pos.batch)
        order = epoch_order(n_train, spec.seed, pos.epoch)
        allocation = Allocation(method, model, loaded.manifest["trainer"].get("allocation") if resume else None)

        emit("started", pid=os.getpid(), device=str(device), torch=torch.__version__,
             python=platform.python_version(), runtime=__version__, step=pos.step, total_steps=total_steps,
             trainable_params=trainable_numel(model), total_params=built.total)

        primary, greater = task_data.primary_metric, task_data.greater_is_better
        trainer_state = lambda: {"epoch": pos.epoch, "batch": pos.batch, "best_value": pos.best_value,  # noqa: E731
                                 "best_step": pos.best_step, "best_metrics": pos.best_metrics,
                                 "last_metrics": pos.last_metrics, "last_eval_step": pos.last_eval_step,
                                 "allocation": allocation.history, "splits": pos.splits.state()}

        def checkpoint(reason: str) -> str:
            path = os.path.join(ckpt_root, f"step-{pos.step:08d}")
            files = save_checkpoint(path, step=pos.step, spec_identity=spec.identity(), model=model, method=method,
                                    optimizer=optimizer, scheduler=scheduler, trainer=trainer_state(),
                                    data_order=order, scaler=scaler)
            emit("checkpoint", step=pos.step, path=os.path.abspath(path), files=files,
                 best=pos.best_step == pos.step and pos.best_value is not None, reason=reason)
            _prune(ckpt_root, keep=KEEP_CHECKPOINTS, also=pos.best_step if pos.best_value is not None else None)
            return os.path.abspath(path)

        def eval_split(td, keep_generations: bool) -> Dict[str, float]:
            extra: Dict[str, Any] = {}
            if td.kind == "generation":
                metrics, extra = _generative_eval(model, td, t["eval_batch_size"], device, pos.step, out_dir,
                                                  "" if keep_generations else f"-{td.eval_split}")
                extra = extra if keep_generations else {}  # the store keeps one generations file per step
            else:
                metrics = finite_metrics(evaluate(model, td, t["eval_batch_size"], device))
            emit("eval", step=pos.step, split=td.eval_split, metrics=metrics, **extra)
            return metrics

        def run_eval() -> None:
            results = {split: eval_split(td, i == 0) for i, (split, td) in enumerate(splits)}
            metrics = results[task_data.eval_split]  # the selection split: best checkpoint on it alone
            pos.last_metrics, pos.last_eval_step = metrics, pos.step
            value = metrics.get(primary)
            is_best = value is not None and (pos.best_value is None or (value > pos.best_value if greater else value < pos.best_value))
            pos.splits.add(pos.step, results, is_best)
            if is_best:
                pos.best_value, pos.best_step, pos.best_metrics = value, pos.step, metrics
                _save_best(os.path.join(out_dir, "best"), model, pos.step, metrics)
                # The best model must reach the store as a verified checkpoint (export takes it), even when no
                # interval checkpoint falls on this step; the final step gets its own checkpoint anyway.
                every = t["checkpoint_every"]
                if pos.step < total_steps and not (every and pos.step % every == 0):
                    checkpoint("best")

        ctx = TrainContext(model=model, step=pos.step, total_steps=total_steps, device=device,
                           total_epochs=total_steps * t["grad_accum"] / batches_per_epoch)
        stepper = Stepper(model, method, optimizer, ctx, scheduler=scheduler, rules=GroupRules.from_training(t),
                          max_grad_norm=t["max_grad_norm"], scaler=scaler, autocast=autocast)
        method.on_train_start(ctx)
        allocation.report(pos.step, start=True)
        model.train()
        window_t, window_n, window_tokens = time.time(), 0, 0
        run_tokens, run_t = 0, time.time()
        efficiency = Efficiency(device)

        def micro_batches():
            nonlocal order
            for _ in range(t["grad_accum"]):
                if pos.batch >= batches_per_epoch:
                    pos.epoch, pos.batch = pos.epoch + 1, 0
                    order = epoch_order(n_train, spec.seed, pos.epoch)
                idx = order[pos.batch * bs:(pos.batch + 1) * bs].tolist()
                pos.batch += 1
                yield _to(task_data.collate([task_data.train[i] for i in idx]), device)

        while pos.step < total_steps:
            if pre.requested:
                path = checkpoint("preempt") if pos.step > 0 else None
                emit("preempted", step=pos.step, path=path)
                return EXIT_PREEMPTED
            ctx.step, ctx.epoch = pos.step, pos.epoch + pos.batch / batches_per_epoch
            steps_before = pos.step
            efficiency.start()
            if hooks.step is None:
                result = stepper.step(micro_batches(), n_micro=t["grad_accum"])
            else:
                result = hooks.step(LoopStep(stepper=stepper, micro_batches=micro_batches(), n_micro=t["grad_accum"],
                                             step=pos.step, spec=spec, task_data=task_data, device=device))
            pos.step = ctx.step
            efficiency.stop(pos.step - steps_before, result.examples, result.tokens)
            window_n += result.examples
            window_tokens, run_tokens = window_tokens + result.tokens, run_tokens + result.tokens

            if pos.step % t["log_every"] == 0 or pos.step == total_steps:
                now = time.time()
                emit("progress", step=pos.step, total_steps=total_steps,
                     epoch=pos.epoch + pos.batch / batches_per_epoch, loss=result.loss,
                     lr=float(optimizer.param_groups[0]["lr"]), throughput=window_n / max(now - window_t, 1e-9),
                     peak_mem_mb=peak_mem_mb(device),
                     **({"tokens_per_s": window_tokens / max(now - window_t, 1e-9)} if window_tokens else {}))
                window_t, window_n, window_tokens = now, 0, 0
                allocation.report(pos.step)
            if t["eval_every"] and pos.step % t["eval_every"] == 0 and pos.step < total_steps:
                run_eval()
                model.train()
            if t["checkpoint_every"] and pos.step % t["checkpoint_every"] == 0 and pos.step < total_steps:
                checkpoint("interval")
            if stop_at_step is not None and pos.step >= stop_at_step:
                pre.requested = True

        if pos.last_eval_step != pos.step:
            run_eval()
        checkpoint("final")
        allocation.report(pos.step, final=True)
        stats: Dict[str, float] = {}
        if hooks.finish is not None:  # the procedure's end of training: output artifacts, its own numbers
            tps = run_tokens / max(time.time() - run_t, 1e-9) if run_tokens else None
            stats = hooks.finish(Finished(model=model, method=method, built=built, info=info, task_data=task_data,
                                          metrics=pos.last_metrics, step=pos.step, device=device, tokens_per_s=tps,
                                          peak_mem_mb=peak_mem_mb(device))) or {}
        emit("done", step=pos.step, metrics=pos.last_metrics, best_metrics=pos.best_metrics or pos.last_metrics,
             best_step=pos.best_step if pos.best_value is not None else pos.step,
             trainable_params=trainable_numel(model), total_params=built.total, wall_time_s=time.time() - t_start,
             evals=pos.splits.record(), efficiency=efficiency.record(), **({"stats": stats} if stats else {}),
             **_head_field(model, info))
        return EXIT_OK


def _head_field(model, info) -> Dict[str, int]:
    """`head_params` of the done event (the head's share of `trainable_params`), absent without a head."""
    n = head_numel(model, info.head_name)
    return {} if n is None else {"head_params": n}


def _generative_eval(model, task_data, batch_size: int, device, step: int, out_dir: str, suffix: str = ""):
    """Evaluate a generative task with progress events while decoding, and keep every example's generation and
    extracted answers in ``DIR/generations/step-NNNNNNNN.jsonl`` (named in the eval event)."""
    import json

    from .data import evaluate
    from .data.evaluate import generation_records
    started = time.time()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.time()
        if done == total or now - last[0] >= 2.0:
            last[0] = now
            emit("eval_progress", step=step, done=done, total=total, elapsed_s=now - started)

    metrics, outputs = evaluate(model, task_data, batch_size, device, return_outputs=True, progress=progress)
    records = generation_records(task_data, outputs or [])
    folder = os.path.join(out_dir, "generations")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step-{step:08d}{suffix}.jsonl")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)
    return finite_metrics(metrics), {"generations": {"path": os.path.abspath(path), "count": len(records)}}


def _save_best(path: str, model, step: int, metrics: Dict[str, float]) -> None:
    """The adapter weights of the best evaluation so far (atomic replace), with their metrics."""
    import json

    from safetensors.torch import save_file
    tmp = path + f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in adapter_state_dict(model).items()},
              os.path.join(tmp, "adapter.safetensors"))
    with open(os.path.join(tmp, "best.json"), "w") as f:
        json.dump({"step": step, "metrics": metrics}, f)
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def _prune(root: str, keep: int, also: Optional[int] = None) -> None:
    """Delete all but the newest `keep` checkpoints and the one of step `also` (the best so far)."""
    steps = sorted(d for d in os.listdir(root) if d.startswith("step-"))
    for d in steps[:-keep]:
        if also is not None and d == f"step-{also:08d}":
            continue
        shutil.rmtree(os.path.join(root, d), ignore_errors=True)
