"""The procedure registry, run-spec `procedure`/`inputs`, and model/adapter artifacts (written, verified, read)."""
import json
import os

import pytest
import torch

from _runs import run_capturing as _run
from rankflow_runtime.artifacts import open_artifact, parse_input_flags, write_artifact
from rankflow_runtime.build import build, resolve_info
from rankflow_runtime.errors import ConfigError, DataError
from rankflow_runtime.procedures import count_spec, describe_procedures, procedures
from rankflow_runtime.spec import example_spec, parse_spec

UP = "run-" + "a" * 32
DOWN = "run-" + "b" * 32
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 48, "vocab_size": 256,
        "max_position": 32}


def _spec(run_id=UP, steps=4, **kw):
    s = example_spec(**{"model.config": TINY, "dataset.train_size": 32, "dataset.eval_size": 16,
                        "dataset.max_length": 16, "training.batch_size": 8, "training.max_steps": steps,
                        "training.eval_every": None, "training.log_every": 1})
    s["run_id"] = run_id
    s.update(kw)
    return s


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    out = tmp_path_factory.mktemp("up")
    spec = _spec(procedure={"name": "finetune", "options": {"outputs": ["adapter", "model"]}})
    rc, recs = _run(spec, out)
    assert rc == 0
    return spec, out, recs


def test_registry_lists_every_procedure_with_its_contract():
    d = describe_procedures()
    assert "finetune" in d and set(procedures()) == set(d)
    for name, p in d.items():
        assert set(p) == {"summary", "paper", "trains", "methods", "options", "inputs", "outputs"}, name
        assert p["summary"], f"{name}: needs a summary"
        for decl in p["inputs"].values():
            assert decl["kind"] in ("model", "adapter") and decl["help"]
        assert set(p["outputs"].values()) <= {"model", "adapter"}
        json.dumps(p)
    assert d["finetune"]["options"]["outputs"]["default"] == []


def test_spec_procedure_and_inputs_are_validated():
    with pytest.raises(ConfigError, match="procedure.name: unknown procedure 'finetun'.*finetune"):
        count_spec(parse_spec(_spec(procedure={"name": "finetun", "options": {}})))
    with pytest.raises(ConfigError, match="procedure.options.outputs: unknown output 'weights'"):
        count_spec(parse_spec(_spec(procedure={"name": "finetune", "options": {"outputs": ["weights"]}})))
    with pytest.raises(ConfigError, match="procedure.options.bogus: unknown option"):
        count_spec(parse_spec(_spec(procedure={"name": "finetune", "options": {"bogus": 1}})))
    with pytest.raises(ConfigError, match=r"inputs.model.run: expected a run id"):
        parse_spec(_spec(inputs={"model": {"run": "nope", "artifact": "model"}}))
    with pytest.raises(ConfigError, match="inputs.Model: an input name"):
        parse_spec(_spec(inputs={"Model": {"run": UP, "artifact": "model"}}))
    with pytest.raises(ConfigError, match="inputs.teacher: procedure finetune reads no input 'teacher'"):
        count_spec(parse_spec(_spec(inputs={"teacher": {"run": UP, "artifact": "model"}})))
    # Absent procedure = the default one; the spec's identity is unchanged by it.
    plain = parse_spec(_spec())
    assert plain.procedure == {"name": "finetune", "options": {}} and plain.inputs == {}
    assert "procedure" not in plain.identity() and "inputs" not in plain.identity()


def test_count_refuses_a_spec_that_reads_artifacts():
    with pytest.raises(ConfigError, match="its size is known only once its upstream run"):
        count_spec(parse_spec(_spec(inputs={"model": {"run": UP, "artifact": "model"}})))


def test_finetune_writes_the_artifacts_it_is_asked_for(upstream):
    spec, out, recs = upstream
    arts = [r for r in recs if r["event"] == "artifact"]
    assert [a["name"] for a in arts] == ["adapter", "model"]
    assert [r["event"] for r in recs][-1] == "done"
    assert recs.index(arts[0]) > max(i for i, r in enumerate(recs) if r["event"] == "checkpoint")
    for a in arts:
        assert [f["name"] for f in a["files"]][-2:] == ["manifest.json", "complete.json"]
        art = open_artifact(a["path"], flag="test", kind=a["kind"], run_id=UP, artifact=a["name"])
        assert art.manifest["spec"] == parse_spec(json.loads(json.dumps(spec))).identity()
    adapter = open_artifact(arts[0]["path"], flag="t")
    assert adapter.meta["method"]["name"] == "lora" and adapter.meta["targets"]
    assert all("lora_" in k or k.startswith("classifier.") for k in adapter.tensors())
    model = open_artifact(arts[1]["path"], flag="t")
    keys = set(model.tensors())
    assert not any(".base." in k or "lora_" in k for k in keys) and "layers.0.attn.query.weight" in keys
    assert model.meta["structure"] == [] and model.meta["model"]["name"] == "tiny-encoder"


def test_a_downstream_run_starts_from_the_upstream_model(upstream, tmp_path):
    spec, out, recs = upstream
    up_model = [r for r in recs if r["event"] == "artifact" and r["name"] == "model"][0]["path"]
    up_eval = [r for r in recs if r["event"] == "eval"][-1]["metrics"]
    down = _spec(DOWN, steps=1, inputs={"model": {"run": UP, "artifact": "model"}})
    down["training"]["lr"] = 1e-12  # one step that changes nothing measurable: evaluates the upstream model
    rc, drecs = _run(down, tmp_path / "down", {"model": up_model})
    assert rc == 0
    got = [r for r in drecs if r["event"] == "eval"][-1]["metrics"]
    assert got["loss"] == pytest.approx(up_eval["loss"], abs=1e-5) and got["accuracy"] == up_eval["accuracy"]
    # And the rebuilt backbone equals the merged upstream weights exactly.
    ds = parse_spec(json.loads(json.dumps(down)))
    art = open_artifact(up_model, flag="t")
    built = build(ds, resolve_info(ds), 2, "cpu", base=art)
    w = built.model.get_submodule("layers.0.attn.query").base.weight
    assert torch.equal(w, art.tensors()["layers.0.attn.query.weight"])


def _corrupt(path):
    f = os.path.join(path, "model.safetensors")
    data = bytearray(open(f, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(f, "wb").write(bytes(data))


def test_a_corrupt_missing_or_wrong_artifact_is_refused_before_loading(upstream, tmp_path):
    import shutil
    spec, out, recs = upstream
    src = [r for r in recs if r["event"] == "artifact" and r["name"] == "model"][0]["path"]
    down = _spec(DOWN, inputs={"model": {"run": UP, "artifact": "model"}})
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    _corrupt(str(bad))
    cases = [({"model": str(bad)}, DataError, "sha256 mismatch"),
             ({"model": str(tmp_path / "nowhere")}, DataError, "is not a directory"),
             ({}, ConfigError, "input 'model' .* was not given"),
             ({"model": src, "extra": src}, ConfigError, "--input extra is not an input")]
    for inputs, err, msg in cases:
        with pytest.raises(err, match=msg):
            _run(down, tmp_path / "x", inputs)
    wrong = _spec(DOWN, inputs={"model": {"run": "run-" + "c" * 32, "artifact": "model"}})
    with pytest.raises(ConfigError, match="was written by run 'run-a+', the run spec names 'run-c+'"):
        _run(wrong, tmp_path / "x", {"model": src})
    kind = _spec(DOWN, inputs={"model": {"run": UP, "artifact": "adapter"}})
    adapter = [r for r in recs if r["event"] == "artifact" and r["name"] == "adapter"][0]["path"]
    with pytest.raises(ConfigError, match="is a 'adapter' artifact, this run needs a 'model' one"):
        _run(kind, tmp_path / "x", {"model": adapter})
    partial = tmp_path / "partial"
    shutil.copytree(src, partial)
    os.remove(partial / "complete.json")
    with pytest.raises(DataError, match="has no complete.json"):
        _run(down, tmp_path / "x", {"model": str(partial)})
    torn = tmp_path / "torn"  # a damaged manifest is caught by the marker's digest
    shutil.copytree(src, torn)
    with open(torn / "manifest.json", "a") as f:
        f.write(" ")
    with pytest.raises(DataError, match="manifest.json has .* bytes, the marker says"):
        _run(down, tmp_path / "x", {"model": str(torn)})
    assert not (tmp_path / "x" / "checkpoints").exists()  # nothing ran


def test_the_cli_reports_a_corrupt_input_as_a_data_error(upstream, tmp_path):
    import shutil
    import subprocess
    import sys
    spec, out, recs = upstream
    src = [r for r in recs if r["event"] == "artifact" and r["name"] == "model"][0]["path"]
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    _corrupt(str(bad))
    (tmp_path / "s.json").write_text(json.dumps(_spec(DOWN, inputs={"model": {"run": UP, "artifact": "model"}})))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-m", "rankflow_runtime", "run", "--spec", str(tmp_path / "s.json"),
                        "--out", str(tmp_path / "o"), "--input", f"model={bad}"], capture_output=True, text=True,
                       cwd=root, env=dict(os.environ, PYTHONPATH=root), timeout=120)
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
    assert p.returncode == 2 and lines[-1]["event"] == "error" and lines[-1]["kind"] == "data"
    assert "sha256 mismatch" in lines[-1]["message"] and "Traceback" not in p.stderr


def test_artifacts_shard_above_the_limit_and_reassemble(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {f"w{i}": torch.randn(64, 64, generator=g) for i in range(5)}  # 16 KiB each
    ev = write_artifact(str(tmp_path), "model", "model", tensors, spec_identity={"x": 1}, run_id=UP,
                        shard_bytes=40_000)
    shards = [f["name"] for f in ev["files"] if f["name"] not in ("manifest.json", "complete.json")]
    assert shards == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    art = open_artifact(ev["path"], flag="t", run_id=UP)
    back = art.tensors()
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert set(art.manifest["weight_map"].values()) == set(shards)
    # Rewriting replaces the old artifact atomically; no temporary folder is left behind.
    write_artifact(str(tmp_path), "model", "model", {"w": torch.ones(2)}, spec_identity={}, run_id=UP)
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert set(open_artifact(ev["path"], flag="t").tensors()) == {"w"}


def test_input_flags_parse():
    assert parse_input_flags(["model=/a", "adapter=/b=c"]) == {"model": "/a", "adapter": "/b=c"}
    with pytest.raises(ConfigError, match="is not NAME=DIR"):
        parse_input_flags(["model"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_input_flags(["m=/a", "m=/b"])
