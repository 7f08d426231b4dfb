"""From a run spec to an adapted model: resolve the model, build it (optionally on the meta device), apply
the method. Shared by `run`, `count` and the tests."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch
from torch import nn

from .errors import ConfigError
from .methods import get_method
from .methods.base import Method, Shape, adapt_model, head_numel, total_numel, trainable_numel
from .artifacts import Artifact
from .models import ModelInfo, build_model, model_info
from .spec import RunSpec


@dataclass
class Built:
    model: nn.Module
    method: Method
    info: ModelInfo
    shapes: List[Shape]
    formula: int
    trainable: int
    total: int
    #: Trainable parameters of the task head (part of `trainable`); None without a head.
    head: Optional[int] = None


def resolve_info(spec: RunSpec) -> ModelInfo:
    info = model_info(spec.model, spec.dataset["max_length"])
    if info.task != spec.model["task"]:
        raise ConfigError(f"model.task: {spec.model['name']} is a {info.task} model, not {spec.model['task']}",
                          hint=f'set model.task to "{info.task}"')
    reserve_positions(info, make_method(spec), explicit=spec.dataset["max_length"] is not None)
    return info


def reserve_positions(info: ModelInfo, method: Method, explicit: bool) -> None:
    """Leave room for positions the method prepends (soft prompts): without an explicit dataset.max_length the
    data's length becomes the model's limit minus them; an explicit one that does not fit is a config error."""
    extra = method.reserved_positions()
    if not extra or info.max_positions is None or info.max_length is None:
        return
    room = info.max_positions - extra
    if room < 1:
        raise ConfigError(f"method.options: {method.name}'s {extra} prompt positions leave no room for inputs in "
                          f"{info.name}'s {info.max_positions} positions", hint="use fewer virtual tokens")
    if info.max_length <= room:
        return
    if explicit:
        raise ConfigError(f"dataset.max_length: {info.max_length} inputs plus {method.name}'s {extra} prompt "
                          f"positions exceed {info.name}'s {info.max_positions} positions",
                          hint=f"set dataset.max_length to at most {room} (or use fewer virtual tokens)")
    info.max_length = room


def adapt_facts(spec: Optional[RunSpec], info: ModelInfo) -> dict:
    """What `adapt_model` passes to methods about the model and the run's inputs (see `AdaptContext`)."""
    return dict(task=info.task, max_length=info.max_length, max_positions=info.max_positions,
                pad_token_id=info.pad_token_id, tokenize=_tokenizer(spec, info) if info.task not in ("img-cls", "img-gen") else None)


def _tokenizer(spec: Optional[RunSpec], info: ModelInfo):
    """The run's text tokenizer as a function text -> ids (built on first use: only text-initialised prompts
    need it)."""
    kind = ((spec.dataset.get("options") or {}).get("tokenizer") if spec is not None else None)

    def tokenize(text: str) -> List[int]:
        from .data.tokenizer import make_tokenizer
        dm = data_model_info(info)
        tok = make_tokenizer(kind, int(info.vocab_size or 0), info.task, dm.tokenizer,
                             {"pad_id": dm.pad_id, "bos_id": dm.bos_id, "eos_id": dm.eos_id})
        return list(tok.encode(text))
    return tokenize


def data_model_info(info: ModelInfo):
    """The data package's view of the model (vocab, lengths, image size, special ids, tokenizer)."""
    from .data import ModelInfo as DataModelInfo
    kw = dict(task=info.task)
    if info.vocab_size is not None:
        kw["vocab_size"] = info.vocab_size
    if info.max_length is not None:
        kw["max_length"] = info.max_length
    if info.image_size is not None:
        kw["image_size"] = info.image_size
    if info.channels is not None:
        kw["channels"] = info.channels
    for ours, theirs in (("pad_token_id", "pad_id"), ("bos_token_id", "bos_id"), ("eos_token_id", "eos_id")):
        if getattr(info, ours) is not None:
            kw[theirs] = getattr(info, ours)
    if info.tokenizer_path:
        kw["tokenizer"] = info.tokenizer_path
    if info.image_mean is not None:
        kw["image_mean"], kw["image_std"] = list(info.image_mean), list(info.image_std)
    kw["trust_remote_code"] = bool(info.extra.get("trust_remote_code"))
    return DataModelInfo(**kw)


def make_method(spec: RunSpec) -> Method:
    cls = get_method(spec.method["name"])
    rank = spec.method["rank"]
    if cls.needs_rank and rank is None:
        raise ConfigError(f"method.rank: {cls.name} needs a rank", hint="set method.rank, e.g. 8")
    return cls(rank if cls.needs_rank else None, spec.method["options"], spec.seed)


def build(spec: RunSpec, info: ModelInfo, num_labels: Optional[int], device: Any = "cpu",
          base: Optional[Artifact] = None, method: Optional[Method] = None) -> Built:
    """Build the adapted model. `device="meta"` gives shapes only (no memory, no numeric init). The model
    weights come from `spec.seed` so that every process of a run starts from the same backbone, or, with
    `base` (a verified `model` artifact of an upstream run), from that artifact (`structures.rebuild_model`).
    `method` replaces the spec's method object (procedures that configure it, e.g. with calibration data)."""
    method = method or make_method(spec)
    torch.manual_seed(spec.seed)
    if base is not None:
        from .structures import rebuild_model
        model = rebuild_model(spec, info, num_labels, base)
        torch.manual_seed(spec.seed)  # the method's initialisation draws the same numbers with or without base
    elif str(device) == "meta":
        with torch.device("meta"):
            model = build_model(spec.model, info, num_labels, weights=False)
    else:
        model = build_model(spec.model, info, num_labels)
    targets = spec.method["targets"] or list(method.default_targets or ()) or info.default_targets
    if base is not None:
        from .structures import expand_targets
        targets = expand_targets(model, targets)
    shapes, formula = adapt_model(model, method, targets, info.head_name, spec.training["train_head"],
                                  **adapt_facts(spec, info))
    if torch.device(device).type == "cuda" and spec.training["precision"] in ("bf16", "fp16"):
        # Mixed precision on the GPU: the frozen backbone is stored in half precision (autocast runs the
        # matmuls in it anyway); trainable parameters and method buffers stay fp32.
        half = torch.bfloat16 if spec.training["precision"] == "bf16" else torch.float16
        for p in model.parameters():
            if not p.requires_grad and p.is_floating_point():
                p.data = p.data.to(half)
    if str(device) != "meta":
        model.to(device)
    return Built(model, method, info, shapes, formula, trainable_numel(model), total_numel(model),
                 head_numel(model, info.head_name))


def num_labels_for(spec: RunSpec, info: ModelInfo, seed: int) -> Tuple[Optional[int], Any]:
    """(num_labels, task_data or None). Uses the data package's cheap lookup when it has one, else loads."""
    if info.task in ("causal-lm", "img-gen"):
        return None, None
    from . import data
    cheap = getattr(data, "num_labels_for", None)
    if cheap is not None:
        n = cheap(dict(spec.dataset))
        if n:
            return int(n), None
    td = data.load_task_data(dict(spec.dataset), data_model_info(info), seed)
    return td.num_labels, td


# The most parameters a spec may make (4 TB in fp32, beyond any model rankflow trains): a rank of 1e12 or a
# `model.config.hidden_size` of 1e8 builds on the meta device but no allocator can hold it.
MAX_PARAMS = 10**12


def check_size(spec: RunSpec, b: Built) -> None:
    """Refuse (ConfigError) a spec whose model would have more than MAX_PARAMS parameters, naming the rank
    (with the widest adapted layer, the dimension a rank is measured against) or the model config."""
    if b.total <= MAX_PARAMS:
        return
    widest = max((max(s) for s in b.shapes), default=0)
    rank = spec.method.get("rank")
    if rank is not None and b.trainable > MAX_PARAMS and rank > widest:
        raise ConfigError(
            f"method.rank: {spec.method['name']} at rank {rank} makes {b.trainable:.3g} trainable parameters "
            f"(at most {MAX_PARAMS:.0e}); the adapted layers are at most {widest} wide",
            hint=f"use a rank of at most {widest}")
    raise ConfigError(
        f"model.config: the model would have {b.total:.3g} parameters (at most {MAX_PARAMS:.0e})",
        hint="check model.config (hidden_size, intermediate_size, num_hidden_layers, vocab_size) and method.rank")


def count(spec: RunSpec) -> dict:
    """Trainable / total parameters on the meta device. `exact` is False when the method chooses its ranks from
    the weights' values (LoRD's energy / ratio rules): the count is then an estimate (at the rank cap) and only
    the trained model knows its number, which the run's `started` / `done` events and its result record carry."""
    info = resolve_info(spec)
    n, _ = num_labels_for(spec, info, spec.seed)
    b = build(spec, info, n, device="meta")
    check_size(spec, b)
    final = b.method.final_count(b.shapes)
    final = b.trainable if final is None else b.trainable - b.method.count(b.shapes) + final
    out = {"trainable": b.trainable, "total": b.total, "formula": b.formula, "final": final,
           "exact": bool(b.method.count_is_exact)}
    if b.head is not None:
        out["head"] = b.head
    return out
