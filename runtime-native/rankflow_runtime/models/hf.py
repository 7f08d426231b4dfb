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
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError, did_you_mean

log = logging.getLogger("rankflow")
PREPROCESSOR = "preprocessor_config.json"
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

# Default targets: attention q/v, as in the LoRA paper and PEFT's defaults. Module names differ between
# architectures and transformers versions (v5 renamed ViT's query/value to q_proj/v_proj), so the first
# candidate whose names all exist in the built model is used.
TARGET_CANDIDATES = (["query", "value"], ["q_proj", "v_proj"], ["query_proj", "value_proj"], ["qkv_proj"])
HEAD_CANDIDATES = ("classifier", "score", "lm_head")
TASK_AUTO = {"seq-cls": "AutoModelForSequenceClassification", "img-cls": "AutoModelForImageClassification",
             "causal-lm": "AutoModelForCausalLM"}


def quiet_libraries() -> None:
    """Keep transformers' and datasets' noise (load reports, progress bars, advisory warnings) out of the runtime
    log unless it runs at DEBUG (`RANKFLOW_LOG_LEVEL=DEBUG`). Call before importing them; idempotent."""
    if os.environ.get("RANKFLOW_LOG_LEVEL", "INFO").upper() == "DEBUG":
        return
    for var, value in (("TRANSFORMERS_VERBOSITY", "error"), ("DATASETS_VERBOSITY", "error"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
                       ("TQDM_DISABLE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(var, value)


def _transformers():
    try:
        quiet_libraries()
        import transformers  # noqa: F401
        if os.environ.get("RANKFLOW_LOG_LEVEL", "INFO").upper() != "DEBUG":
            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
        return transformers
    except ImportError:
        raise ConfigError('model.source: "hf" needs the transformers package, which is not installed',
                          hint="install runtime-native/requirements-test.lock, or use a built-in model") from None


def bundled() -> Dict[str, Dict[str, Any]]:
    """name -> bundled config (including `_aliases` and `_task`)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*.json"))):
        with open(path, encoding="utf-8") as f:
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


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def _custom_code(tf, config_dict: Dict[str, Any], where: str, trust: bool) -> bool:
    """Whether transformers may run the model folder's own code (`auto_map`). transformers would prompt
    `[y/N]` on stdin for such a folder; the runtime never lets it: the recipe opts in with
    `model.trust_remote_code: true`, a known architecture without the opt-in uses transformers' own classes,
    an unknown one is a config error saying how to opt in."""
    if not config_dict.get("auto_map") or trust:
        return bool(trust)
    model_type = config_dict.get("model_type")
    if model_type in tf.models.auto.configuration_auto.CONFIG_MAPPING:
        log.warning("%s ships custom code (auto_map); using transformers' own %s classes "
                    "(set model.trust_remote_code: true to run the folder's code)", where, model_type)
        return False
    raise ConfigError(f"model.name: {where} needs its own Python code (config.json has an auto_map for model type "
                      f"{model_type!r}); the runtime runs it only with model.trust_remote_code: true",
                      hint="review the folder's code, then set model.trust_remote_code: true in the recipe")


def _from_pretrained(tf, ref: str, where: str, trust: bool, config_dict: Optional[Dict[str, Any]]):
    trust = _custom_code(tf, config_dict or {}, where, trust)
    try:
        return tf.AutoConfig.from_pretrained(ref, local_files_only=True, trust_remote_code=trust), trust
    except (ValueError, KeyError, OSError) as exc:  # an unknown model_type, a damaged config.json, ...
        first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"model.name: cannot read the config of {where}: {first}",
                          hint="point model.name at a folder written by save_pretrained (or upgrade transformers)"
                          ) from None


def _cached_file(repo_id: str, filename: str) -> Optional[str]:
    """A file of a hub repository in the local HF cache (never downloads), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
        path = try_to_load_from_cache(repo_id, filename)
        return path if isinstance(path, str) and os.path.isfile(path) else None
    except Exception:
        return None


def _load_config(spec: Dict[str, Any]):
    """(transformers config, local directory or hub id or None, weights available?, may run custom code?,
    image processor settings or None)"""
    tf = _transformers()
    name = spec["name"]
    trust = bool(spec.get("trust_remote_code", False))
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise ConfigError(f"model.name: {name} has no config.json", hint="point model.name at a model directory")
        cfg, trust = _from_pretrained(tf, name, name, trust, _read_json(os.path.join(name, "config.json")))
        return cfg, name, _has_weights(name), trust, _read_json(os.path.join(name, PREPROCESSOR))
    key, raw = _find_bundled(name)
    # A hub id in the local HF cache (a bundled one included) loads from there, weights and all.
    hub_ids = [name] if raw is None else [a for a in [name, *raw.get("_aliases", [])] if "/" in a]
    for hub_id in hub_ids:
        cached = _cached_file(hub_id, "config.json")
        if cached is None:
            continue
        cfg, trust = _from_pretrained(tf, hub_id, hub_id, trust, _read_json(cached))
        pre = _cached_file(hub_id, PREPROCESSOR)
        return cfg, hub_id, True, trust, _read_json(pre) if pre else None
    if raw is None:
        raise ConfigError(f"model.name: {name!r} is not a bundled architecture, a local directory, or in the "
                          f"local Hugging Face cache{did_you_mean(name, bundled())}",
                          hint="rankflow never downloads: use a bundled name with random_init, or a local path")
    fields = {k: v for k, v in raw.items() if not k.startswith("_")}
    model_type = fields.pop("model_type")
    cfg = tf.AutoConfig.for_model(model_type, **fields)
    return cfg, None, False, False, raw.get("_preprocessor")


def image_stats(pre: Optional[Dict[str, Any]]) -> Tuple[Optional[List[float]], Optional[List[float]]]:
    """(mean, std) of a `preprocessor_config.json`: its `image_mean` / `image_std` when it normalises, the
    identity (0, 1) when `do_normalize` is false, (None, None) when it says nothing."""
    if not pre:
        return None, None
    if pre.get("do_normalize") is False:
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    mean, std = pre.get("image_mean"), pre.get("image_std")
    if isinstance(mean, (int, float)):
        mean = [float(mean)] * 3
    if isinstance(std, (int, float)):
        std = [float(std)] * 3
    if isinstance(mean, list) and isinstance(std, list) and mean and len(mean) == len(std):
        return [float(x) for x in mean], [float(x) for x in std]
    return None, None


def _apply_overrides(cfg, overrides: Dict[str, Any]) -> None:
    known = set(cfg.to_dict())
    for k, v in overrides.items():
        if k not in known:
            raise ConfigError(f"model.config.{k}: not a field of the {cfg.model_type} config{did_you_mean(k, known)}",
                              hint="use a field of the Hugging Face config (e.g. num_hidden_layers)")
        setattr(cfg, k, v)


def resolve(spec: Dict[str, Any], max_length: Optional[int]):
    from . import ModelInfo
    cfg, local, has_weights, trust, pre = _load_config(spec)
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
    info.extra["trust_remote_code"] = trust
    if task == "img-cls":
        info.image_size, info.channels = cfg.image_size, cfg.num_channels
        info.image_mean, info.image_std = image_stats(pre)
    else:
        info.vocab_size = cfg.vocab_size
        limit = getattr(cfg, "max_position_embeddings", None)
        if mt in ("roberta", "xlm-roberta") and limit:
            limit -= cfg.pad_token_id + 1  # RoBERTa positions start after the padding index
        if max_length and limit and max_length > limit:
            raise ConfigError(f"dataset.max_length: {max_length} exceeds {spec['name']}'s {limit} positions",
                              hint="lower dataset.max_length")
        info.max_length = max_length or limit
        info.max_positions = limit
        eos = cfg.eos_token_id
        info.eos_token_id = eos[0] if isinstance(eos, list) else eos
        # One pad id for the data (collation) and the model (a decoder classifier pools the last token that
        # is not padding): the config's, else EOS (the usual choice for LLaMA-style models without one).
        info.pad_token_id = cfg.pad_token_id if cfg.pad_token_id is not None else info.eos_token_id
        info.bos_token_id = cfg.bos_token_id
        if local and os.path.isdir(local) and _has_tokenizer(local):
            info.tokenizer_path = local
    return info


def build(spec: Dict[str, Any], info, num_labels: Optional[int], weights: bool = True):
    """The transformers model. `weights=False` (counting, on the meta device) builds it from the config
    alone, even when the model has weights: shapes are all a count needs."""
    import torch
    tf = _transformers()
    import copy
    cfg = copy.deepcopy(info.extra["hf_config"])
    if info.task != "causal-lm":
        cfg.num_labels = num_labels
        if num_labels == 1:
            cfg.problem_type = "regression"
    if info.task == "seq-cls":
        _set_pad(cfg, info)
    trust = bool(info.extra.get("trust_remote_code"))
    auto = getattr(tf, TASK_AUTO[info.task])
    local = info.extra.get("local_dir") if weights else None
    if local:
        model, report = auto.from_pretrained(local, config=cfg, local_files_only=True, ignore_mismatched_sizes=True,
                                             trust_remote_code=trust, output_loading_info=True)
        _log_loading(local, report)
    else:
        model = auto.from_config(cfg, trust_remote_code=trust)
    names = {n for n, _ in model.named_modules()}
    info.head_name = next((h for h in (info.head_name,) + HEAD_CANDIDATES if h in names), None)
    leaves = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    info.default_targets = next((list(c) for c in TARGET_CANDIDATES if set(c) <= leaves), info.default_targets)
    return model


def _log_loading(where: str, report: Dict[str, Any]) -> None:
    """One log line instead of transformers' load report: what was newly initialised and what was left out."""
    def names(keys) -> str:
        keys = sorted(keys or [])
        return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
    missing = list(report.get("missing_keys") or []) + [k[0] if isinstance(k, tuple) else k
                                                         for k in report.get("mismatched_keys") or []]
    unexpected = report.get("unexpected_keys") or []
    log.info("loaded weights from %s%s%s", where, f"; newly initialised: {names(missing)}" if missing else "",
             f"; not used: {names(unexpected)}" if unexpected else "")


def _set_pad(cfg, info) -> None:
    """Give a sequence classifier the pad id the data pads with (transformers refuses batches > 1 of a
    decoder classifier without one)."""
    if info.pad_token_id is None:
        raise ConfigError(f"model.name: {info.name} has neither a pad nor an EOS token id, which a sequence "
                          "classifier needs to find each row's last token",
                          hint="set model.config.pad_token_id (e.g. to the EOS id of its tokenizer)")
    for c in {id(x): x for x in (cfg, cfg.get_text_config())}.values():
        if getattr(c, "pad_token_id", None) is None:
            c.pad_token_id = info.pad_token_id


def describe() -> Dict[str, Any]:
    out = {}
    for key, cfg in bundled().items():
        out[key] = {"task": cfg["_task"], "source": "hf", "aliases": cfg.get("_aliases", []),
                    "config": {k: v for k, v in cfg.items() if not k.startswith("_")},
                    "default_targets": "attention q/v (query/value or q_proj/v_proj)",
                    "needs": "random_init, or local weights"}
    return out
