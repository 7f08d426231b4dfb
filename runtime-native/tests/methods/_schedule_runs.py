"""Whole training runs of the rank-schedule methods (AdaLoRA, IncreLoRA, TriAdaptLoRA, DiffoRA) on a tiny
encoder, with the events they emit captured: the spec every one of their resume and allocation tests starts from."""
from __future__ import annotations

from _runs import of_kind, run_capturing  # noqa: F401 (the methods' tests import them from here)
from rankflow_runtime.spec import example_spec

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 48, "vocab_size": 256,
        "max_position": 32, "dropout": 0.1}
SETTINGS = {"model.config": TINY, "dataset.train_size": 64, "dataset.eval_size": 16, "dataset.max_length": 16,
            "training.batch_size": 8, "training.max_steps": 12, "training.eval_every": 6, "training.log_every": 1}


def schedule_spec(method: str, rank: int, options: dict, settings: dict, over: dict) -> dict:
    """The example spec with SETTINGS and `settings`, the method on query/value/fc1, then `over` ("section.key")."""
    s = example_spec(**{**SETTINGS, **settings})
    s["method"].update(name=method, rank=rank, options=options, targets=["query", "value", "fc1"])
    for k, v in over.items():
        a, _, b = k.partition(".")
        s[a][b] = v
    return s

