"""What a researcher checks after a run: the per-example generations behind a generative metric, progress while
decoding, and runtime logs free of library noise."""
import json
import os
import subprocess
import sys

import pytest

from rankflow_runtime import events
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.train import run_training

RUNTIME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gsm8k_like(**over):
    s = example_spec(**{"model.name": "tiny-decoder", "model.task": "causal-lm", "dataset.name": "synthetic/gsm8k-like",
                        "dataset.metric": "exact_match", "dataset.max_length": 64, "dataset.train_size": 32,
                        "dataset.eval_size": 6, "dataset.options": {"max_new_tokens": 8}, "training.max_steps": 4,
                        "training.eval_every": 2, "training.eval_batch_size": 4, "training.train_head": False})
    for k, v in over.items():
        a, _, b = k.partition(".")
        s[a][b] = v
    return s


def test_generative_eval_saves_each_generation_and_its_extracted_answers(tmp_path):
    with events.capture() as recs:
        assert run_training(parse_spec(gsm8k_like()), str(tmp_path)) == 0
    evals = [r for r in recs if r["event"] == "eval"]
    assert [e["step"] for e in evals] == [2, 4]
    for e in evals:
        g = e["generations"]
        assert g["count"] == 6 and g["path"] == str(tmp_path / "generations" / f"step-{e['step']:08d}.jsonl")
        rows = [json.loads(line) for line in open(g["path"], encoding="utf-8")]
        assert [r["index"] for r in rows] == list(range(6))
        assert {"prompt", "generation", "extracted", "extracted_strict", "reference", "reference_answer",
                "correct", "correct_strict"} <= set(rows[0])
        assert rows[0]["prompt"].startswith("Question:")
        # the saved records are the metric: their mean is what the eval event reports
        assert sum(r["correct"] for r in rows) / 6 == pytest.approx(e["metrics"]["exact_match"])
        assert sum(r["correct_strict"] for r in rows) / 6 == pytest.approx(e["metrics"]["exact_match_strict"])
    progress = [r for r in recs if r["event"] == "eval_progress"]
    assert progress and {(p["step"], p["total"]) for p in progress if p["done"] == p["total"]} == {(2, 6), (4, 6)}


def test_classification_eval_has_no_generations(tmp_path):
    with events.capture() as recs:
        assert run_training(parse_spec(example_spec(**{"training.max_steps": 2, "training.eval_every": None})),
                            str(tmp_path)) == 0
    assert all("generations" not in r for r in recs if r["event"] == "eval")
    assert not (tmp_path / "generations").exists()


def test_transformers_noise_stays_out_of_the_runtime_log(tmp_path):
    pytest.importorskip("transformers", reason="transformers is a test-only dependency")
    import hf_fixtures
    model = hf_fixtures.save_roberta(str(tmp_path / "roberta"))
    spec = example_spec(**{"model.name": model, "model.source": "hf", "model.random_init": False,
                           "training.max_steps": 2, "training.eval_every": None, "dataset.train_size": 32,
                           "dataset.eval_size": 8})
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k not in ("RANKFLOW_LOG_LEVEL", "TRANSFORMERS_VERBOSITY")}
    p = subprocess.run([sys.executable, "-m", "rankflow_runtime", "run", "--spec", str(tmp_path / "spec.json"),
                        "--out", str(tmp_path / "out")], cwd=RUNTIME, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "LOAD REPORT" not in p.stderr and "it/s]" not in p.stderr and "UNEXPECTED" not in p.stderr
    assert "loaded weights from" in p.stderr and "newly initialised: classifier." in p.stderr
