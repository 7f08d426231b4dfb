"""Evaluation on several splits and the run's efficiency figures, for the training loop (`train.py`).

* ``eval_sets``: the splits a spec evaluates (``dataset.eval_splits``, absent: ``[eval_split]``), each a
  ``TaskData`` whose ``eval`` is that split. The first is the loop's own ``task_data`` (the selection split,
  ``eval_split``: the best checkpoint is chosen on it alone); every other split is loaded by the dataset's
  reader with ``eval_split`` set to it, and only its evaluation examples are used (training reads the selection
  split's training data: for VTAB-1k, ``validation`` trains on train800, so does its ``test`` evaluation).
* ``SplitHistory``: per split the last metrics, the metrics at the best step (chosen on the selection split)
  and the evaluation curve (metrics per eval step, thinned to at most ``CURVE_MAX`` points); checkpointed with
  the trainer state, so a resumed run reports its whole history. The ``done`` event carries it as ``evals``.
* ``Efficiency``: time in optimizer steps (data collation included, evaluation and checkpoints excluded),
  examples and tokens, and the peak memory (``cuda_max_allocated``: the CUDA allocator's peak; ``cpu_max_rss``:
  the process's peak resident set, model loading included); the ``done`` event carries it as ``efficiency``
  with the device name. Figures cover this process only (a resumed run: the steps since the resume).
"""
from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional

import torch

from .errors import ConfigError

CURVE_MAX = 200


def eval_splits_of(dataset: Dict[str, Any]) -> List[str]:
    """The spec's evaluated splits, the selection split (``eval_split``) first."""
    selection = str(dataset.get("eval_split", "validation"))
    listed = [str(s) for s in (dataset.get("eval_splits") or [selection])]
    if selection not in listed:
        raise ConfigError(f"dataset.eval_split '{selection}' is not among dataset.eval_splits {listed}",
                          hint=f"add {selection} to eval_splits, or set eval_split to one of them")
    if selection == "test" and len(listed) > 1:
        raise ConfigError("dataset.eval_split is 'test' while eval_splits lists other splits: the best checkpoint "
                          "would be chosen on the reported split", hint="set eval_split to the validation split")
    return [selection] + [s for s in dict.fromkeys(listed) if s != selection]


def eval_sets(spec_dataset: Dict[str, Any], task_data, load, model_info, seed: int) -> list:
    """``[(split, TaskData)]``: the selection split's ``task_data`` first, then each other split's data."""
    splits = eval_splits_of(spec_dataset)
    out = [(task_data.eval_split, task_data)]
    for split in splits[1:]:
        other = load({**dict(spec_dataset), "eval_split": split}, model_info, seed)
        out.append((split, replace(task_data, eval=other.eval, eval_split=other.eval_split,
                                   generation=other.generation)))
    return out


def _thin(points: list, max_n: int) -> list:
    if len(points) <= max_n:
        return points
    return points[:-1:2] + points[-1:]


@dataclass
class SplitHistory:
    last: Dict[str, Dict[str, float]] = field(default_factory=dict)
    best: Dict[str, Dict[str, float]] = field(default_factory=dict)
    curve: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: Optional[Dict[str, Any]]) -> SplitHistory:
        state = state or {}
        return cls(last=dict(state.get("last", {})), best=dict(state.get("best", {})),
                   curve={k: list(v) for k, v in state.get("curve", {}).items()})

    def state(self) -> Dict[str, Any]:
        return {"last": self.last, "best": self.best, "curve": self.curve}

    def add(self, step: int, results: Dict[str, Dict[str, float]], is_best: bool) -> None:
        self.last = dict(results)
        if is_best:
            self.best = dict(results)
        for split, metrics in results.items():
            pts = [p for p in self.curve.get(split, []) if p["step"] != step] + [{"step": step, "metrics": metrics}]
            self.curve[split] = _thin(pts, CURVE_MAX)

    def record(self) -> Dict[str, Any]:
        """The ``done`` event's ``evals``: per split the final and best metrics and the curve."""
        return {s: {"metrics": m, "best_metrics": self.best.get(s, m), "curve": self.curve.get(s, [])}
                for s, m in self.last.items()}


def device_name(device: torch.device) -> str:
    """``NVIDIA H100 80GB HBM3`` (CUDA), else the CPU model (``/proc/cpuinfo``) or the machine type."""
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except Exception:  # pragma: no cover
            return "cuda"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return "cpu: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu: " + (platform.processor() or platform.machine() or "unknown")


def peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 1024.0 if sys.platform != "darwin" else r / 2**20
    except Exception:  # pragma: no cover
        return 0.0


class Efficiency:
    """Accumulates the time spent in optimizer steps and what they processed (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.steps, self.examples, self.tokens, self.seconds = 0, 0, 0, 0.0
        self._t: Optional[float] = None

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._t = time.perf_counter()

    def stop(self, steps: int, examples: int, tokens: int) -> None:
        if self._t is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - self._t
        self.steps, self.examples, self.tokens = self.steps + steps, self.examples + examples, self.tokens + tokens
        self._t = None

    def record(self) -> Dict[str, Any]:
        s = max(self.seconds, 1e-9)
        out: Dict[str, Any] = {
            "device": device_name(self.device),
            "peak_mem_mb": peak_mem_mb(self.device),
            "mem_kind": "cuda_max_allocated" if self.device.type == "cuda" else "cpu_max_rss",
            "steps": self.steps,
            "train_s": self.seconds,
            "step_s": self.seconds / self.steps if self.steps else 0.0,
            "examples_per_s": self.examples / s if self.steps else 0.0,
        }
        if self.tokens:
            out["tokens_per_s"] = self.tokens / s
        if self.device.type == "cpu":
            out["threads"] = torch.get_num_threads()
        return out
