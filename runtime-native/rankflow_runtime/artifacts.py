"""Named artifacts a run writes for later runs (a model, an adapter) and reads from earlier ones.

An artifact is a directory::

    model-00001-of-00003.safetensors ...   tensors, sharded above `shard_bytes` (one file when they fit)
    <extra>.safetensors                    optional named tensor files (e.g. LoRAM's kept-index map)
    manifest.json                          format, name, kind, the producing run's id and spec identity, the
                                           tensor -> file map, kind-specific `meta` (the model spec, the
                                           structure transforms to rebuild it, metrics)
    complete.json                          the completion marker, written last: sha256 + size of every file
                                           above, the manifest's own included

Like a checkpoint it is written into a temporary sibling directory and renamed into place, so a reader never
sees half an artifact (as checkpoints do, `checkpoint.py`). `open_artifact` verifies the marker, every file's
size and sha256 (the manifest's too), that the marker covers every tensor file the manifest names, the kind and the
producing run before anything is loaded; any problem is a one-line `data` error (missing or damaged files) or
`config` error (the wrong artifact), never a stack trace. On the command line a run receives its inputs as
`--input NAME=DIR`; the run spec's `inputs` says which upstream run and artifact each name must come from.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .checkpoint import sha256_file
from .errors import ConfigError, DataError

FORMAT = "rankflow.artifact/v1"
MANIFEST = "manifest.json"
COMPLETE = "complete.json"
KINDS = ("model", "adapter")
DEFAULT_SHARD_BYTES = 2 * 1024**3  # 2 GiB per safetensors shard (RANKFLOW_ARTIFACT_SHARD_MB overrides)


def shard_bytes_default() -> int:
    mb = os.environ.get("RANKFLOW_ARTIFACT_SHARD_MB")
    if mb:
        try:
            return max(1, int(float(mb) * 1024**2))
        except ValueError:
            raise ConfigError(f"RANKFLOW_ARTIFACT_SHARD_MB={mb!r} is not a number",
                              hint="set it to the shard size in MiB, e.g. 2048") from None
    return DEFAULT_SHARD_BYTES


@dataclass
class Artifact:
    """A verified artifact on disk."""

    path: str
    manifest: Dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def meta(self) -> Dict[str, Any]:
        return self.manifest.get("meta") or {}

    @property
    def run_id(self) -> Optional[str]:
        return self.manifest.get("run_id")

    def tensors(self) -> Dict[str, torch.Tensor]:
        """Every tensor of the main state (all shards), on the CPU."""
        out: Dict[str, torch.Tensor] = {}
        for f in self.manifest["shards"]:
            out.update(_load(os.path.join(self.path, f)))
        return out

    def extra(self, name: str) -> Dict[str, torch.Tensor]:
        """A named extra tensor file (`extras` given to `write_artifact`)."""
        files = self.manifest.get("extras") or {}
        if name not in files:
            raise ConfigError(f"artifact {self.path}: has no {name!r} tensors (it has {sorted(files) or 'none'})",
                              hint="pass an artifact written by the procedure this run expects")
        return _load(os.path.join(self.path, files[name]))


def _load(path: str) -> Dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:  # verified already; only a race with a deleter gets here
        raise DataError(f"{path}: unreadable safetensors file ({e})", hint="re-create the artifact") from None


def _shards(tensors: Dict[str, torch.Tensor], limit: int) -> List[List[str]]:
    """Tensor names packed in order into shards of at most `limit` bytes (a larger tensor gets its own)."""
    shards: List[List[str]] = [[]]
    size = 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    return shards


def write_artifact(root: str, name: str, kind: str, tensors: Dict[str, torch.Tensor], *,
                   spec_identity: Dict[str, Any], run_id: Optional[str] = None, meta: Optional[Dict[str, Any]] = None,
                   extras: Optional[Dict[str, Dict[str, torch.Tensor]]] = None,
                   shard_bytes: Optional[int] = None) -> Dict[str, Any]:
    """Write artifact `name` under `root/name` atomically; returns the `artifact` event's fields (name, kind,
    path, files with sha256 and size, manifest last)."""
    if kind not in KINDS:
        raise ValueError(f"artifact kind {kind!r} is not one of {KINDS}")
    limit = int(shard_bytes or shard_bytes_default())
    path = os.path.join(root, name)
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f".tmp-{name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    cpu = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    groups = _shards(cpu, limit)
    shard_names = ([f"{kind}.safetensors"] if len(groups) == 1 else
                   [f"{kind}-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))])
    weight_map: Dict[str, str] = {}
    for fname, keys in zip(shard_names, groups):
        save_file({k: cpu[k] for k in keys}, os.path.join(tmp, fname))
        weight_map.update({k: fname for k in keys})
    extra_files: Dict[str, str] = {}
    for ename, etensors in (extras or {}).items():
        fname = f"{ename}.safetensors"
        save_file({k: v.detach().cpu().contiguous() for k, v in etensors.items()}, os.path.join(tmp, fname))
        extra_files[ename] = fname
    manifest = {"format": FORMAT, "name": name, "kind": kind, "run_id": run_id, "spec": spec_identity,
                "shards": shard_names, "weight_map": weight_map, "extras": extra_files,
                "shapes": {k: list(v.shape) for k, v in cpu.items()},
                "dtypes": {k: str(v.dtype).replace("torch.", "") for k, v in cpu.items()},
                "meta": meta or {}}
    _write_json(os.path.join(tmp, MANIFEST), manifest)
    files = [_entry(tmp, f) for f in shard_names + list(extra_files.values()) + [MANIFEST]]
    _write_json(os.path.join(tmp, COMPLETE), {"format": FORMAT, "name": name, "files": files})
    files.append(_entry(tmp, COMPLETE))
    if os.path.exists(path):
        old = path + f".old-{os.getpid()}"
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return {"name": name, "kind": kind, "path": os.path.abspath(path), "files": files}


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())


def _entry(root: str, name: str) -> Dict[str, Any]:
    p = os.path.join(root, name)
    return {"name": name, "sha256": sha256_file(p), "bytes": os.path.getsize(p)}


def _read_json(path: str, flag: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{flag}: {path} is corrupt ({e})", hint="the artifact is damaged; re-run the run that wrote it") from None


def open_artifact(path: str, *, flag: str, kind: Optional[str] = None, run_id: Optional[str] = None,
                  artifact: Optional[str] = None) -> Artifact:
    """Verify the artifact at `path` (marker, every file's size and sha256, the manifest) and, when given, that it is of
    `kind`, named `artifact` and written by run `run_id`. `flag` names the command-line option in messages."""
    if not os.path.isdir(path):
        raise DataError(f"{flag}: {path} is not a directory", hint="pass the folder of an artifact (it holds complete.json)")
    cp = os.path.join(path, COMPLETE)
    if not os.path.exists(cp):
        raise DataError(f"{flag}: {path} has no {COMPLETE} (an incomplete or foreign artifact)",
                        hint="pass a complete artifact written by a rankflow run")
    marker = _read_json(cp, flag)
    if not isinstance(marker, dict) or marker.get("format") != FORMAT or not isinstance(marker.get("files"), list):
        raise ConfigError(f"{flag}: {cp} is not a {FORMAT} marker", hint="pass an artifact written by a rankflow run")
    _verify_files(path, marker["files"], flag)
    listed = {f["name"] for f in marker["files"]}
    if MANIFEST not in listed:
        raise DataError(f"{flag}: {cp} does not cover {MANIFEST}", hint="the artifact is damaged")
    manifest = _read_json(os.path.join(path, MANIFEST), flag)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigError(f"{flag}: {path}/{MANIFEST} is not a {FORMAT} manifest",
                          hint="pass an artifact written by a rankflow run")
    needed = set(manifest.get("shards") or []) | set((manifest.get("extras") or {}).values())
    if not needed or not needed <= listed:
        raise DataError(f"{flag}: {cp} does not cover every tensor file of the manifest", hint="the artifact is damaged")
    if kind is not None and manifest.get("kind") != kind:
        raise ConfigError(f"{flag}: {path} is a {manifest.get('kind')!r} artifact, this run needs a {kind!r} one",
                          hint="pass the artifact the run spec's inputs name")
    if artifact is not None and manifest.get("name") != artifact:
        raise ConfigError(f"{flag}: {path} is artifact {manifest.get('name')!r}, the run spec names {artifact!r}",
                          hint="pass the artifact the run spec's inputs name")
    if run_id is not None and manifest.get("run_id") != run_id:
        raise ConfigError(f"{flag}: {path} was written by run {manifest.get('run_id')!r}, the run spec names {run_id!r}",
                          hint="pass the artifact of the upstream run the spec names")
    return Artifact(path=path, manifest=manifest)


def _verify_files(path: str, files: List[Dict[str, Any]], flag: str) -> None:
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or "/" in f["name"] or f["name"] in ("", ".."):
            raise DataError(f"{flag}: {path}/{COMPLETE} has a malformed file entry", hint="the artifact is damaged")
        p = os.path.join(path, f["name"])
        if not os.path.exists(p):
            raise DataError(f"{flag}: {p} is missing", hint="the artifact is incomplete; re-run the run that wrote it")
        if os.path.getsize(p) != f["bytes"]:
            raise DataError(f"{flag}: {p} has {os.path.getsize(p)} bytes, the marker says {f['bytes']}",
                            hint="the artifact is damaged; re-run the run that wrote it")
        got = sha256_file(p)
        if got != f["sha256"]:
            raise DataError(f"{flag}: {p} sha256 mismatch (marker {f['sha256'][:12]}..., file {got[:12]}...)",
                            hint="the artifact is corrupt; re-run the run that wrote it")


def parse_input_flags(values: Sequence[str]) -> Dict[str, str]:
    """`--input NAME=DIR` values -> {NAME: DIR}; a malformed or repeated name is a config error."""
    out: Dict[str, str] = {}
    for v in values or []:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"command line: --input {v!r} is not NAME=DIR", hint="write --input model=/path/to/artifact")
        if name in out:
            raise ConfigError(f"command line: --input {name} given twice", hint="give each input once")
        out[name] = path
    return out


def open_inputs(spec_inputs: Dict[str, Dict[str, Any]], paths: Dict[str, str],
                kinds: Optional[Dict[str, str]] = None) -> Dict[str, Artifact]:
    """Verify the `--input` artifacts against the run spec's `inputs` (same names; each one written by the
    upstream run and named as the spec says; of the kind the procedure declares)."""
    kinds = kinds or {}
    missing = sorted(set(spec_inputs) - set(paths))
    if missing:
        ref = spec_inputs[missing[0]]
        raise ConfigError(f"command line: the run spec's input {missing[0]!r} (artifact {ref['artifact']!r} of "
                          f"{ref['run']}) was not given", hint=f"pass --input {missing[0]}=DIR")
    extra = sorted(set(paths) - set(spec_inputs))
    if extra:
        raise ConfigError(f"command line: --input {extra[0]} is not an input of this run spec "
                          f"(inputs: {', '.join(sorted(spec_inputs)) or 'none'})", hint=f"remove --input {extra[0]}")
    return {name: open_artifact(paths[name], flag=f"--input {name}", kind=kinds.get(name), run_id=ref["run"],
                                artifact=ref["artifact"])
            for name, ref in spec_inputs.items()}
