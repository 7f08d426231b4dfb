"""Model artifacts: a model whose architecture a procedure changed (factored by LoRD, pruned by LoRAM) or whose
weights it trained (pretraining, fine-tuning), saved so that a later run rebuilds exactly that model.

A `model` artifact holds the plain state dict of the model (every parameter and persistent buffer, no adapter
wrappers: methods are merged or folded first) and, in its manifest `meta`:

* `model`: the base architecture, as the run spec's `model` section (name, source, task, config);
* `seed`: the seed its backbone was first built with (random-init built-ins rebuild from it);
* `num_labels`, `head_name`: the task head it was saved with;
* `structure`: the transforms that turn the base architecture into this one, in order (`[{kind: factored,
  ...}, {kind: pruned, ...}]`); each kind is a function registered here with `@structure(kind)` by the file of
  the procedure that introduces it (`procedures/compress.py`, `procedures/prune.py`).

`rebuild_model` builds the base architecture (random weights; nothing is downloaded or loaded), applies the
transforms, then loads the artifact's tensors. A downstream run whose task head differs (another dataset,
another number of labels) keeps its fresh head and drops the artifact's; every other tensor must match by name
and shape, otherwise the artifact is refused before anything runs.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from .artifacts import Artifact
from .errors import ConfigError
from .methods.base import SHARED_ATTR, AdaptedLinear

STRUCTURES: Dict[str, Callable[[nn.Module, Dict[str, Any], Artifact], None]] = {}
ARCH_FIELDS = ("name", "source", "config")


def structure(kind: str):
    """Decorator: register the transform `fn(model, entry, artifact)` that applies one `structure` entry."""
    def deco(fn):
        if kind in STRUCTURES and STRUCTURES[kind] is not fn:
            raise TypeError(f"structure kind {kind!r} registered twice")
        STRUCTURES[kind] = fn
        return fn
    return deco


def _discover() -> None:
    from .procedures import procedures
    procedures()


def check_architecture(spec_model: Dict[str, Any], art: Artifact, flag: str) -> None:
    """The run spec's model must be the architecture the artifact was built from."""
    theirs = art.meta.get("model") or {}
    for f in ARCH_FIELDS:
        if spec_model.get(f) != theirs.get(f):
            raise ConfigError(f"{flag}: the artifact's model.{f} is {theirs.get(f)!r}, the run spec's is "
                              f"{spec_model.get(f)!r}", hint="a downstream run keeps its upstream run's model section")


def apply_structure(model: nn.Module, art: Artifact) -> None:
    _discover()
    for entry in art.meta.get("structure") or []:
        fn = STRUCTURES.get(entry.get("kind"))
        if fn is None:
            raise ConfigError(f"artifact {art.path}: unknown structure {entry.get('kind')!r}",
                              hint="the artifact was written by a newer runtime; upgrade this one")
        fn(model, entry, art)


def rebuild_model(spec, info, num_labels: Optional[int], art: Artifact, flag: str = "--input model") -> nn.Module:
    """The model an artifact holds, with this run's task head (see the module docstring)."""
    from .models import build_model
    check_architecture(dict(spec.model), art, flag)
    torch.manual_seed(int(art.meta.get("seed", spec.seed)))
    info.extra["local_dir"] = None  # weights come from the artifact, never from the model folder
    model = build_model({**dict(spec.model), "random_init": True}, info, num_labels)
    apply_structure(model, art)
    load_plain_state(model, art.tensors(), head_name=info.head_name, art_head=art.meta.get("head_name"), where=flag)
    return model


def _is_head(key: str, head: Optional[str]) -> bool:
    return bool(head) and (key == head or key.startswith(head + "."))


def load_plain_state(model: nn.Module, tensors: Dict[str, torch.Tensor], *, head_name: Optional[str],
                     art_head: Optional[str], where: str) -> List[str]:
    """Load the tensors into the model; head tensors whose name or shape differ are skipped (the run's own head
    stays). Returns the names skipped. Anything else missing, extra or of another shape is a config error."""
    want = model.state_dict()
    skipped: List[str] = []
    missing = [k for k in want if k not in tensors and not _is_head(k, head_name)]
    extra = [k for k in tensors if k not in want and not _is_head(k, art_head)]
    if missing or extra:
        raise ConfigError(f"{where}: the artifact does not fit the model (missing {missing[:3]}, unexpected {extra[:3]})",
                          hint="pass the artifact of the upstream run the spec names (same model and structure)")
    with torch.no_grad():
        for k, t in want.items():
            src = tensors.get(k)
            if src is None or tuple(src.shape) != tuple(t.shape):
                if _is_head(k, head_name):
                    skipped.append(k)
                    continue
                raise ConfigError(f"{where}: tensor {k} has shape {tuple(src.shape)}, the model expects {tuple(t.shape)}",
                                  hint="pass the artifact of the upstream run the spec names")
            t.copy_(src.to(dtype=t.dtype))
    return skipped


def plain_model(model: nn.Module) -> nn.Module:
    """The model with every adapted layer folded into a plain module, in place: a mergeable method's ΔW is
    merged into its base, a reparametrising method (`to_plain()`: SLTrain, LoRD) gives its own module."""
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, AdaptedLinear):
            continue
        if hasattr(mod, "to_plain"):
            new = mod.to_plain()
        elif mod.method.mergeable:
            mod.merge()
            new = mod.base
        else:
            raise ConfigError(f"method {mod.method.name} cannot be folded into a plain model",
                              hint="save an adapter artifact instead, or use a mergeable method")
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, leaf, new)
    if hasattr(model, SHARED_ATTR):
        delattr(model, SHARED_ATTR)
    return model


def plain_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.state_dict().items()}


def model_meta(spec, info, num_labels: Optional[int], structure_: List[Dict[str, Any]],
               base: Optional[Artifact] = None, **extra: Any) -> Dict[str, Any]:
    """The `meta` of a model artifact written by a run of `spec` (see the module docstring)."""
    meta = {"model": {k: spec.model[k] for k in ("name", "source", "task", "config")},
            "seed": int(base.meta.get("seed", spec.seed)) if base is not None else int(spec.seed),
            "num_labels": num_labels, "head_name": info.head_name,
            "structure": list((base.meta.get("structure") or []) if base is not None else []) + list(structure_)}
    meta.update(extra)
    return meta


class FactoredLinear(nn.Module):
    """y = b(a(x)): a linear layer stored as two dense factors, `a` (rank × d_in, no bias) then `b` (d_out × rank,
    with the original bias). What LoRD leaves in place of a decomposed `nn.Linear`; both factors are plain
    `nn.Linear` modules, so any PEFT method can adapt them (`expand_targets`)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.a = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.b = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))

    @property
    def weight(self) -> torch.Tensor:
        """The dense product B·A (for inspection; not a parameter)."""
        return self.b.weight @ self.a.weight


def expand_targets(model: nn.Module, patterns: List[str]) -> List[str]:
    """Target patterns on a model with factored layers: a pattern that names a `FactoredLinear` (e.g. `q_proj`)
    also targets its two factors (`...q_proj.a`, `...q_proj.b`), so a recipe's targets mean the same layers
    before and after compression."""
    from .methods.base import matches_target as _matches
    out = list(patterns)
    for name, mod in model.named_modules():
        if isinstance(mod, FactoredLinear) and any(_matches(name, p) for p in patterns):
            out += [f"{name}.a", f"{name}.b"]
    return out
