"""Checkpoints: only what is trained, plus everything needed to resume bit for bit.

A checkpoint is a directory::

    manifest.json          format, step, spec (identity), method, adapter shapes, optimizer/scheduler structure,
                           RNG states (python, numpy), data position, trainer state, method extra state
    adapter.safetensors    trainable parameters + persistent adapter buffers (never the frozen backbone)
    optimizer.safetensors  optimizer state tensors (exp_avg, exp_avg_sq, step, ...)
    state.safetensors      torch CPU/CUDA RNG states, numpy's MT state, the sampler order of the current epoch
    complete.json          the completion marker, written last: sha256 + size of each file above

It is written into a temporary sibling directory which is then renamed into place, so a reader never sees a
half-written checkpoint. Before anything is loaded, `checkpoint_check.verify_checkpoint` checks the marker, every
digest (of the files the format requires, not of those a file lists), the manifest's structure and that the
checkpoint belongs to this run; loading then checks shapes, the optimizer's groups and hyperparameters and the
RNG states. Every refusal is a CheckpointError (kind `checkpoint`, exit 2).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .checkpoint_check import (COMPLETE, DAMAGED, FORMAT, MANIFEST, REQUIRED_FILES, file_entry, optimizer_mismatch,
                               sha256_file, verify_checkpoint, write_marker)
from .errors import CheckpointError, ConfigError
from .methods.base import adapter_state_dict, load_adapter_state_dict
from .optim import restore_added_groups

__all__ = ["FORMAT", "MANIFEST", "COMPLETE", "REQUIRED_FILES", "sha256_file", "verify_checkpoint", "save_checkpoint",
           "load_checkpoint", "load_trained_state", "Loaded"]

# What a damaged file or a state that does not fit the model raises while it is loaded.
LOAD_ERRORS = (SafetensorError, ValueError, KeyError, TypeError, IndexError, RuntimeError, OverflowError)


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
    """Write a checkpoint atomically to `path`; returns the file list of the checkpoint event (every file, the
    completion marker last)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".tmp-{os.path.basename(path)}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        adapter = {k: v.detach().cpu().contiguous().clone() for k, v in adapter_state_dict(model).items()}
        save_file(adapter, os.path.join(tmp, "adapter.safetensors"))
        opt_js, opt_t = optimizer_to_files(optimizer.state_dict())
        save_file(opt_t, os.path.join(tmp, "optimizer.safetensors"))
        rng_js, state_t = capture_rng()
        if data_order is not None:
            state_t["data.order"] = data_order.to(torch.int64).contiguous()
        save_file({k: v.contiguous() for k, v in state_t.items()}, os.path.join(tmp, "state.safetensors"))
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
        }
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        marker = write_marker(tmp, step)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk, a signal: no half-written sibling stays behind
        raise
    files = marker["files"] + [file_entry(tmp, COMPLETE)]
    if os.path.exists(path):  # replace an older checkpoint of the same name
        old = path + f".old-{os.getpid()}"
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return files


def _refuse(path: str, flag: str, what: str, e: BaseException) -> CheckpointError:
    msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return CheckpointError(f"{flag} {path}: {what} ({msg})", hint=DAMAGED)


def _load_tensors(path: str, name: str, flag: str) -> Dict[str, torch.Tensor]:
    try:
        return load_file(os.path.join(path, name))
    except LOAD_ERRORS as e:
        raise _refuse(os.path.join(path, name), flag, "not a readable safetensors file", e) from None


def _load_adapter(path: str, manifest: Dict[str, Any], model: torch.nn.Module, method, flag: str) -> None:
    adapter = _load_tensors(path, "adapter.safetensors", flag)
    shapes = {k: list(v.shape) for k, v in adapter.items()}
    if shapes != manifest["adapter_shapes"]:
        raise CheckpointError(f"{flag} {path}: adapter.safetensors does not hold the tensors the manifest lists",
                              hint=DAMAGED)
    try:
        method.load_extra_state(manifest.get("method_extra") or {})
        method.prepare_load(model, adapter)
        load_adapter_state_dict(model, adapter)
    except ConfigError as e:
        raise CheckpointError(e.message, hint=e.hint) from None
    except LOAD_ERRORS as e:
        raise _refuse(path, flag, "the adapter does not fit this run's model", e) from None


def load_trained_state(path: str, *, spec_identity: Dict[str, Any], model: torch.nn.Module, method,
                       flag: str = "--resume", manifest: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Verify a checkpoint (`verify_checkpoint`, unless its `manifest` was verified already) and load only what
    was trained (the adapter tensors and the method's extra state) into the model; returns the manifest.
    Read-only: the optimizer, scheduler and RNG files are checked but not used (export, evaluation). `flag`
    names the command-line option in error messages."""
    if manifest is None:
        manifest = verify_checkpoint(path, spec_identity=spec_identity, flag=flag)
    _load_adapter(path, manifest, model, method, flag)
    return manifest


def _load_optimizer(path: str, manifest: Dict[str, Any], optimizer: torch.optim.Optimizer, model, flag: str) -> None:
    opt_t = _load_tensors(path, "optimizer.safetensors", flag)
    saved_groups = manifest["optimizer"]["param_groups"]
    bad = optimizer_mismatch(saved_groups, optimizer.param_groups)
    if bad:
        raise CheckpointError(f"{flag} {path}: the optimizer state contradicts the run spec: {bad}", hint=DAMAGED)
    try:
        # Groups added during training (rank growth): the method has re-created their tensors in prepare_load;
        # give them back to the optimizer, in order, before its state is loaded.
        restore_added_groups(optimizer, model, saved_groups, path)
        optimizer.load_state_dict(optimizer_from_files(manifest["optimizer"], opt_t))
    except ConfigError as e:
        raise CheckpointError(e.message, hint=e.hint) from None
    except LOAD_ERRORS as e:
        raise CheckpointError(f"{flag} {path}: optimizer state does not match this run ({str(e)[:200]})",
                              hint="resume with the same method, targets and training settings") from None
    bad = _incomplete_state(optimizer)
    if bad:
        raise CheckpointError(f"{flag} {path}: optimizer.safetensors: {bad}", hint=DAMAGED)


def _incomplete_state(optimizer: torch.optim.Optimizer) -> Optional[str]:
    """Every parameter that has optimizer state has the same entries, and each non-scalar entry has the
    parameter's shape (a missing or reshaped moment would fail, or silently mislead, the next step)."""
    keys = None
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st:
                continue
            if keys is None:
                keys = set(st)
            if set(st) != keys:
                return f"a parameter's state has {sorted(st)}, others have {sorted(keys)}"
            for k, v in st.items():
                if torch.is_tensor(v) and v.numel() > 1 and tuple(v.shape) != tuple(p.shape):
                    return f"state {k} has shape {tuple(v.shape)}, its parameter {tuple(p.shape)}"
    return None


def load_checkpoint(path: str, *, spec_identity: Dict[str, Any], model: torch.nn.Module, method,
                    optimizer: torch.optim.Optimizer, scheduler, scaler=None,
                    manifest: Optional[Dict[str, Any]] = None) -> Loaded:
    """Verify and load a checkpoint into the model/optimizer/scheduler and restore the RNG states. Order: the
    method's extra state, `prepare_load` (shapes of tensors grown during training), the adapter tensors, the
    optimizer groups added during training, the optimizer state, the schedule (per-group state is in the
    optimizer's groups), the grad scaler, the RNGs. `manifest`: the result of an earlier `verify_checkpoint`."""
    flag = "--resume"
    manifest = load_trained_state(path, spec_identity=spec_identity, model=model, method=method, manifest=manifest)
    _load_optimizer(path, manifest, optimizer, model, flag)
    state_t = _load_tensors(path, "state.safetensors", flag)
    try:
        if scheduler is not None and manifest.get("scheduler") is not None:
            scheduler.load_state_dict(manifest["scheduler"])
        if scaler is not None and manifest.get("scaler"):
            scaler.load_state_dict(manifest["scaler"])
        restore_rng(manifest["rng"], state_t)
    except LOAD_ERRORS as e:
        raise _refuse(path, flag, "the schedule or RNG state cannot be restored", e) from None
    return Loaded(step=int(manifest["step"]), manifest=manifest, state_tensors=state_t)
