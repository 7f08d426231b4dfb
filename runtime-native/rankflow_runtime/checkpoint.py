"""Checkpoints: only what is trained, plus everything needed to resume bit for bit.

A checkpoint is a directory::

    manifest.json        format, step, spec (identity), method, adapter shapes, optimizer/scheduler structure,
                         RNG states (python, numpy), data position, trainer state, method extra state,
                         and the sha256 + size of every other file
    adapter.safetensors  trainable parameters + persistent adapter buffers (never the frozen backbone)
    optimizer.safetensors  optimizer state tensors (exp_avg, exp_avg_sq, step, ...)
    state.safetensors    torch CPU/CUDA RNG states, numpy's MT state, the sampler order of the current epoch

It is written into a temporary sibling directory which is then renamed into place, so a reader never sees a
half-written checkpoint. `load_checkpoint` verifies every checksum and that the checkpoint belongs to this
run (same spec identity, method and shapes) before anything is loaded; otherwise it raises ConfigError.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import ConfigError
from .methods.base import adapter_state_dict, load_adapter_state_dict
from .optim import restore_added_groups

FORMAT = "rankflow.checkpoint/v1"
MANIFEST = "manifest.json"
# Spec fields that may differ between the writer and the resumer (machine-specific, not the experiment).
RESUME_MAY_DIFFER = {("dataset", "data_root"), ("device",)}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _comparable_spec(identity: Dict[str, Any]) -> Dict[str, Any]:
    spec = json.loads(json.dumps(identity))
    for path in RESUME_MAY_DIFFER:
        node = spec
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return spec


def _diff_fields(a: Any, b: Any, prefix: str = "") -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: List[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff_fields(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


# ---------------------------------------------------------------------------------------------------------
# RNG and optimizer (de)serialisation
# ---------------------------------------------------------------------------------------------------------


def capture_rng() -> tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(JSON part, tensor part) of every RNG the training touches."""
    py = random.getstate()
    npst = np.random.get_state()
    js = {"python": [py[0], list(py[1]), py[2]], "numpy": [npst[0], int(npst[2]), int(npst[3]), float(npst[4])],
          "cuda_devices": 0}
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy_keys": torch.from_numpy(np.asarray(npst[1], dtype=np.int64))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states = torch.cuda.get_rng_state_all()
        js["cuda_devices"] = len(states)
        for i, s in enumerate(states):
            tensors[f"rng.cuda.{i}"] = s
    return js, tensors


def restore_rng(js: Dict[str, Any], tensors: Dict[str, torch.Tensor]) -> None:
    v, state, gauss = js["python"]
    random.setstate((v, tuple(state), gauss))
    name, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((name, tensors["rng.numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    n = int(js.get("cuda_devices", 0))
    if n and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[f"rng.cuda.{i}"] for i in range(min(n, torch.cuda.device_count()))])


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return repr(v)


def optimizer_to_files(sd: Dict[str, Any]) -> tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    tensors: Dict[str, torch.Tensor] = {}
    scalars: Dict[str, Dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[k] = _jsonable(v)
    return {"param_groups": _jsonable(sd["param_groups"]), "scalars": scalars}, tensors


def optimizer_from_files(js: Dict[str, Any], tensors: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    state: Dict[int, Dict[str, Any]] = {}
    for key, t in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = t
    for idx, kv in js.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(kv)
    groups = []
    for g in js["param_groups"]:
        g = dict(g)
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    step: int
    manifest: Dict[str, Any]
    state_tensors: Dict[str, torch.Tensor]


def save_checkpoint(path: str, *, step: int, spec_identity: Dict[str, Any], model: torch.nn.Module, method,
                    optimizer: torch.optim.Optimizer, scheduler, trainer: Dict[str, Any],
                    data_order: Optional[torch.Tensor] = None, scaler=None) -> List[Dict[str, Any]]:
    """Write a checkpoint atomically to `path`; returns the file list of the checkpoint event."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".tmp-{os.path.basename(path)}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    adapter = {k: v.detach().cpu().contiguous().clone() for k, v in adapter_state_dict(model).items()}
    save_file(adapter, os.path.join(tmp, "adapter.safetensors"))
    opt_js, opt_t = optimizer_to_files(optimizer.state_dict())
    save_file(opt_t, os.path.join(tmp, "optimizer.safetensors"))
    rng_js, state_t = capture_rng()
    if data_order is not None:
        state_t["data.order"] = data_order.to(torch.int64).contiguous()
    save_file({k: v.contiguous() for k, v in state_t.items()}, os.path.join(tmp, "state.safetensors"))
    files = []
    for name in ("adapter.safetensors", "optimizer.safetensors", "state.safetensors"):
        p = os.path.join(tmp, name)
        files.append({"name": name, "sha256": sha256_file(p), "bytes": os.path.getsize(p)})
    manifest = {
        "format": FORMAT,
        "step": step,
        "spec": spec_identity,
        "method": method.name,
        "adapter_shapes": {k: list(v.shape) for k, v in adapter.items()},
        "optimizer": opt_js,
        "scheduler": _jsonable(scheduler.state_dict()) if scheduler is not None else None,
        "scaler": _jsonable(scaler.state_dict()) if scaler is not None else None,
        "rng": rng_js,
        "trainer": trainer,
        "method_extra": method.extra_state(),
        "files": files,
    }
    with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
    mp = os.path.join(tmp, MANIFEST)
    files = files + [{"name": MANIFEST, "sha256": sha256_file(mp), "bytes": os.path.getsize(mp)}]
    if os.path.exists(path):  # replace an older checkpoint of the same name
        old = path + f".old-{os.getpid()}"
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return files


def read_manifest(path: str, flag: str = "--resume") -> Dict[str, Any]:
    mp = os.path.join(path, MANIFEST)
    if not os.path.isdir(path):
        raise ConfigError(f"{flag} {path}: not a directory", hint="pass a checkpoint directory (it holds manifest.json)")
    if not os.path.exists(mp):
        raise ConfigError(f"{flag} {path}: no {MANIFEST}", hint="pass a checkpoint directory written by rankflow")
    try:
        with open(mp, encoding="utf-8") as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{mp}: corrupt manifest ({e})", hint="the checkpoint is damaged; resume from an older one") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigError(f"{mp}: not a {FORMAT} manifest", hint="pass a checkpoint directory written by rankflow")
    return manifest


def verify_files(path: str, manifest: Dict[str, Any]) -> None:
    for f in manifest.get("files", []):
        p = os.path.join(path, f["name"])
        if not os.path.exists(p):
            raise ConfigError(f"{p}: missing checkpoint file", hint="the checkpoint is incomplete; resume from an older one")
        got = sha256_file(p)
        if got != f["sha256"] or os.path.getsize(p) != f["bytes"]:
            raise ConfigError(f"{p}: sha256 mismatch (manifest {f['sha256'][:12]}..., file {got[:12]}...)",
                              hint="the checkpoint is corrupt; resume from an older one")


def load_trained_state(path: str, *, spec_identity: Dict[str, Any], model: torch.nn.Module, method,
                       flag: str = "--resume") -> Dict[str, Any]:
    """Verify a checkpoint (every sha256, the method, the spec identity) and load only what was trained (the
    adapter tensors and the method's extra state) into the model; returns the manifest. Read-only: the
    optimizer, scheduler and RNG files are checked but not used (export, evaluation). `flag` names the
    command-line option in error messages."""
    manifest = read_manifest(path, flag)
    verify_files(path, manifest)
    if manifest.get("method") != method.name:
        raise ConfigError(f"{flag} {path}: written by method {manifest.get('method')!r}, this run uses {method.name!r}",
                          hint="resume a checkpoint of the same run" if flag == "--resume" else "pass a checkpoint of this run")
    want, got = _comparable_spec(spec_identity), _comparable_spec(manifest.get("spec", {}))
    if _canonical(want) != _canonical(got):
        diff = _diff_fields(got, want)
        raise ConfigError(f"{flag} {path}: written by a different run spec (differs in {', '.join(diff[:4])})",
                          hint="resume with the spec that wrote the checkpoint, or start without --resume"
                          if flag == "--resume" else "pass the spec of the run that wrote the checkpoint")
    adapter = load_file(os.path.join(path, "adapter.safetensors"))
    method.load_extra_state(manifest.get("method_extra") or {})
    method.prepare_load(model, adapter)
    load_adapter_state_dict(model, adapter)
    return manifest


def load_checkpoint(path: str, *, spec_identity: Dict[str, Any], model: torch.nn.Module, method,
                    optimizer: torch.optim.Optimizer, scheduler, scaler=None) -> Loaded:
    """Verify and load a checkpoint into the model/optimizer/scheduler and restore the RNG states. Order: the
    method's extra state, `prepare_load` (shapes of tensors grown during training), the adapter tensors, the
    optimizer groups added during training, the optimizer state, the schedule (per-group state is in the
    optimizer's groups), the grad scaler, the RNGs."""
    manifest = load_trained_state(path, spec_identity=spec_identity, model=model, method=method)
    opt_t = load_file(os.path.join(path, "optimizer.safetensors"))
    # Groups added during training (rank growth): the method has re-created their tensors in prepare_load;
    # give them back to the optimizer, in order, before its state is loaded.
    restore_added_groups(optimizer, model, manifest["optimizer"]["param_groups"], path)
    try:
        optimizer.load_state_dict(optimizer_from_files(manifest["optimizer"], opt_t))
    except (ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"--resume {path}: optimizer state does not match this run ({e})",
                          hint="resume with the same method, targets and training settings") from None
    if scheduler is not None and manifest.get("scheduler") is not None:
        scheduler.load_state_dict(manifest["scheduler"])
    if scaler is not None and manifest.get("scaler"):
        scaler.load_state_dict(manifest["scaler"])
    state_t = load_file(os.path.join(path, "state.safetensors"))
    restore_rng(manifest["rng"], state_t)
    return Loaded(step=int(manifest["step"]), manifest=manifest, state_tensors=state_t)
