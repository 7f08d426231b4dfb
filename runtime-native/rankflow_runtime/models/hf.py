"""Hugging Face `transformers` models (optional dependency; never downloads anything).

`model.name` is one of:
* a bundled architecture (`configs/*.json`: roberta-base, vit-base-patch16-224, llama-2-7b, llama-3.2-3b, or
  their hub ids): the architecture only, so it needs `model.random_init: true` (throughput benchmarks,
  counting parameters of a 7B model on the meta device), unless the hub id is in the local HF cache;
* a local directory with `config.json` (and weights unless `random_init`), e.g. a downloaded checkpoint;
* a hub id already present in the local HF cache (loaded with `local_files_only`).

`model.config` overrides config fields (e.g. `{"num_hidden_layers": 2}` for a small test model).
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError, did_you_mean

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

# Default targets: attention q/v, as in the LoRA paper and PEFT's defaults. Module names differ between
# architectures and transformers versions (v5 renamed ViT's query/value to q_proj/v_proj), so the first
# candidate whose names all exist in the built model is used.
TARGET_CANDIDATES = (["query", "value"], ["q_proj", "v_proj"], ["query_proj", "value_proj"], ["qkv_proj"])
HEAD_CANDIDATES = ("classifier", "score", "lm_head")
TASK_AUTO = {"seq-cls": "AutoModelForSequenceClassification", "img-cls": "AutoModelForImageClassification",
             "causal-lm": "AutoModelForCausalLM"}


def _transformers():
    try:
        import transformers  # noqa: F401
        return transformers
    except ImportError:
        raise ConfigError('model.source: "hf" needs the transformers package, which is not installed',
                          hint="install runtime-native/requirements-test.lock, or use a built-in model") from None


def bundled() -> Dict[str, Dict[str, Any]]:
    """name -> bundled config (including `_aliases` and `_task`)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*.json"))):
        with open(path, "r", encoding="utf-8") as f:
            cfg = json.load(f)
        out[os.path.splitext(os.path.basename(path))[0]] = cfg
    return out


def _find_bundled(name: str) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
    for key, cfg in bundled().items():
        if name == key or name in cfg.get("_aliases", []):
            return key, cfg
    return None, None


def _has_weights(path: str) -> bool:
    pats = ("*.safetensors", "pytorch_model*.bin", "model*.safetensors.index.json")
    return any(glob.glob(os.path.join(path, p)) for p in pats)


def _has_tokenizer(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json",
                                                               "tokenizer.model"))


def _load_config(spec: Dict[str, Any]):
    """(transformers config, local directory or None, weights available?)"""
    tf = _transformers()
    name = spec["name"]
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise ConfigError(f"model.name: {name} has no config.json", hint="point model.name at a model directory")
        cfg = tf.AutoConfig.from_pretrained(name, local_files_only=True)
        return cfg, name, _has_weights(name)
    key, raw = _find_bundled(name)
    # A hub id in the local HF cache (a bundled one included) loads from there, weights and all.
    hub_ids = [name] if raw is None else [a for a in [name, *raw.get("_aliases", [])] if "/" in a]
    for hub_id in hub_ids:
        try:
            cfg = tf.AutoConfig.from_pretrained(hub_id, local_files_only=True)
        except Exception:
            continue
        return cfg, hub_id, True
    if raw is None:
        raise ConfigError(f"model.name: {name!r} is not a bundled architecture, a local directory, or in the "
                          f"local Hugging Face cache{did_you_mean(name, bundled())}",
                          hint="rankflow never downloads: use a bundled name with random_init, or a local path")
    fields = {k: v for k, v in raw.items() if not k.startswith("_")}
    model_type = fields.pop("model_type")
    cfg = tf.AutoConfig.for_model(model_type, **fields)
    return cfg, None, False


def _apply_overrides(cfg, overrides: Dict[str, Any]) -> None:
    known = set(cfg.to_dict())
    for k, v in overrides.items():
        if k not in known:
            raise ConfigError(f"model.config.{k}: not a field of the {cfg.model_type} config{did_you_mean(k, known)}",
                              hint="use a field of the Hugging Face config (e.g. num_hidden_layers)")
        setattr(cfg, k, v)


def resolve(spec: Dict[str, Any], max_length: Optional[int]):
    from . import ModelInfo
    cfg, local, has_weights = _load_config(spec)
    _apply_overrides(cfg, dict(spec.get("config") or {}))
    task = spec.get("task")
    if task not in TASK_AUTO:
        raise ConfigError(f"model.task: {task!r} is not one of {sorted(TASK_AUTO)}", hint="set model.task")
    if not spec.get("random_init") and not has_weights:
        raise ConfigError(f"model.name: no local weights for {spec['name']!r} (rankflow never downloads)",
                          hint="set model.random_init to true, or model.name to a local directory with the weights")
    mt = cfg.model_type
    info = ModelInfo(name=spec["name"], source="hf", task=task, config=cfg.to_diff_dict(),
                     head_name="lm_head" if task == "causal-lm" else "classifier",
                     default_targets=list(TARGET_CANDIDATES[0]))
    info.extra["hf_config"] = cfg
    info.extra["local_dir"] = local if has_weights and not spec.get("random_init") else None
    if task == "img-cls":
        info.image_size, info.channels = cfg.image_size, cfg.num_channels
    else:
        info.vocab_size = cfg.vocab_size
        limit = getattr(cfg, "max_position_embeddings", None)
        if mt in ("roberta", "xlm-roberta") and limit:
            limit -= cfg.pad_token_id + 1  # RoBERTa positions start after the padding index
        if max_length and limit and max_length > limit:
            raise ConfigError(f"dataset.max_length: {max_length} exceeds {spec['name']}'s {limit} positions",
                              hint="lower dataset.max_length")
        info.max_length = max_length or limit
        info.pad_token_id = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id
        info.bos_token_id = cfg.bos_token_id
        eos = cfg.eos_token_id
        info.eos_token_id = eos[0] if isinstance(eos, list) else eos
        if local and _has_tokenizer(local):
            info.tokenizer_path = local
    return info


def build(spec: Dict[str, Any], info, num_labels: Optional[int]):
    import torch
    tf = _transformers()
    import copy
    cfg = copy.deepcopy(info.extra["hf_config"])
    if info.task != "causal-lm":
        cfg.num_labels = num_labels
        if num_labels == 1:
            cfg.problem_type = "regression"
    auto = getattr(tf, TASK_AUTO[info.task])
    local = info.extra.get("local_dir")
    if local:
        model = auto.from_pretrained(local, config=cfg, local_files_only=True, ignore_mismatched_sizes=True)
    else:
        model = auto.from_config(cfg)
    names = {n for n, _ in model.named_modules()}
    info.head_name = next((h for h in (info.head_name,) + HEAD_CANDIDATES if h in names), None)
    leaves = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    info.default_targets = next((list(c) for c in TARGET_CANDIDATES if set(c) <= leaves), info.default_targets)
    return model


def describe() -> Dict[str, Any]:
    out = {}
    for key, cfg in bundled().items():
        out[key] = {"task": cfg["_task"], "source": "hf", "aliases": cfg.get("_aliases", []),
                    "config": {k: v for k, v in cfg.items() if not k.startswith("_")},
                    "default_targets": "attention q/v (query/value or q_proj/v_proj)",
                    "needs": "random_init, or local weights"}
    return out
