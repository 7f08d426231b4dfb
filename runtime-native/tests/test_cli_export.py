"""`python -m rankflow_runtime export`: a LoRA run trained with the real `run` command, its final checkpoint
exported, loaded by Hugging Face PEFT on the same base model, and the outputs compared with rankflow's own
model rebuilt from the spec and the checkpoint. Bad checkpoints and methods PEFT cannot load are one clear
config error each."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from rankflow_runtime import events
from rankflow_runtime.build import build, num_labels_for, resolve_info
from rankflow_runtime.checkpoint import load_trained_state
from rankflow_runtime.cli import main
from rankflow_runtime.models import build_model
from rankflow_runtime.spec import example_spec, parse_spec

peft = pytest.importorskip("peft")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTED_KEYS = {"event", "time", "step", "method", "peft_type", "r", "path", "files"}


def cli(*args, timeout=120):
    p = subprocess.run([sys.executable, "-m", "rankflow_runtime", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]  # every stdout line must be JSON
    return p.returncode, lines, p.stderr


def tiny_spec(**overrides):
    spec = example_spec(**{
        "model.config": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                         "vocab_size": 512},
        "dataset.train_size": 64, "dataset.eval_size": 16, "dataset.max_length": 16,
        "method.rank": 2, "method.options": {"alpha": 4.0},
        "training.lr": 2e-2, "training.max_steps": 6, "training.batch_size": 8, "training.eval_every": None,
        "training.log_every": 3, "seed": 7, **overrides})
    return {**spec, "run_id": "run-0123456789abcdef"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    spec = tiny_spec()
    (d / "spec.json").write_text(json.dumps(spec))
    rc, lines, err = cli("run", "--spec", str(d / "spec.json"), "--out", str(d / "out"))
    assert rc == 0, err[-2000:]
    final = [l for l in lines if l["event"] == "checkpoint"][-1]
    assert final["reason"] == "final" and final["step"] == 6
    return d, spec, final["path"]


def _logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def test_export_loads_in_peft_and_matches_rankflow(trained):
    d, spec_obj, ckpt = trained
    out = d / "adapter"
    rc, lines, err = cli("export", "--spec", str(d / "spec.json"), "--checkpoint", ckpt, "--out", str(out))
    assert rc == 0, err[-2000:]
    assert len(lines) == 1 and set(lines[0]) == EXPORTED_KEYS, lines
    ev = lines[0]
    assert ev["event"] == "exported" and ev["step"] == 6 and ev["method"] == "lora"
    assert ev["peft_type"] == "LORA" and ev["r"] == 2 and ev["path"] == str(out)
    assert [f["name"] for f in ev["files"]] == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 2 and config["lora_alpha"] == 4.0
    assert config["modules_to_save"] == ["classifier"]  # train_head: the trained head travels with the adapter

    # rankflow's model: rebuilt from the spec, trained state loaded from the checkpoint
    spec = parse_spec(spec_obj, src="spec.json")
    info = resolve_info(spec)
    n, _ = num_labels_for(spec, info, spec.seed)
    ours = build(spec, info, n, device="cpu")
    load_trained_state(ckpt, spec_identity=spec.identity(), model=ours.model, method=ours.method)
    b = ours.model.get_submodule(ours.method.targets[0]).lora_B
    assert b.abs().max() > 0  # LoRA's B starts at zero: it trained, so the comparison tests the update

    # the same base PEFT sees: the backbone built from the run's seed, no adapter
    torch.manual_seed(spec.seed)
    base = build_model(spec.model, info, n)
    g = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(3, 512, (4, 16), generator=g), "attention_mask": torch.ones(4, 16, dtype=torch.long)}
    want = _logits(ours.model, batch)
    assert not torch.allclose(_logits(base, batch), want)
    pm = peft.PeftModel.from_pretrained(base, str(out))
    torch.testing.assert_close(_logits(pm.base_model.model, batch), want, rtol=1e-5, atol=1e-5)


def test_corrupt_checkpoint_is_refused(trained, tmp_path):
    d, _, ckpt = trained
    bad = tmp_path / "ckpt"
    shutil.copytree(ckpt, bad)
    data = bytearray((bad / "adapter.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "adapter.safetensors").write_bytes(bytes(data))
    rc, lines, err = cli("export", "--spec", str(d / "spec.json"), "--checkpoint", str(bad), "--out", str(tmp_path / "o"))
    assert rc == 2 and len(lines) == 1 and lines[0]["event"] == "error" and lines[0]["kind"] == "checkpoint"
    assert "adapter.safetensors: sha256 mismatch" in lines[0]["message"] and lines[0]["hint"]
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "adapter_config.json").exists()


def test_other_runs_spec_missing_dir_and_unexportable_method(trained, tmp_path):
    d, _, ckpt = trained
    other = tmp_path / "other.json"
    other.write_text(json.dumps(tiny_spec(**{"training.lr": 1e-3})))
    nola = tmp_path / "nola.json"
    nola.write_text(json.dumps(tiny_spec(**{"method.name": "nola", "method.options": {}})))
    out = str(tmp_path / "o")
    with events.capture() as lines:
        assert main(["export", "--spec", str(other), "--checkpoint", ckpt, "--out", out]) == 2
        assert main(["export", "--spec", str(d / "spec.json"), "--checkpoint", str(tmp_path / "nope"), "--out", out]) == 2
        assert main(["export", "--spec", str(nola), "--checkpoint", ckpt, "--out", out]) == 2
        assert main(["export", "--spec", str(d / "spec.json"), "--checkpoint", ckpt, "--out", out,
                     "--pissa-mode", "residual"]) == 2
    assert [l["event"] for l in lines] == ["error"] * 4
    assert [l["kind"] for l in lines] == ["checkpoint", "checkpoint", "config", "config"]
    assert "--checkpoint" in lines[0]["message"] and "differs in training.lr" in lines[0]["message"]
    assert "nope: not a directory" in lines[1]["message"]
    assert "method 'nola' has no Hugging Face PEFT implementation" in lines[2]["message"]
    assert "--pissa-mode applies to PiSSA runs only" in lines[3]["message"]
    assert not os.path.exists(out)
