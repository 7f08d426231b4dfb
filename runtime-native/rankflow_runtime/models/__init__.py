"""Models: the built-in small models (`builtin.py`) and Hugging Face models (`hf.py`), behind one interface.

`model_info(model_spec, max_length)` resolves the configuration without building anything (datasets need
vocab size, image size, ...); `build_model(model_spec, info, num_labels)` builds the nn.Module (call it under
`torch.device("meta")` to get shapes only). Every model takes HF-style keyword inputs and returns an object
with `.loss` and `.logits`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from torch import nn

from ..errors import ConfigError, did_you_mean
from . import builtin, denoiser


@dataclass
class ModelInfo:
    name: str
    source: str
    task: str
    config: Dict[str, Any]
    head_name: str  # module name of the task head (train_head, linear probing)
    default_targets: List[str]  # attention q/v, as the LoRA paper and PEFT's defaults
    vocab_size: Optional[int] = None
    max_length: Optional[int] = None
    max_positions: Optional[int] = None  # the model's position limit (text models; None: unknown/unbounded)
    image_size: Optional[int] = None
    channels: Optional[int] = None
    pad_token_id: Optional[int] = None
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
    tokenizer_path: Optional[str] = None  # a local HF tokenizer directory, when the model has one
    image_mean: Optional[List[float]] = None  # the model's image processor normalisation (None: unknown)
    image_std: Optional[List[float]] = None
    extra: Dict[str, Any] = field(default_factory=dict)


BUILTIN = {
    "tiny-encoder": dict(task="seq-cls", cls=builtin.TinyEncoder, defaults=builtin.ENCODER_DEFAULTS,
                         head="classifier", targets=["query", "value"]),
    "tiny-vit": dict(task="img-cls", cls=builtin.TinyViT, defaults=builtin.VIT_DEFAULTS,
                     head="classifier", targets=["query", "value"]),
    "tiny-decoder": dict(task="causal-lm", cls=builtin.TinyDecoder, defaults=builtin.DECODER_DEFAULTS,
                         head="lm_head", targets=["q_proj", "v_proj"], tasks={"seq-cls": "score"}),
    "tiny-denoiser": dict(task="img-gen", cls=denoiser.TinyDenoiser, defaults=denoiser.DENOISER_DEFAULTS,
                          head="head", targets=["query", "key", "value", "out"]),
}


def _resolve_builtin(spec: Dict[str, Any], max_length: Optional[int]) -> ModelInfo:
    name = spec["name"]
    if name not in BUILTIN:
        raise ConfigError(f"model.name: unknown built-in model {name!r}{did_you_mean(name, BUILTIN)}",
                          hint='use a built-in name or set model.source to "hf"')
    b = BUILTIN[name]
    heads = {b["task"]: b["head"], **b.get("tasks", {})}  # task -> head module (the decoder also classifies)
    task = spec.get("task") or b["task"]
    if task not in heads:
        raise ConfigError(f"model.task: {name} is a {' / '.join(heads)} model, not {task}",
                          hint=f'set model.task to "{b["task"]}"')
    overrides = dict(spec.get("config") or {})
    unknown = [k for k in overrides if k not in b["defaults"]]
    if unknown:
        raise ConfigError(f"model.config.{unknown[0]}: unknown setting for {name}{did_you_mean(unknown[0], b['defaults'])}",
                          hint=f"settings: {', '.join(b['defaults'])}")
    cfg = {**b["defaults"], **overrides}
    for k, v in cfg.items():
        default = b["defaults"][k]
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"model.config.{k}: expected a non-negative number, got {v!r}", hint=f"default is {default}")
            if isinstance(default, int) and not float(v).is_integer():
                raise ConfigError(f"model.config.{k}: expected an integer, got {v!r}", hint=f"default is {default}")
            cfg[k] = type(default)(v)
    if cfg.get("hidden_size", 1) % cfg.get("num_heads", 1):
        raise ConfigError("model.config.hidden_size: must be divisible by num_heads",
                          hint=f"hidden_size={cfg['hidden_size']}, num_heads={cfg['num_heads']}")
    info = ModelInfo(name=name, source="builtin", task=task, config=cfg, head_name=heads[task],
                     default_targets=list(b["targets"]))
    if task in ("img-cls", "img-gen"):
        info.image_size, info.channels = cfg["image_size"], cfg["channels"]
    else:
        info.vocab_size = cfg["vocab_size"]
        limit = cfg["max_position"]
        if max_length is not None and max_length > limit:
            raise ConfigError(f"dataset.max_length: {max_length} exceeds {name}'s max_position {limit}",
                              hint="lower dataset.max_length or raise model.config.max_position")
        info.max_length = max_length or limit
        info.max_positions = limit
        info.pad_token_id = cfg.get("pad_token_id")
        info.bos_token_id = cfg.get("bos_token_id")
        info.eos_token_id = cfg.get("eos_token_id")
    return info


def model_info(spec: Dict[str, Any], max_length: Optional[int] = None) -> ModelInfo:
    source = spec.get("source", "builtin")
    if source == "builtin":
        return _resolve_builtin(spec, max_length)
    if source == "hf":
        from . import hf
        return hf.resolve(spec, max_length)
    raise ConfigError(f"model.source: {source!r} is not builtin or hf", hint='set model.source to "builtin" or "hf"')


def build_model(spec: Dict[str, Any], info: ModelInfo, num_labels: Optional[int], weights: bool = True) -> nn.Module:
    """Build the model (random init for built-ins; under `torch.device('meta')` no memory is used).
    `weights=False` never reads a weight file (an HF model is built from its config: counting)."""
    if info.task in ("seq-cls", "img-cls") and not num_labels:
        raise ConfigError(f"model: {info.name} needs the number of labels for task {info.task}")
    if info.source == "builtin":
        return BUILTIN[info.name]["cls"](info.config, num_labels)
    from . import hf
    return hf.build(spec, info, num_labels, weights=weights)


def describe_models() -> Dict[str, Any]:
    out: Dict[str, Any] = {name: {"task": b["task"], "config": dict(b["defaults"]), "head": b["head"],
                                  "default_targets": list(b["targets"]), "source": "builtin",
                                  **({"other_tasks": dict(b["tasks"])} if b.get("tasks") else {})}
                           for name, b in BUILTIN.items()}
    try:
        from . import hf
        out.update(hf.describe())
    except ImportError:
        pass
    return out
