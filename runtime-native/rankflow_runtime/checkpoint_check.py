"""Checking a checkpoint directory before anything in it is used: the completion marker, every file's digest,
the manifest's structure, the spec identity. Every refusal is a `CheckpointError` (kind `checkpoint`, exit 2):
one line naming the file and what is wrong. The orchestrator then falls back to an older checkpoint.

The chain of trust: `complete.json` (written last) records the sha256 and size of every file of the checkpoint,
the manifest included; the set of files a checkpoint must have is `REQUIRED_FILES` below (never the list inside
a file being verified). A digest detects damage and careless edits; it is not a signature (anyone who may write
the checkpoint may also rewrite its marker): the state folders and the store keep strangers out.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Callable, Dict, List, Optional

from .errors import CheckpointError

FORMAT = "rankflow.checkpoint/v2"
MANIFEST = "manifest.json"
COMPLETE = "complete.json"
TENSOR_FILES = ("adapter.safetensors", "optimizer.safetensors", "state.safetensors")
REQUIRED_FILES = TENSOR_FILES + (MANIFEST,)
# A manifest is small (shapes, optimizer groups, RNG words): anything larger is not one of ours.
MAX_JSON_BYTES = 64 << 20
# Spec fields that may differ between the writer and the resumer (machine-specific, not the experiment).
RESUME_MAY_DIFFER = {("dataset", "data_root"), ("device",)}
DAMAGED = "the checkpoint is damaged; resume from an older one (or start without --resume)"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: str, name: str) -> Dict[str, Any]:
    p = os.path.join(path, name)
    return {"name": name, "sha256": sha256_file(p), "bytes": os.path.getsize(p)}


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json_file(path: str, flag: str, what: str) -> Any:
    """A small JSON file of the checkpoint; NaN/Infinity and oversized or undecodable files are refused."""
    try:
        size = os.path.getsize(path)
    except OSError:
        raise CheckpointError(f"{flag} {path}: missing {what}", hint=DAMAGED) from None
    if size > MAX_JSON_BYTES:
        raise CheckpointError(f"{flag} {path}: {what} is {size} bytes (at most {MAX_JSON_BYTES})", hint=DAMAGED)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{flag} {path}: {what} is not valid JSON ({str(e)[:120]})", hint=DAMAGED) from None


# ---------------------------------------------------------------------------------------------------------
# The completion marker and the digests
# ---------------------------------------------------------------------------------------------------------


def write_marker(path: str, step: int) -> Dict[str, Any]:
    """Write `complete.json` over the files of REQUIRED_FILES already in `path`; returns the marker."""
    marker = {"format": FORMAT, "step": step, "files": [file_entry(path, n) for n in REQUIRED_FILES]}
    with open(os.path.join(path, COMPLETE), "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    return marker


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_marker(path: str, flag: str) -> Dict[str, Any]:
    if not os.path.isdir(path):
        raise CheckpointError(f"{flag} {path}: not a directory",
                              hint="pass a checkpoint directory (it holds manifest.json)")
    mp = os.path.join(path, COMPLETE)
    if not os.path.exists(mp):
        if os.path.exists(os.path.join(path, MANIFEST)):
            raise CheckpointError(f"{flag} {path}: no {COMPLETE} (the checkpoint was not finished, or an older "
                                  f"rankflow wrote it without a completion marker)", hint=DAMAGED)
        raise CheckpointError(f"{flag} {path}: no {MANIFEST}", hint="pass a checkpoint directory written by rankflow")
    marker = read_json_file(mp, flag, COMPLETE)
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        got = marker.get("format") if isinstance(marker, dict) else None
        raise CheckpointError(f"{mp}: not a {FORMAT} marker (format {json.dumps(got)[:60]})", hint=DAMAGED)
    if not _is_int(marker.get("step")) or marker["step"] < 0:
        raise CheckpointError(f"{mp}: step: expected a non-negative integer", hint=DAMAGED)
    files = marker.get("files")
    ok = isinstance(files, list) and all(
        isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("sha256"), str)
        and _is_int(f.get("bytes")) for f in files)
    if not ok:
        raise CheckpointError(f"{mp}: files: expected a list of {{name, sha256, bytes}}", hint=DAMAGED)
    return marker


def verify_digests(path: str, marker: Dict[str, Any], flag: str) -> None:
    """Every required file exists and matches the size and sha256 the marker records for it."""
    recorded = {f["name"]: f for f in marker["files"]}
    for name in REQUIRED_FILES:
        p = os.path.join(path, name)
        want = recorded.get(name)
        if want is None:
            raise CheckpointError(f"{flag} {path}: {COMPLETE} records no digest for {name}", hint=DAMAGED)
        if not os.path.isfile(p):
            raise CheckpointError(f"{p}: missing checkpoint file", hint=DAMAGED)
        size = os.path.getsize(p)
        if size != want["bytes"]:
            raise CheckpointError(f"{p}: {size} bytes, {COMPLETE} records {want['bytes']} (truncated or rewritten)",
                                  hint=DAMAGED)
        got = sha256_file(p)
        if got != want["sha256"]:
            raise CheckpointError(f"{p}: sha256 mismatch ({COMPLETE} {want['sha256'][:12]}..., file {got[:12]}...)",
                                  hint=DAMAGED)


# ---------------------------------------------------------------------------------------------------------
# The manifest's structure (what the loader reads from it)
# ---------------------------------------------------------------------------------------------------------

Check = Callable[[Any], bool]


def _nullable(pred: Check) -> Check:
    return lambda v: v is None or pred(v)


def _dict_of(pred: Check) -> Check:
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and pred(x) for k, x in v.items())


def _list_of(pred: Check) -> Check:
    return lambda v: isinstance(v, list) and all(pred(x) for x in v)


def _nonneg(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _py_rng(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 3 and _is_int(v[0]) and _list_of(_nonneg)(v[1]) and len(v[1]) > 0
            and (v[2] is None or _is_num(v[2])))


def _np_rng(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 4 and isinstance(v[0], str) and _is_int(v[1]) and _is_int(v[2])
            and _is_num(v[3]))


_metrics = _dict_of(_is_num)
# (path, check, expected) for every manifest field the loader reads.
MANIFEST_FIELDS: List[tuple] = [
    ("step", _nonneg, "a non-negative integer"),
    ("spec", lambda v: isinstance(v, dict), "an object"),
    ("method", lambda v: isinstance(v, str) and v != "", "a method name"),
    ("adapter_shapes", _dict_of(_list_of(_nonneg)), "an object of tensor shapes"),
    ("optimizer", lambda v: isinstance(v, dict), "an object"),
    ("optimizer.param_groups", _list_of(lambda g: isinstance(g, dict)), "a list of parameter groups"),
    ("optimizer.scalars", _dict_of(lambda x: isinstance(x, dict)), "an object"),
    ("scheduler", _nullable(lambda v: isinstance(v, dict)), "an object or null"),
    ("scaler", _nullable(lambda v: isinstance(v, dict)), "an object or null"),
    ("rng", lambda v: isinstance(v, dict), "an object"),
    ("rng.python", _py_rng, "Python's random state [version, words, gauss]"),
    ("rng.numpy", _np_rng, "numpy's state [name, pos, has_gauss, cached]"),
    ("rng.cuda_devices", _nonneg, "a non-negative integer"),
    ("trainer", lambda v: isinstance(v, dict), "an object"),
    ("trainer.epoch", _nonneg, "a non-negative integer"),
    ("trainer.batch", _nonneg, "a non-negative integer"),
    ("trainer.best_value", _nullable(_is_num), "a finite number or null"),
    ("trainer.best_step", _nonneg, "a non-negative integer"),
    ("trainer.best_metrics", _metrics, "an object of finite numbers"),
    ("trainer.last_metrics", _metrics, "an object of finite numbers"),
    ("trainer.last_eval_step", lambda v: _is_int(v) and v >= -1, "an integer >= -1"),
    ("method_extra", _nullable(lambda v: isinstance(v, dict)), "an object or null"),
]
_MISSING = object()


def _get(obj: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def check_manifest(manifest: Any, marker: Dict[str, Any], mp: str) -> Dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{mp}: not a {FORMAT} manifest", hint=DAMAGED)
    for dotted, pred, expected in MANIFEST_FIELDS:
        v = _get(manifest, dotted)
        if v is _MISSING:
            raise CheckpointError(f"{mp}: {dotted}: missing", hint=DAMAGED)
        if not pred(v):
            raise CheckpointError(f"{mp}: {dotted}: expected {expected}, got {json.dumps(v)[:60]}", hint=DAMAGED)
    if manifest["step"] != marker["step"]:
        raise CheckpointError(f"{mp}: step {manifest['step']} but {COMPLETE} records step {marker['step']}",
                              hint=DAMAGED)
    sched = manifest["scheduler"]
    if sched is not None and "count" in sched and sched["count"] != manifest["step"]:
        raise CheckpointError(f"{mp}: the schedule has taken {sched['count']} steps, the checkpoint is at step "
                              f"{manifest['step']}", hint=DAMAGED)
    return manifest


# ---------------------------------------------------------------------------------------------------------
# Identity: the checkpoint belongs to this run
# ---------------------------------------------------------------------------------------------------------


def comparable_spec(identity: Dict[str, Any]) -> Dict[str, Any]:
    spec = json.loads(json.dumps(identity))
    for path in RESUME_MAY_DIFFER:
        node = spec
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return spec


def diff_fields(a: Any, b: Any, prefix: str = "") -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: List[str] = []
        for k in sorted(set(a) | set(b)):
            out += diff_fields(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def check_identity(path: str, manifest: Dict[str, Any], spec_identity: Dict[str, Any], flag: str) -> None:
    method = (spec_identity.get("method") or {}).get("name")
    cli = flag == "--resume"
    if manifest["method"] != method:
        raise CheckpointError(f"{flag} {path}: written by method {manifest['method']!r}, this run uses {method!r}",
                              hint="resume a checkpoint of the same run" if cli else "pass a checkpoint of this run")
    want, got = comparable_spec(spec_identity), comparable_spec(manifest["spec"])
    if canonical(want) != canonical(got):
        diff = diff_fields(got, want)
        raise CheckpointError(f"{flag} {path}: written by a different run spec (differs in {', '.join(diff[:4])})",
                              hint="resume with the spec that wrote the checkpoint, or start without --resume"
                              if cli else "pass the spec of the run that wrote the checkpoint")


def verify_checkpoint(path: str, *, spec_identity: Dict[str, Any], flag: str = "--resume") -> Dict[str, Any]:
    """Everything that can be checked without building the model: the marker, every digest, the manifest's
    structure and that the checkpoint is this run's. Returns the manifest; raises CheckpointError."""
    marker = read_marker(path, flag)
    verify_digests(path, marker, flag)
    mp = os.path.join(path, MANIFEST)
    manifest = check_manifest(read_json_file(mp, flag, MANIFEST), marker, mp)
    check_identity(path, manifest, spec_identity, flag)
    return manifest


def optimizer_mismatch(saved: List[Dict[str, Any]], current: List[Dict[str, Any]]) -> Optional[str]:
    """The first hyperparameter of the groups built from the spec that the checkpoint's groups contradict (the
    learning rate itself is set by the schedule from `initial_lr`, so it is not compared)."""
    for i, (s, c) in enumerate(zip(saved, current)):
        for key, value in c.items():
            if key in ("params", "lr") or key not in s:
                continue
            norm = list(value) if isinstance(value, tuple) else value
            if s[key] != norm:
                return f"param group {i} ({c.get('name', '?')}): {key} is {json.dumps(s[key])[:40]}, the spec gives " \
                       f"{json.dumps(norm)[:40]}"
    return None
