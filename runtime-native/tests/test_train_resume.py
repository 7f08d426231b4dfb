"""Training loop, checkpoints and exact resume (in-process and through real signals)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rankflow_runtime import events
from rankflow_runtime.errors import EXIT_OK, EXIT_PREEMPTED, ConfigError, NanError
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.train import run_training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 48, "vocab_size": 256,
        "max_position": 32, "dropout": 0.1}


def resume_spec(**over):
    s = example_spec(**{
        "model.config": TINY,
        "dataset.train_size": 64, "dataset.eval_size": 32, "dataset.max_length": 16,
        "method.options": {"dropout": 0.1},
        "training.batch_size": 8, "training.grad_accum": 2, "training.max_steps": 12, "training.eval_every": 4,
        "training.log_every": 1, "training.schedule": "cosine", "training.warmup_ratio": 0.2,
    })
    for k, v in over.items():
        a, _, b = k.partition(".")
        s[a][b] = v
    return s


def run_inproc(spec_obj, out, resume=None, stop_at_step=None):
    with events.capture() as recs:
        rc = run_training(parse_spec(json.loads(json.dumps(spec_obj))), str(out), resume=resume,
                          stop_at_step=stop_at_step)
    return rc, recs


def losses(recs):
    return {r["step"]: r["loss"] for r in recs if r["event"] == "progress"}


def only(recs, kind):
    return [r for r in recs if r["event"] == kind]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (12 steps, 3 epochs, grad accumulation, dropout in model and adapter)."""
    return run_inproc(resume_spec(), tmp_path_factory.mktemp("ref"))


def test_uninterrupted_run_trains_and_reports(reference):
    rc, recs = reference
    assert rc == EXIT_OK
    kinds = [r["event"] for r in recs]
    assert kinds[0] == "started" and kinds[-1] == "done" and "error" not in kinds
    assert sorted(losses(recs)) == list(range(1, 13))
    assert [e["step"] for e in only(recs, "eval")] == [4, 8, 12]
    done = only(recs, "done")[0]
    assert done["metrics"] == only(recs, "eval")[-1]["metrics"]
    best = max(only(recs, "eval"), key=lambda e: e["metrics"]["accuracy"])
    assert done["best_step"] == best["step"]
    # lr: warmup (3 steps) then cosine to 0
    lrs = [r["lr"] for r in only(recs, "progress")]
    assert lrs[0] < lrs[2] and lrs[-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [1, 5, 6])
def test_resume_is_bit_identical(reference, tmp_path, k):
    _, ref = reference
    rc, first = run_inproc(resume_spec(), tmp_path, stop_at_step=k)
    assert rc == EXIT_PREEMPTED
    pre = only(first, "preempted")[0]
    assert pre["step"] == k and os.path.isfile(os.path.join(pre["path"], "manifest.json"))
    rc, second = run_inproc(resume_spec(), tmp_path / "resumed", resume=pre["path"])
    assert rc == EXIT_OK
    assert only(second, "started")[0]["step"] == k
    got = {**losses(first), **losses(second)}
    assert got == losses(ref)  # exact equality of floats: bit for bit
    assert only(second, "done")[0]["metrics"] == only(ref, "done")[0]["metrics"]
    assert only(second, "done")[0]["best_metrics"] == only(ref, "done")[0]["best_metrics"]


def test_checkpoint_holds_only_trainable_state(reference, tmp_path):
    from safetensors.torch import load_file
    rc, recs = run_inproc(resume_spec(), tmp_path, stop_at_step=2)
    path = only(recs, "preempted")[0]["path"]
    adapter = load_file(os.path.join(path, "adapter.safetensors"))
    assert adapter and all("lora_" in k or k.startswith("classifier.") for k in adapter)
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    assert manifest["step"] == 2 and manifest["method"] == "lora"
    ck = only(recs, "checkpoint")[0]
    assert [f["name"] for f in ck["files"]] == ["adapter.safetensors", "optimizer.safetensors", "state.safetensors",
                                                "manifest.json", "complete.json"]  # the completion marker last


def test_corrupt_or_mismatched_checkpoint_is_refused(tmp_path):
    rc, recs = run_inproc(resume_spec(), tmp_path, stop_at_step=2)
    path = only(recs, "preempted")[0]["path"]
    with pytest.raises(ConfigError, match=r"differs in training\.lr"):
        run_inproc(resume_spec(**{"training.lr": 5e-3}), tmp_path / "x", resume=path)
    with pytest.raises(ConfigError, match="written by method 'lora'"):
        run_inproc(resume_spec(**{"method.name": "full", "method.rank": None, "method.options": {}}),
                   tmp_path / "y", resume=path)
    with pytest.raises(ConfigError, match="no manifest.json"):
        run_inproc(resume_spec(), tmp_path / "z", resume=str(tmp_path))
    f = os.path.join(path, "adapter.safetensors")
    data = bytearray(open(f, "rb").read())
    data[-1] ^= 0xFF
    open(f, "wb").write(bytes(data))
    with pytest.raises(ConfigError, match="sha256 mismatch"):  # a CheckpointError (kind checkpoint)
        run_inproc(resume_spec(), tmp_path / "w", resume=path)


def test_nan_loss_is_an_error(tmp_path):
    with pytest.raises(NanError, match="loss is nan|loss is inf"):
        run_inproc(resume_spec(**{"training.lr": 1e30, "training.max_grad_norm": None, "method.name": "full",
                                  "method.rank": None, "method.options": {}}), tmp_path)


def test_lr_groups_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="training.lr_groups.prompt: lora has no parameter group"):
        run_inproc(resume_spec(**{"training.lr_groups": {"prompt": 1e-2}}), tmp_path)


# ------------------------------------------------------------------------------------------------------
# Real processes: SIGTERM and kill -9
# ------------------------------------------------------------------------------------------------------


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT)
    return env


def _spawn(spec_path, out, resume=None):
    cmd = [sys.executable, "-c", "import torch,sys; torch.set_num_threads(1); from rankflow_runtime.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "run", "--spec", str(spec_path), "--out", str(out)]
    if resume:
        cmd += ["--resume", resume]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(), cwd=ROOT)


def _read_until(proc, pred, timeout=120):
    recs, t0 = [], time.time()
    for line in proc.stdout:
        rec = json.loads(line)
        recs.append(rec)
        if pred(rec) or time.time() - t0 > timeout:
            break
    return recs


def _long_spec(tmp_path, **over):
    s = resume_spec(**{"training.max_steps": 200, "training.eval_every": None, **over})
    p = tmp_path / "spec.json"
    p.write_text(json.dumps({**s, "run_id": "run-0123456789abcdef"}))
    return s, p


def test_sigterm_checkpoints_and_resume_is_exact(tmp_path):
    spec, path = _long_spec(tmp_path)
    proc = _spawn(path, tmp_path / "a")
    recs = _read_until(proc, lambda r: r["event"] == "progress" and r["step"] >= 2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    recs += [json.loads(l) for l in out.splitlines() if l.strip()]
    assert proc.returncode == EXIT_PREEMPTED, recs[-3:]
    pre = only(recs, "preempted")[0]
    last_progress = max(losses(recs))
    assert pre["step"] == last_progress < 200  # checkpointed at the end of the step that was running
    assert only(recs, "checkpoint")[-1]["reason"] == "preempt"
    proc = _spawn(path, tmp_path / "b", resume=pre["path"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_OK
    resumed = [json.loads(l) for l in out.splitlines() if l.strip()]
    rc, ref = run_inproc(spec, tmp_path / "ref")
    assert {**losses(recs), **losses(resumed)} == losses(ref)
    assert only(resumed, "done")[0]["metrics"] == only(ref, "done")[0]["metrics"]


def test_kill9_after_periodic_checkpoint_resume_is_exact(tmp_path):
    spec, path = _long_spec(tmp_path, **{"training.checkpoint_every": 3, "training.max_steps": 60})
    proc = _spawn(path, tmp_path / "a")
    recs = _read_until(proc, lambda r: r["event"] == "checkpoint" and r["step"] >= 3)
    proc.kill()
    proc.wait(timeout=60)
    ck = only(recs, "checkpoint")[-1]
    assert ck["reason"] == "interval" and os.path.isdir(ck["path"])
    proc = _spawn(path, tmp_path / "b", resume=ck["path"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_OK
    resumed = [json.loads(l) for l in out.splitlines() if l.strip()]
    rc, ref = run_inproc(spec, tmp_path / "ref")
    ref_losses = losses(ref)
    got = {**{s: l for s, l in losses(recs).items() if s <= ck["step"]}, **losses(resumed)}
    assert got == ref_losses
    assert only(resumed, "done")[0]["metrics"] == only(ref, "done")[0]["metrics"]


def test_schedules():
    from rankflow_runtime.train import lr_lambda
    lin, cos, const = (lr_lambda(s, 2, 10) for s in ("linear", "cosine", "constant"))
    assert [lin(i) for i in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert cos(2) == 1.0 and cos(6) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
    assert [const(i) for i in (0, 1, 5, 10)] == [0.5, 1.0, 1.0, 1.0]


def test_epochs_sgd_and_head_lr_group(tmp_path):
    spec = resume_spec(**{"training.max_steps": None, "training.epochs": 1.5, "training.optimizer": "sgd",
                          "training.lr_groups": {"head": 0.05}, "training.eval_every": None,
                          "training.schedule": "constant", "training.warmup_ratio": 0.0})
    rc, recs = run_inproc(spec, tmp_path)
    assert rc == EXIT_OK
    # 64 examples / batch 8 = 8 batches per epoch, grad_accum 2 -> 4 steps per epoch; 1.5 epochs -> 6 steps
    assert only(recs, "started")[0]["total_steps"] == 6 and max(losses(recs)) == 6
    assert only(recs, "progress")[-1]["epoch"] == pytest.approx(1.5)


def test_adapter_shape_mismatch_is_refused():
    from rankflow_runtime.methods.base import adapter_state_dict, load_adapter_state_dict
    from rankflow_runtime.testing import adapted_model
    m4, _, _, _ = adapted_model("tiny-encoder", "lora", rank=4)
    m2, _, _, _ = adapted_model("tiny-encoder", "lora", rank=2)
    with pytest.raises(ConfigError, match=r"has shape \(2, 32\), the model expects \(4, 32\)"):
        load_adapter_state_dict(m4, adapter_state_dict(m2))
    with pytest.raises(ConfigError, match="missing"):
        load_adapter_state_dict(m4, {})


def test_sigterm_during_startup_is_not_lost(tmp_path):
    spec, path = _long_spec(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "rankflow_runtime", "run", "--spec", str(path), "--out",
                             str(tmp_path / "a")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=_env(), cwd=ROOT)
    time.sleep(2.0)  # the handler is installed before torch is imported (which takes longer than this)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    recs = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert proc.returncode == EXIT_PREEMPTED
    pre = only(recs, "preempted")[0]
    assert pre["path"] is None or os.path.isdir(pre["path"])
