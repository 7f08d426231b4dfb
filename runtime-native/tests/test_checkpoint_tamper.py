"""The checkpoint tamper matrix: truncations, byte flips, edited manifest fields (with the stale digest, and
"resealed" with every digest recomputed so the deeper checks are reached), removed files, another run's
checkpoint, garbage safetensors headers and markers. Every case must be refused by `run --resume` with one
`checkpoint` error (exit 2) before training starts: nothing of it is loaded. Two controls show that an intact
checkpoint, and one resealed without changes, still resume.
"""
import json
import os
import shutil
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from rankflow_runtime import events
from rankflow_runtime.checkpoint_check import COMPLETE, REQUIRED_FILES, file_entry
from rankflow_runtime.cli import main
from rankflow_runtime.errors import CheckpointError
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.train import run_training

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 48, "vocab_size": 256,
        "max_position": 32}


def spec_obj(**over):
    s = example_spec(**{"model.config": TINY, "dataset.train_size": 48, "dataset.eval_size": 16,
                        "dataset.max_length": 16, "training.batch_size": 8, "training.max_steps": 8,
                        "training.eval_every": None, "training.checkpoint_every": 2, "training.log_every": 1,
                        "training.warmup_ratio": 0.0})
    for k, v in over.items():
        a, _, b = k.partition(".")
        s[a][b] = v
    return s


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The step-4 checkpoint of a run stopped there, and one of another run (other seed)."""
    root = tmp_path_factory.mktemp("ck")
    with events.capture():
        run_training(parse_spec(spec_obj()), str(root / "a"), stop_at_step=4)
    other = spec_obj()
    other["seed"] = 7
    with events.capture():
        run_training(parse_spec(other), str(root / "other"), stop_at_step=4)
    return {"ours": str(root / "a" / "checkpoints" / "step-00000004"),
            "other": str(root / "other" / "checkpoints" / "step-00000004")}


# ---------------------------------------------------------------------------------------------------------
# Tampering tools
# ---------------------------------------------------------------------------------------------------------


def reseal(path, step=None):
    """Recompute every digest in the completion marker (a consistent forgery reaches the deeper checks)."""
    mp = os.path.join(path, COMPLETE)
    marker = json.load(open(mp))
    marker["files"] = [file_entry(path, n) for n in REQUIRED_FILES if os.path.exists(os.path.join(path, n))]
    if step is not None:
        marker["step"] = step
    json.dump(marker, open(mp, "w"))


def edit_manifest(fn, sealed=False, step=None):
    def tamper(path):
        mp = os.path.join(path, "manifest.json")
        m = json.load(open(mp))
        fn(m)
        deep = "[" * 5000 + "0" + "]" * 5000  # json.dumps cannot write it: substitute the text
        open(mp, "w").write(json.dumps(m, allow_nan=True).replace('"__DEEP__"', deep))
        if sealed:
            reseal(path, step)
    return tamper


def truncate(name, keep=0.5):
    def tamper(path):
        p = os.path.join(path, name)
        data = open(p, "rb").read()
        open(p, "wb").write(data[: int(len(data) * keep)])
    return tamper


def flip(name, where=-1):
    def tamper(path):
        p = os.path.join(path, name)
        data = bytearray(open(p, "rb").read())
        data[where] ^= 0x01
        open(p, "wb").write(bytes(data))
    return tamper


def remove(name):
    return lambda path: os.remove(os.path.join(path, name))


def garbage_header(name, sealed):
    def tamper(path):
        p = os.path.join(path, name)
        body = open(p, "rb").read()
        n = struct.unpack("<Q", body[:8])[0]
        open(p, "wb").write(body[:8] + b"{" + b"\x00" * (n - 1) + body[8 + n:])
        if sealed:
            reseal(path)
    return tamper


def huge_header(name):
    def tamper(path):
        p = os.path.join(path, name)
        body = open(p, "rb").read()
        open(p, "wb").write(struct.pack("<Q", 1 << 62) + body[8:])
        reseal(path)
    return tamper


def rewrite_tensors(name, fn):
    def tamper(path):
        p = os.path.join(path, name)
        t = load_file(p)
        fn(t)
        save_file(t, p)
        reseal(path)
    return tamper


def set_in(m, dotted, value):
    *head, last = dotted.split(".")
    for k in head:
        m = m[k]
    m[last] = value


def drop(m, dotted):
    *head, last = dotted.split(".")
    for k in head:
        m = m[k]
    del m[last]


def other_runs(path, other):
    shutil.rmtree(path)
    shutil.copytree(other, path)


def first_key(t, prefix=""):
    return next(k for k in sorted(t) if k.startswith(prefix))


def marker_edit(fn):
    def tamper(path):
        mp = os.path.join(path, COMPLETE)
        m = json.load(open(mp))
        fn(m)
        json.dump(m, open(mp, "w"))
    return tamper


def lr100(m):
    for g in m["optimizer"]["param_groups"]:
        g["initial_lr"] = g["lr"] = 100.0


def files_empty_and_flip(path):
    edit_manifest(lambda m: m.__setitem__("files", []))(path)
    marker_edit(lambda m: m.__setitem__("files", []))(path)
    flip("adapter.safetensors")(path)


TAMPERS = {
    # truncation
    **{f"truncate {n}": truncate(n) for n in REQUIRED_FILES + (COMPLETE,)},
    "truncate adapter to 0 bytes": truncate("adapter.safetensors", 0),
    # byte flips
    **{f"flip a byte of {n}": flip(n) for n in REQUIRED_FILES},
    "flip a header byte of adapter.safetensors": flip("adapter.safetensors", 20),
    # edited manifest fields, digest left stale
    "step 4 -> 2": edit_manifest(lambda m: set_in(m, "step", 2)),
    "step 4 -> 6": edit_manifest(lambda m: set_in(m, "step", 6)),
    "trainer position changed": edit_manifest(lambda m: set_in(m, "trainer.batch", 1)),
    "optimizer lr 100": edit_manifest(lr100),
    "files [] and a flipped adapter byte": files_empty_and_flip,
    # the same edits resealed (every digest recomputed): caught by the structure and consistency checks
    "sealed: step 4 -> 2": edit_manifest(lambda m: set_in(m, "step", 2), sealed=True),
    "sealed: step 4 -> 6, marker too": edit_manifest(lambda m: set_in(m, "step", 6), sealed=True, step=6),
    "sealed: step and schedule 4 -> 2, marker too": edit_manifest(
        lambda m: (set_in(m, "step", 2), set_in(m, "scheduler.count", 2)), sealed=True, step=2),
    "sealed: trainer position changed": edit_manifest(lambda m: set_in(m, "trainer.batch", 1), sealed=True),
    "sealed: trainer epoch changed": edit_manifest(lambda m: set_in(m, "trainer.epoch", 3), sealed=True),
    "sealed: optimizer lr 100": edit_manifest(lr100, sealed=True),
    "sealed: no rng": edit_manifest(lambda m: drop(m, "rng"), sealed=True),
    "sealed: no trainer": edit_manifest(lambda m: drop(m, "trainer"), sealed=True),
    "sealed: step 'abc'": edit_manifest(lambda m: set_in(m, "step", "abc"), sealed=True),
    "sealed: best_value a string": edit_manifest(lambda m: set_in(m, "trainer.best_value", "high"), sealed=True),
    "sealed: best_value NaN": edit_manifest(lambda m: set_in(m, "trainer.best_value", float("nan")), sealed=True),
    "sealed: 5000-deep method_extra": edit_manifest(lambda m: set_in(m, "method_extra", {"x": "__DEEP__"}),
                                                    sealed=True),
    "sealed: python rng words garbage": edit_manifest(lambda m: set_in(m, "rng.python", [3, "x", None]),
                                                      sealed=True),
    "sealed: another method": edit_manifest(lambda m: set_in(m, "method", "full"), sealed=True),
    "sealed: adapter_shapes changed": edit_manifest(
        lambda m: set_in(m, "adapter_shapes", {k: [1] for k in m["adapter_shapes"]}), sealed=True),
    "sealed: param groups removed": edit_manifest(lambda m: set_in(m, "optimizer.param_groups", []), sealed=True),
    "sealed: manifest is a list": lambda p: (open(os.path.join(p, "manifest.json"), "w").write("[]"), reseal(p)),
    # removed files
    **{f"remove {n}": remove(n) for n in REQUIRED_FILES + (COMPLETE,)},
    # the completion marker itself
    "marker: files []": marker_edit(lambda m: m.__setitem__("files", [])),
    "marker: garbage": lambda p: open(os.path.join(p, COMPLETE), "wb").write(b"\x00\xff garbage"),
    "marker: another format": marker_edit(lambda m: m.__setitem__("format", "rankflow.checkpoint/v1")),
    "marker: step 4 -> 2": marker_edit(lambda m: m.__setitem__("step", 2)),
    # garbage safetensors headers
    **{f"garbage header {n}": garbage_header(n, sealed=False) for n in REQUIRED_FILES[:3]},
    **{f"sealed: garbage header {n}": garbage_header(n, sealed=True) for n in REQUIRED_FILES[:3]},
    **{f"sealed: header length 2^62 {n}": huge_header(n) for n in REQUIRED_FILES[:3]},
    # tensors rewritten consistently (valid safetensors, resealed)
    "sealed: an adapter tensor of another shape": rewrite_tensors(
        "adapter.safetensors", lambda t: t.__setitem__(first_key(t), torch.zeros(3, 3))),
    "sealed: no torch rng state": rewrite_tensors("state.safetensors", lambda t: t.pop("rng.torch")),
    "sealed: torch rng state of 3 bytes": rewrite_tensors(
        "state.safetensors", lambda t: t.__setitem__("rng.torch", torch.zeros(3, dtype=torch.uint8))),
    "sealed: another data order": rewrite_tensors(
        "state.safetensors", lambda t: t.__setitem__("data.order", torch.flip(t["data.order"], [0]))),
    "sealed: an optimizer tensor removed": rewrite_tensors(
        "optimizer.safetensors", lambda t: t.pop(first_key(t, "state."))),
    # not this run's
    "another run's checkpoint (other seed)": "other",
    "empty directory": lambda p: [os.remove(os.path.join(p, n)) for n in os.listdir(p)],
}


def _apply(name, written, dst):
    shutil.copytree(written["ours"], dst)
    tamper = TAMPERS[name]
    if tamper == "other":
        other_runs(dst, written["other"])
    else:
        tamper(dst)


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampered_checkpoint_is_refused_before_training(name, written, tmp_path):
    dst = str(tmp_path / "ck")
    _apply(name, written, dst)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_obj()))
    with events.capture() as recs:
        rc = main(["run", "--spec", str(spec), "--out", str(tmp_path / "out"), "--resume", dst])
    assert rc == 2, recs
    assert [r["event"] for r in recs] == ["error"], "nothing may start from a tampered checkpoint"
    err = recs[0]
    assert err["kind"] == "checkpoint" and "\n" not in err["message"] and err["hint"]
    assert "Traceback" not in err["message"]


def test_intact_and_resealed_checkpoints_resume(written, tmp_path):
    """The controls: the matrix's refusals are not a checkpoint format that never loads."""
    for label, fix in (("intact", lambda p: None), ("resealed", reseal)):
        dst = str(tmp_path / label)
        shutil.copytree(written["ours"], dst)
        fix(dst)
        with events.capture() as recs:
            rc = run_training(parse_spec(spec_obj()), str(tmp_path / f"out-{label}"), resume=dst)
        assert rc == 0
        assert [r for r in recs if r["event"] == "started"][0]["step"] == 4


def test_refusal_is_a_checkpoint_error_in_process(written, tmp_path):
    dst = str(tmp_path / "ck")
    _apply("sealed: optimizer lr 100", written, dst)
    with pytest.raises(CheckpointError, match="initial_lr is 100.0, the spec gives"):
        run_training(parse_spec(spec_obj()), str(tmp_path / "out"), resume=dst)
