"""With `eval_every` set and `checkpoint_every: null`, every new best evaluation is written as a verified
checkpoint (reason `best`), so the store holds the model `table --best` reports and `export` can take it."""
import os

from rankflow_runtime import events
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.train import run_training


def test_each_new_best_evaluation_is_a_checkpoint(tmp_path):
    spec = parse_spec(example_spec(**{"training.max_steps": 8, "training.eval_every": 2,
                                      "training.checkpoint_every": None, "training.log_every": 2}))
    with events.capture() as recs:
        assert run_training(spec, str(tmp_path)) == 0
    evals = [r for r in recs if r["event"] == "eval"]
    ckpts = {r["step"]: r for r in recs if r["event"] == "checkpoint"}
    best, improved = None, []
    for e in evals:
        v = e["metrics"]["accuracy"]
        if best is None or v > best:
            best = v
            improved.append(e["step"])
    assert improved[0] == 2  # the first evaluation is always a new best
    for step in improved:
        if step < 8:
            assert ckpts[step]["reason"] == "best" and ckpts[step]["best"] is True
    assert ckpts[8]["reason"] == "final"
    assert set(ckpts) == {s for s in improved if s < 8} | {8}  # nothing else was written
    done = recs[-1]
    assert done["best_step"] == improved[-1]
    path = ckpts[done["best_step"]]["path"]
    assert os.path.isdir(path)  # kept on disk (pruning never removes the best) and verifiable
    import hashlib
    import json
    with open(os.path.join(path, "manifest.json")) as f:
        assert json.load(f)["step"] == done["best_step"]
    for entry in ckpts[done["best_step"]]["files"]:  # the sha256s the activity verifies on upload
        with open(os.path.join(path, entry["name"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"]


def test_interval_checkpoints_that_fall_on_the_best_step_are_not_doubled(tmp_path):
    spec = parse_spec(example_spec(**{"training.max_steps": 8, "training.eval_every": 2,
                                      "training.checkpoint_every": 2, "training.log_every": 2}))
    with events.capture() as recs:
        assert run_training(spec, str(tmp_path)) == 0
    ckpts = [r for r in recs if r["event"] == "checkpoint"]
    assert [c["step"] for c in ckpts] == [2, 4, 6, 8] and {c["reason"] for c in ckpts} == {"interval", "final"}
