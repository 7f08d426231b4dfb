"""A federated run's checkpoint: a `rankflow.checkpoint/v2` directory at a round boundary (or, when preempted, at a
client boundary inside a round), with the completion marker `complete.json` written last over every file, so the
orchestrator stores and restores it like any other checkpoint.

    manifest.json          format, step (= rounds done · local steps), spec identity, method, the round, the
                           partition sizes, every finished round's record (clients sampled, client loss, global
                           metrics, aggregation report), each client's data position, the clients already done in
                           the current round, the python/numpy RNG, sha256 + size of every other file
    adapter.safetensors    the global adapter broadcast after the last finished round (what `export` reads)
    server.safetensors     FLoRA-style merges accumulated into the frozen weights (`merge.<layer>`; reinit only)
    clients.safetensors    each client's torch RNG state and (client_state: keep) optimizer state
    uploads.safetensors    the uploads of the clients already done in the current round (preempted mid-round)
    state.safetensors      the process's torch RNG states and numpy keys
    complete.json          written last: sha256 + size of each file above
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from safetensors.torch import load_file, save_file

from ..checkpoint import capture_rng, optimizer_from_files, optimizer_to_files, restore_rng
from ..checkpoint_check import (COMPLETE, DAMAGED, FORMAT, MANIFEST, check_identity, file_entry, read_json_file,
                                read_marker, sha256_file)
from ..errors import CheckpointError
from ..methods.base import load_adapter_state_dict
from .clients import ClientState
from .server import join_uploads, split_uploads

FILES = ("adapter.safetensors", "server.safetensors", "clients.safetensors", "uploads.safetensors",
         "state.safetensors")


@dataclass
class ServerState:
    """Everything the server keeps between rounds."""

    round: int = 0  # rounds finished
    merges: Dict[str, torch.Tensor] = field(default_factory=dict)  # layer -> accumulated s·ΔW* (reinit)
    history: List[Dict[str, Any]] = field(default_factory=list)  # one record per finished round
    best_value: Optional[float] = None
    best_round: int = -1
    partial: Dict[int, Any] = field(default_factory=dict)  # client -> LocalResult of the current round


def _client_tensors(clients: Dict[int, ClientState]) -> tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    tensors: Dict[str, torch.Tensor] = {}
    js: Dict[str, Any] = {}
    for k, c in sorted(clients.items()):
        entry: Dict[str, Any] = {"epoch": c.epoch, "batch": c.batch, "rounds": c.rounds}
        if c.rng is not None:
            tensors[f"{k}/rng"] = c.rng
        if c.cuda_rng is not None:
            tensors[f"{k}/cuda_rng"] = c.cuda_rng
        if c.optimizer is not None:
            ojs, ot = optimizer_to_files(c.optimizer)
            entry["optimizer"] = ojs
            tensors.update({f"{k}/opt/{name}": t for name, t in ot.items()})
        js[str(k)] = entry
    return tensors, js


def _clients_from(tensors: Dict[str, torch.Tensor], js: Dict[str, Any]) -> Dict[int, ClientState]:
    out: Dict[int, ClientState] = {}
    for key, entry in js.items():
        k = int(key)
        opt = None
        if "optimizer" in entry:
            prefix = f"{k}/opt/"
            opt = optimizer_from_files(entry["optimizer"], {n[len(prefix):]: t for n, t in tensors.items()
                                                            if n.startswith(prefix)})
        out[k] = ClientState(rng=tensors.get(f"{k}/rng"), cuda_rng=tensors.get(f"{k}/cuda_rng"), epoch=entry["epoch"],
                             batch=entry["batch"], optimizer=opt, rounds=entry["rounds"])
    return out


def _save(path: str, name: str, tensors: Dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, os.path.join(path, name))


def save(path: str, *, step: int, spec_identity: Dict[str, Any], method, global_state: Dict[str, torch.Tensor],
         server: ServerState, clients: Dict[int, ClientState], facts: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Write the checkpoint atomically; returns the `checkpoint` event's file list."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".tmp-{os.path.basename(path)}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    ct, cjs = _client_tensors(clients)
    rng_js, rng_t = capture_rng()
    _save(tmp, "adapter.safetensors", global_state)
    _save(tmp, "server.safetensors", {f"merge.{k}": v for k, v in server.merges.items()})
    _save(tmp, "clients.safetensors", ct)
    _save(tmp, "uploads.safetensors", join_uploads({k: r.upload for k, r in server.partial.items()}))
    _save(tmp, "state.safetensors", rng_t)
    manifest = {"format": FORMAT, "procedure": "lora-fair", "step": step, "spec": spec_identity, "method": method.name,
                "adapter_shapes": {k: list(v.shape) for k, v in global_state.items()}, "round": server.round,
                "history": server.history, "best_value": server.best_value, "best_round": server.best_round,
                "clients": cjs, "partial": {str(k): {"loss": r.loss, "examples": r.examples}
                                            for k, r in server.partial.items()},
                "facts": facts, "rng": rng_js, "method_extra": method.extra_state()}
    with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
    marker = {"format": FORMAT, "step": step, "files": [file_entry(tmp, n) for n in FILES + (MANIFEST,)]}
    with open(os.path.join(tmp, COMPLETE), "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    files = marker["files"] + [file_entry(tmp, COMPLETE)]
    if os.path.exists(path):
        old = path + f".old-{os.getpid()}"
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return files


@dataclass
class Loaded:
    step: int
    server: ServerState
    clients: Dict[int, ClientState]
    global_state: Dict[str, torch.Tensor]


def load(path: str, *, spec_identity: Dict[str, Any], model, method, facts: Dict[str, Any]) -> Loaded:
    """Verify (every sha256, the procedure, the method, the spec identity, the partition) and load a federated
    checkpoint: the global adapter goes into the model, the process RNG is restored."""
    from .clients import LocalResult
    marker = read_marker(path, "--resume")
    recorded = {f["name"]: f for f in marker["files"]}
    for name in FILES + (MANIFEST,):
        want, p = recorded.get(name), os.path.join(path, name)
        intact = want is not None and os.path.isfile(p) and os.path.getsize(p) == want["bytes"]
        if not intact or sha256_file(p) != want["sha256"]:
            raise CheckpointError(f"--resume {p}: missing, or not the file {COMPLETE} records", hint=DAMAGED)
    manifest = read_json_file(os.path.join(path, MANIFEST), "--resume", MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("procedure") != "lora-fair" or manifest.get("format") != FORMAT:
        raise CheckpointError(f"--resume {path}: not a checkpoint of a federated (lora-fair) run",
                              hint="resume with the checkpoint of this run")
    check_identity(path, manifest, spec_identity, "--resume")
    if manifest.get("facts") != facts:
        raise CheckpointError(f"--resume {path}: the client partition differs from the checkpoint's",
                              hint="resume with the same dataset (size, seed) as the run that wrote it")
    global_state = load_file(os.path.join(path, "adapter.safetensors"))
    load_adapter_state_dict(model, global_state)
    method.load_extra_state(manifest.get("method_extra") or {})
    server_t = load_file(os.path.join(path, "server.safetensors"))
    uploads = split_uploads(load_file(os.path.join(path, "uploads.safetensors")))
    partial = {int(k): LocalResult(upload=uploads.get(int(k), {}), loss=v["loss"], examples=v["examples"])
               for k, v in manifest["partial"].items()}
    server = ServerState(round=manifest["round"], merges={k[len("merge."):]: v for k, v in server_t.items()},
                         history=manifest["history"], best_value=manifest["best_value"],
                         best_round=manifest["best_round"], partial=partial)
    clients = _clients_from(load_file(os.path.join(path, "clients.safetensors")), manifest["clients"])
    restore_rng(manifest["rng"], load_file(os.path.join(path, "state.safetensors")))
    return Loaded(step=int(manifest["step"]), server=server, clients=clients, global_state=global_state)
