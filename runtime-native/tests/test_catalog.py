"""The catalogue of metrics and dataset facts (rankflow_runtime/catalog.py), published by `describe`: every
metric a dataset reports has a direction, and best-checkpoint selection follows it (a regression run on `mse`
keeps its lowest-MSE checkpoint)."""
import os

from rankflow_runtime import catalog, events
from rankflow_runtime.data import describe_datasets
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.train import run_training


def test_every_reported_metric_is_in_the_catalogue():
    for fam, d in describe_datasets().items():
        tasks = list((d.get("per_task") or {}).values()) + list((d.get("per_kind") or {}).values())
        for t in tasks:
            for m in t["metrics"]:
                assert m in catalog.METRICS, f"{fam}: metric {m} has no catalogue entry"
    assert {m["direction"] for m in catalog.METRICS.values()} == {"max", "min"}


def test_directions_and_groups():
    assert not catalog.greater_is_better("mse") and not catalog.greater_is_better("loss")
    assert catalog.greater_is_better("pearson") and catalog.METRICS["pearson"]["ratio"]
    assert not catalog.METRICS["mse"]["ratio"]
    assert sum(len(g) for g in catalog.VTAB_GROUPS.values()) == 19
    d = describe_datasets()
    assert d["vtab"]["per_task"]["kitti"]["benchmark"] == {"name": "vtab", "group": "structured"}
    assert d["glue"]["per_task"]["mnli"]["defaults"]["eval_split"] == "validation_matched"
    assert d["glue"]["named_splits"]["mnli-mm"] == {"task": "mnli", "eval_split": "validation_mismatched"}


def test_best_checkpoint_of_a_regression_run_has_the_lowest_mse(tmp_path):
    spec = parse_spec(example_spec(**{"dataset.name": "synthetic/regression", "dataset.metric": "mse",
                                      "training.max_steps": 24, "training.eval_every": 4, "training.lr": 3e-3,
                                      "training.checkpoint_every": None, "training.log_every": 4}))
    with events.capture() as recs:
        assert run_training(spec, str(tmp_path)) == 0
    evals = {r["step"]: r["metrics"]["mse"] for r in recs if r["event"] == "eval"}
    assert len(evals) >= 4 and max(evals.values()) > min(evals.values())  # the choice matters
    lowest = min(evals, key=evals.get)
    done = recs[-1]
    assert done["best_step"] == lowest and done["best_metrics"]["mse"] == evals[lowest]
    best_ckpts = [r for r in recs if r["event"] == "checkpoint" and r["best"]]
    assert best_ckpts and best_ckpts[-1]["step"] == lowest
    assert os.path.isdir(best_ckpts[-1]["path"])
