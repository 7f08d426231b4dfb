"""`dataset.eval_splits`: every listed split is evaluated at each evaluation, the best checkpoint is chosen on
`eval_split` alone, and the `done` event carries per split the final/best metrics and the curve; plus the
run's efficiency figures (evals.py)."""
import json

import pytest
import torch

from rankflow_runtime import events
from rankflow_runtime.data import load_task_data
from rankflow_runtime.data.types import ModelInfo
from rankflow_runtime.errors import ConfigError
from rankflow_runtime.evals import SplitHistory, eval_splits_of
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.train import run_training


def _spec(**over):
    base = {"training.max_steps": 12, "training.eval_every": 4, "training.log_every": 4,
            "dataset.eval_splits": ["validation", "test"]}
    base.update(over)
    return parse_spec(json.loads(json.dumps(example_spec(**base))))


def _run(spec, out, **kw):
    with events.capture() as recs:
        assert run_training(spec, str(out), **kw) in (0, 4)
    return recs


def test_each_split_is_evaluated_and_best_is_chosen_on_validation(tmp_path):
    recs = _run(_spec(), tmp_path)
    evals = [r for r in recs if r["event"] == "eval"]
    assert [(e["step"], e["split"]) for e in evals] == [(s, sp) for s in (4, 8, 12) for sp in ("validation", "test")]
    val = {e["step"]: e["metrics"] for e in evals if e["split"] == "validation"}
    test = {e["step"]: e["metrics"] for e in evals if e["split"] == "test"}
    assert any(val[s] != test[s] for s in val)  # two different samples (the synthetic test stream is its own)
    done = recs[-1]
    assert done["event"] == "done"
    # best step: the first step with the best validation accuracy, whatever the test accuracy did
    best_step = max(sorted(val), key=lambda s: (val[s]["accuracy"], -s))
    assert done["best_step"] == best_step
    assert done["evals"]["validation"]["best_metrics"] == val[best_step] == done["best_metrics"]
    assert done["evals"]["test"]["best_metrics"] == test[best_step]
    assert done["evals"]["test"]["metrics"] == test[12] and done["metrics"] == val[12]
    assert [p["step"] for p in done["evals"]["test"]["curve"]] == [4, 8, 12]
    assert [p["metrics"] for p in done["evals"]["validation"]["curve"]] == [val[4], val[8], val[12]]


def test_single_split_run_keeps_its_curve_and_efficiency(tmp_path):
    spec = parse_spec(example_spec(**{"training.max_steps": 8, "training.eval_every": 4, "training.log_every": 4}))
    done = _run(spec, tmp_path)[-1]
    assert list(done["evals"]) == ["validation"]
    assert [p["step"] for p in done["evals"]["validation"]["curve"]] == [4, 8]
    eff = done["efficiency"]
    assert eff["mem_kind"] == "cpu_max_rss" and eff["device"].startswith("cpu")
    assert eff["steps"] == 8 and eff["peak_mem_mb"] > 10
    assert eff["step_s"] == pytest.approx(eff["train_s"] / 8)
    assert eff["examples_per_s"] == pytest.approx(8 * 16 / eff["train_s"])  # batch 16, 8 steps
    assert eff["train_s"] < done["wall_time_s"]


def test_history_survives_a_resume(tmp_path):
    full = _run(_spec(), tmp_path / "full")[-1]
    first = _run(_spec(), tmp_path / "a", stop_at_step=6)
    path = next(r for r in first if r["event"] == "preempted")["path"]
    resumed = _run(_spec(), tmp_path / "b", resume=path)[-1]
    assert resumed["evals"] == full["evals"]  # bit-identical resume, and the step-4 evaluation is remembered
    assert resumed["efficiency"]["steps"] == 6  # this process's steps only


def test_selection_split_rules():
    assert eval_splits_of({"eval_split": "validation"}) == ["validation"]
    assert eval_splits_of({"eval_split": "validation", "eval_splits": ["test", "validation"]}) == ["validation", "test"]
    with pytest.raises(ConfigError, match="not among"):
        eval_splits_of({"eval_split": "validation", "eval_splits": ["test"]})
    with pytest.raises(ConfigError, match="reported split"):
        eval_splits_of({"eval_split": "test", "eval_splits": ["test", "validation"]})


def test_synthetic_validation_stream_is_unchanged_and_test_is_disjoint():
    info = ModelInfo(task="seq-cls", vocab_size=128, max_length=32)
    spec = {"name": "synthetic/seq-cls", "max_length": 32, "train_size": 64, "eval_size": 32, "options": {}}
    val = load_task_data({**spec, "eval_split": "validation"}, info, 0)
    other = load_task_data({**spec, "eval_split": "validation_x"}, info, 0)
    test = load_task_data({**spec, "eval_split": "test"}, info, 0)
    ids = lambda td: [tuple(td.eval[i]["input_ids"].tolist()) for i in range(len(td.eval))]  # noqa: E731
    assert ids(val) == ids(other)
    assert not set(ids(val)) & set(ids(test))
    assert all(torch.equal(val.train[i]["input_ids"], test.train[i]["input_ids"]) for i in range(len(val.train)))


def test_curve_is_thinned_keeping_the_last_point():
    h = SplitHistory()
    for step in range(1, 500):
        h.add(step, {"validation": {"accuracy": step / 500}}, is_best=step == 3)
    curve = h.record()["validation"]["curve"]
    assert len(curve) <= 200 and curve[-1]["step"] == 499 and curve[0]["step"] == 1
    assert h.record()["validation"]["best_metrics"] == {"accuracy": 3 / 500}
