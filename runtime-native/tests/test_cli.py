"""The command line as the TypeScript side uses it: real subprocesses, stdout = JSON only."""
import json
import os
import subprocess
import sys

import pytest

from rankflow_runtime import events
from rankflow_runtime.cli import main
from rankflow_runtime.spec import example_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENT_KEYS = {
    "started": {"pid", "device", "torch", "python", "runtime", "step", "total_steps", "trainable_params", "total_params"},
    "progress": {"step", "total_steps", "epoch", "loss", "lr", "throughput", "peak_mem_mb"},
    "checkpoint": {"step", "path", "files", "best", "reason"},
    "eval": {"step", "split", "metrics"},
    "done": {"step", "metrics", "best_metrics", "best_step", "trainable_params", "total_params", "wall_time_s"},
    "error": {"kind", "message", "hint"},
    "preempted": {"step", "path"},
    "artifact": {"name", "kind", "path", "files"},
}
# Keys an event may carry besides the required ones (schemas/events.ts marks them optional).
OPTIONAL_KEYS = {"progress": {"tokens_per_s"}, "done": {"stats", "head_params", "evals", "efficiency"}}


def cli(*args, timeout=120):
    p = subprocess.run([sys.executable, "-m", "rankflow_runtime", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]  # every stdout line must be JSON
    return p.returncode, lines, p.stderr


def check_events(lines):
    for rec in lines:
        required = EVENT_KEYS[rec["event"]] | {"event", "time"}
        assert required <= set(rec) <= required | OPTIONAL_KEYS.get(rec["event"], set()), rec


def test_describe():
    rc, (d,), _ = cli("describe")
    assert rc == 0 and set(d) == {"runtime", "torch", "methods", "procedures", "models", "datasets", "metrics"}
    assert d["procedures"]["finetune"]["inputs"]["model"]["kind"] == "model"
    lora = d["methods"]["lora"]
    assert lora["needs_rank"] and lora["mergeable"] and lora["init_is_identity"]
    assert lora["options"]["alpha"]["type"] == "number" and lora["options"]["use_rslora"]["type"] == "boolean"
    assert d["models"]["tiny-decoder"]["task"] == "causal-lm"
    assert "synthetic" in d["datasets"]


def test_count_single_and_many(tmp_path):
    spec = example_spec()
    (tmp_path / "s.json").write_text(json.dumps(spec))
    rc, (one,), _ = cli("count", "--spec", str(tmp_path / "s.json"))
    assert rc == 0 and one["trainable"] == one["formula"] and one["total"] > one["trainable"]
    # LoRA r=8 on query/value of 2 layers of 64x64, plus the classifier head (64*2+2)
    assert one["formula"] == 4 * 8 * (64 + 64) + 64 * 2 + 2
    assert one["head"] == 64 * 2 + 2  # the head's share, which papers leave out of the count
    full = example_spec(**{"method.name": "full", "method.rank": None})
    (tmp_path / "m.json").write_text(json.dumps([spec, full]))
    rc, (many,), _ = cli("count", "--specs", str(tmp_path / "m.json"))
    assert rc == 0 and many[0] == one and many[1]["trainable"] == many[1]["total"]
    assert many[1]["head"] == 64 * 2 + 2
    frozen = example_spec(**{"training.train_head": False})
    (tmp_path / "f.json").write_text(json.dumps(frozen))
    rc, (f,), _ = cli("count", "--spec", str(tmp_path / "f.json"))
    assert rc == 0 and f["head"] == 0 and f["trainable"] == one["trainable"] - one["head"]


def test_smoke(tmp_path):
    rc, lines, _ = cli("smoke", "--out", str(tmp_path))
    assert rc == 0
    check_events(lines)
    kinds = [r["event"] for r in lines]
    assert kinds[0] == "started" and kinds[-1] == "done" and "progress" in kinds
    assert os.path.getsize(tmp_path / "smoke.safetensors") > 0
    progress = [r["loss"] for r in lines if r["event"] == "progress"]
    assert progress[-1] < progress[0]


@pytest.mark.parametrize("mutate,field", [
    (lambda s: s["training"].update(lr=-1), "training.lr"),
    (lambda s: s["method"].update(name="lroa"), 'did you mean "lora"'),
    (lambda s: s["method"]["options"].update(alpah=3), "method.options.alpah"),
    (lambda s: s["training"].update(epochs=2), "training.max_steps/training.epochs"),
    (lambda s: s["model"].update(extra=1), "model.extra: unknown field"),
    (lambda s: s["dataset"].update(max_length=4096), "dataset.max_length"),
])
def test_bad_spec_is_one_config_error(tmp_path, mutate, field, capsys):
    spec = example_spec()
    mutate(spec)
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    with events.capture() as lines:
        rc = main(["run", "--spec", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert len(lines) == 1 and lines[0]["event"] == "error" and lines[0]["kind"] == "config"
    assert field in lines[0]["message"] and "Traceback" not in capsys.readouterr().err


def test_bad_spec_subprocess(tmp_path):
    spec = example_spec()
    spec["training"]["batch_size"] = 0
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    rc, lines, err = cli("run", "--spec", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o"))
    assert rc == 2 and [l["event"] for l in lines] == ["error"] and "training.batch_size" in lines[0]["message"]
    assert "Traceback" not in err


def test_missing_spec_file_and_bad_flag(tmp_path):
    with events.capture() as lines:
        assert main(["run", "--spec", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 2
        assert main(["count"]) == 2
    assert "nope.json: spec file not found" in lines[0]["message"]
    assert lines[1]["kind"] == "config" and "--spec" in lines[1]["message"]


def test_quickstart_spec_runs_end_to_end(tmp_path):
    # No wall-time assertion (the machine is shared; speed is shown by bench/, never by a timed test); the
    # subprocess limit only keeps a hung runtime from hanging the suite.
    spec = {**example_spec(), "run_id": "run-00112233445566778899"}
    (tmp_path / "q.json").write_text(json.dumps(spec))
    rc, lines, err = cli("run", "--spec", str(tmp_path / "q.json"), "--out", str(tmp_path / "out"), timeout=600)
    assert rc == 0, err[-2000:]
    check_events(lines)
    done = lines[-1]
    assert done["event"] == "done" and done["metrics"]["accuracy"] > 0.6  # the planted signal is learned
    assert done["head_params"] == 64 * 2 + 2 and done["trainable_params"] == 4 * 8 * (64 + 64) + 64 * 2 + 2
    assert [r for r in lines if r["event"] == "checkpoint"][-1]["reason"] == "final"
