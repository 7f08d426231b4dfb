"""Fixtures shared by the per-method tests."""
import json

import pytest

from rankflow_runtime import events
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.train import run_training

# A tiny encoder with dropout in the model, so an exact resume must also restore the RNG streams.
_TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 48, "vocab_size": 256,
         "max_position": 32, "dropout": 0.1}


@pytest.fixture
def assert_resume_is_bit_identical(tmp_path):
    """`check(method, options, rank=4)`: train 6 steps uninterrupted; train again, stopping after step 3 (exit 4,
    a `preempted` event with its checkpoint), resume from that checkpoint (exit 0): the per-step losses of the
    two halves equal the uninterrupted run's bit for bit."""

    def check(method: str, options: dict, rank: int = 4) -> None:
        spec = example_spec(**{"model.config": _TINY, "dataset.train_size": 32, "dataset.eval_size": 16,
                               "dataset.max_length": 16, "method.options": options, "training.batch_size": 8,
                               "training.max_steps": 6, "training.eval_every": 6, "training.log_every": 1})
        spec["method"].update(name=method, rank=rank)

        def run(out, resume=None, stop=None):
            with events.capture() as recs:
                rc = run_training(parse_spec(json.loads(json.dumps(spec))), str(out), resume=resume,
                                  stop_at_step=stop)
            return rc, {r["step"]: r["loss"] for r in recs if r["event"] == "progress"}, recs

        _, ref, _ = run(tmp_path / "ref")
        rc, first, recs = run(tmp_path / "a", stop=3)
        assert rc == 4 and sorted(first) == [1, 2, 3]
        path = [r for r in recs if r["event"] == "preempted"][0]["path"]
        rc, second, _ = run(tmp_path / "b", resume=path)
        assert rc == 0 and {**first, **second} == ref

    return check
