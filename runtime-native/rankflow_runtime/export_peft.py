"""Export a trained rankflow adapter to the Hugging Face PEFT adapter format.

`export_peft(model, method, out_dir)` writes `adapter_config.json` and `adapter_model.safetensors` so that
`peft.PeftModel.from_pretrained(base_model, out_dir)` rebuilds the same adapted model on the *original* base
model (the same architecture and module names as the model rankflow adapted). It never imports `peft`: the files
are written from the adapter tensors with PEFT's key and config conventions (PEFT 0.21):

* keys are `base_model.model.<module name>.<peft tensor name>` (no adapter name), shared tensors
  `base_model.<name>`; a trained task head is saved under its own name and listed in `modules_to_save`;
* `target_modules` lists the full names of the adapted modules.
* VeRA / RandLoRA: the shared bases are written once (`base_model.vera_A`, `base_model.randlora_A`, ...), with
  `save_projection=True`, so PEFT uses the exported bases rather than regenerating them. PEFT's own RandLoRA
  save also repeats the shared bases under every layer; those copies are omitted (PEFT then warns about
  "missing adapter keys" `...randlora_A.default`, harmlessly: every layer references the shared buffers that
  are loaded from the `base_model.*` keys).

Methods and their PEFT counterpart:

| rankflow   | PEFT config                             | tensors                                                      |
|------------|-----------------------------------------|--------------------------------------------------------------|
| `lora`, `lora-ggpo` | `LoraConfig`                   | lora_A.weight, lora_B.weight                                 |
| `dora`     | `LoraConfig(use_dora=True)`             | + lora_magnitude_vector                                      |
| `pissa`    | `LoraConfig` (see below)                | lora_A.weight, lora_B.weight                                 |
| `vera`     | `VeraConfig(save_projection=True)`      | vera_lambda_b, vera_lambda_d; shared vera_A, vera_B          |
| `randlora` | `RandLoraConfig(save_projection=True)`  | randlora_lambda, randlora_gamma; randlora_A, randlora_B      |
| `bone`     | `MissConfig` (balance / bat / mini)     | miss_block                                                   |
| `prompt-tuning` | `PromptTuningConfig` (task SEQ_CLS / CAUSAL_LM) | prompt_embeddings (no target modules; head as `base_model.<head>.*`) |
| `adalora`  | `AdaLoraConfig(rank_pattern=...)`       | lora_A, lora_E, lora_B of the kept triplets                  |

PiSSA trains on the residual W_res = W0 − s·B0 A0 (its frozen base is not the original weight), so a plain
rank-r LoRA of (A, B) would be wrong on the original model. Two modes:

* `pissa_mode="lora"` (default): PEFT's own PiSSA-to-LoRA conversion (what `save_pretrained(...,
  path_initial_model_for_weight_conversion=...)` does): ΔW = s·(B A − B0 A0) = [B, −B0]·[A; A0], exported as a
  LoRA of rank 2r with α doubled (same s). It loads onto the **original** base weights and reproduces W_res + s·B A
  exactly (up to float rounding), with no SVD at load time.
* `pissa_mode="residual"`: the rank-r adapter (A, B) as trained, plus `residual_weights.safetensors` holding the
  residual weight W_res of every adapted module (keys `<module name>.weight`). Load those into the base model
  first (`model.load_state_dict(..., strict=False)`), then the adapter; this is PEFT's "PiSSA model + residual
  model" layout.

NOLA and the other rankflow methods have no PEFT implementation: exporting them raises a ConfigError.
A merged model is refused (unmerge first) because the adapter tensors no longer describe the base.

`export_checkpoint(spec, checkpoint_dir, out_dir)` is the command `python -m rankflow_runtime export`: it
rebuilds the model from the run spec exactly as training does (`build.py`, on the CPU), loads the checkpoint's
trained state read-only (every sha256, the method and the spec identity verified), and calls `export_peft`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .errors import ConfigError
from .methods.base import Method

PEFT_FORMAT_VERSION = "0.21.2"  # the PEFT version whose format these files follow (and the tests load)


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu").contiguous().clone()


def _layers(model: nn.Module, method: Method) -> List[Tuple[str, nn.Module]]:
    out = []
    for name in method.targets:
        layer = model.get_submodule(name)
        if getattr(layer, "merged", False):
            raise ConfigError(f"export: layer {name} is merged into the base weights",
                              hint="unmerge the adapter (method.unmerge(model)) before exporting")
        out.append((name, layer))
    return out


def _lora_like(model, method, extra: Callable[[str, nn.Module, Dict[str, torch.Tensor]], None] = None):
    tensors: Dict[str, torch.Tensor] = {}
    for name, layer in _layers(model, method):
        pre = f"base_model.model.{name}."
        tensors[pre + "lora_A.weight"] = _t(layer.lora_A)
        tensors[pre + "lora_B.weight"] = _t(layer.lora_B)
        if extra:
            extra(name, layer, tensors)
    return tensors


def _lora_config(r: int, alpha: float, dropout: float, use_rslora=False, use_dora=False):
    return {"peft_type": "LORA", "r": int(r), "lora_alpha": float(alpha), "lora_dropout": float(dropout),
            "use_rslora": bool(use_rslora), "use_dora": bool(use_dora), "init_lora_weights": True,
            "bias": "none", "fan_in_fan_out": False}


def _export_lora(model, method, opts):
    o = method.options
    return _lora_like(model, method), _lora_config(method.rank, o.alpha, o.dropout, o.use_rslora), {}


def _export_dora(model, method, opts):
    o = method.options

    def mag(name, layer, tensors):
        tensors[f"base_model.model.{name}.lora_magnitude_vector"] = _t(layer.magnitude)

    return (_lora_like(model, method, mag),
            _lora_config(method.rank, o.alpha, o.dropout, o.use_rslora, use_dora=True), {})


def _export_pissa(model, method, opts):
    mode = opts.get("pissa_mode", "lora")
    o, r, alpha = method.options, method.rank, method.alpha()
    if mode == "residual":
        residual = {f"{name}.weight": _t(layer.base.weight) for name, layer in _layers(model, method)}
        return _lora_like(model, method), _lora_config(r, alpha, o.dropout), {"residual_weights": residual}
    if mode != "lora":
        raise ConfigError(f"export: pissa_mode {mode!r} is not one of ['lora', 'residual']",
                          hint="use lora (loads on the original weights) or residual")
    tensors: Dict[str, torch.Tensor] = {}
    for name, layer in _layers(model, method):
        if layer.init_A.is_meta:
            raise ConfigError("export: the PiSSA model was built on the meta device", hint="build it with weights")
        pre = f"base_model.model.{name}."
        tensors[pre + "lora_A.weight"] = _t(torch.cat([layer.lora_A, layer.init_A], dim=0))
        tensors[pre + "lora_B.weight"] = _t(torch.cat([layer.lora_B, -layer.init_B], dim=1))
    return tensors, _lora_config(2 * r, 2 * alpha, o.dropout), {}


def _shared(model: nn.Module) -> nn.Module:
    from .methods.base import SHARED_ATTR
    return getattr(model, SHARED_ATTR)


def _export_vera(model, method, opts):
    o = method.options
    tensors: Dict[str, torch.Tensor] = {}
    for name, layer in _layers(model, method):
        pre = f"base_model.model.{name}."
        tensors[pre + "vera_lambda_b"] = _t(layer.lambda_b)
        tensors[pre + "vera_lambda_d"] = _t(layer.lambda_d)
    shared = _shared(model)
    tensors["base_model.vera_A"] = _t(shared.vera_A)
    tensors["base_model.vera_B"] = _t(shared.vera_B)
    config = {"peft_type": "VERA", "r": int(method.rank), "projection_prng_key": int(method.base_seed()),
              "save_projection": True, "vera_dropout": float(o.dropout), "d_initial": float(o.d_initial),
              "bias": "none", "fan_in_fan_out": False, "init_weights": True}
    return tensors, config, {}


def _export_randlora(model, method, opts):
    o = method.options
    shared = _shared(model)
    a, b = _t(shared.randlora_A), _t(shared.randlora_B)
    tensors: Dict[str, torch.Tensor] = {}
    for name, layer in _layers(model, method):
        pre = f"base_model.model.{name}."
        tensors[pre + "randlora_lambda"] = _t(layer.randlora_lambda)
        tensors[pre + "randlora_gamma"] = _t(layer.randlora_gamma)
    tensors["base_model.randlora_A"] = a
    tensors["base_model.randlora_B"] = b
    config = {"peft_type": "RANDLORA", "r": int(method.rank), "randlora_alpha": float(method.alpha()),
              "randlora_dropout": float(o.dropout), "projection_prng_key": int(method.base_seed()),
              "save_projection": True, "sparse": o.basis == "sparse", "very_sparse": o.basis == "very_sparse",
              "bias": "none", "fan_in_fan_out": False, "init_weights": True}
    return tensors, config, {}


def _export_bone(model, method, opts):
    o = method.options
    tensors = {f"base_model.model.{name}.miss_block": _t(layer.bone_block) for name, layer in _layers(model, method)}
    init = {"balance": True, "bat": "bat", "mini": "mini"}[o.variant]
    config = {"peft_type": "MISS", "r": int(method.rank), "mini_r": int(o.mini_r), "miss_dropout": float(o.dropout),
              "init_weights": init, "bias": "none"}
    return tensors, config, {}


def _export_adalora(model, method, opts):
    """The kept triplets only (PEFT's save slices A, E, B by `rank_pattern`; its load resizes every module to
    the pattern's rank and keeps ranknum = init_r, so the scaling is unchanged). `rank_pattern` is keyed as PEFT's
    own AdaLoRA save writes it, `<module>.lora_E` -> kept mask; PEFT >= 0.21's generic rank_pattern check (made
    for LoRA's `{module: rank}`) warns these keys "did not match any targeted module", for PEFT's own adapters
    too, yet AdaLoRA's load applies them (tests/methods/test_adalora.py asserts the loaded ranks). No `r`: PEFT's
    AdaLoraConfig ignores it and warns when it is not 8 (`target_r` is the rank)."""
    o = method.options
    tensors: Dict[str, torch.Tensor] = {}
    pattern: Dict[str, List[bool]] = {}
    for name, layer in _layers(model, method):
        keep = layer.rank_mask.bool()
        pre = f"base_model.model.{name}."
        tensors[pre + "lora_A"] = _t(layer.lora_A[keep])
        tensors[pre + "lora_E"] = _t(layer.lora_E[keep])
        tensors[pre + "lora_B"] = _t(layer.lora_B[:, keep])
        pattern[f"{name}.lora_E"] = keep.tolist()
    config = {"peft_type": "ADALORA", "init_r": int(method.init_r), "target_r": int(method.rank),
              "tinit": int(o.tinit), "tfinal": int(o.tfinal), "deltaT": int(o.delta_t), "beta1": float(o.beta1),
              "beta2": float(o.beta2), "orth_reg_weight": float(o.orth_reg_weight),
              "total_step": int(method.total or 1), "rank_pattern": pattern, "lora_alpha": float(o.alpha),
              "lora_dropout": float(o.dropout), "init_lora_weights": True, "bias": "none", "fan_in_fan_out": False}
    return tensors, config, {}


def _export_prompt_tuning(model, method, opts):
    from .methods.prompt_tuning import input_embedding
    prompt = _shared(model).prompt
    cfg = getattr(model, "config", None)
    get = (lambda k: getattr(cfg, k, None)) if cfg is not None and not isinstance(cfg, dict) else (lambda k: None)
    config = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": int(prompt.shape[0]),
              "token_dim": int(input_embedding(model).embedding_dim), "num_transformer_submodules": 1,
              "num_attention_heads": get("num_attention_heads"), "num_layers": get("num_hidden_layers"),
              "prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None, "tokenizer_name_or_path": None,
              "tokenizer_kwargs": None}
    return {"prompt_embeddings": _t(prompt)}, config, {}


# Prompt-learning adapters in PEFT: no target modules, a task type, the head saved under `base_model.<name>`.
PROMPT_LEARNING = {"PROMPT_TUNING"}

EXPORTERS: Dict[str, Callable] = {
    "prompt-tuning": _export_prompt_tuning,
    "adalora": _export_adalora,
    "lora": _export_lora,
    "lora-ggpo": _export_lora,  # a plain LoRA adapter (the perturbation only acts during training)
    "dora": _export_dora,
    "pissa": _export_pissa,
    "vera": _export_vera,
    "randlora": _export_randlora,
    "bone": _export_bone,
}


def export_peft(model: nn.Module, method: Method, out_dir: str, *, head_name: Optional[str] = None,
                base_model_name_or_path: Optional[str] = None, pissa_mode: str = "lora") -> Dict[str, Any]:
    """Write `adapter_config.json` and `adapter_model.safetensors` (and, for PiSSA in residual mode,
    `residual_weights.safetensors`) into `out_dir`. Returns the adapter config written."""
    from safetensors.torch import save_file

    if method.name not in EXPORTERS:
        raise ConfigError(f"export: method {method.name!r} has no Hugging Face PEFT implementation to export to",
                          hint=f"PEFT-format export supports {', '.join(sorted(EXPORTERS))}")
    tensors, config, extra = EXPORTERS[method.name](model, method, {"pissa_mode": pissa_mode})
    prompt_learning = config["peft_type"] in PROMPT_LEARNING
    modules_to_save = None
    if head_name:
        head = model.get_submodule(head_name)
        params = dict(head.named_parameters())
        if any(p.requires_grad for p in params.values()):
            modules_to_save = [head_name]
            pre = "base_model." if prompt_learning else "base_model.model."
            for pname, p in params.items():
                tensors[f"{pre}{head_name}.{pname}"] = _t(p)
    if prompt_learning:  # PEFT's task-specific model does the prompt's input/label/mask handling
        config["task_type"] = "CAUSAL_LM" if head_name == "lm_head" else "SEQ_CLS"
    else:
        config.update({"target_modules": list(method.targets), "task_type": None})
    config.update({"modules_to_save": modules_to_save, "base_model_name_or_path": base_model_name_or_path,
                   "inference_mode": True, "peft_version": PEFT_FORMAT_VERSION})
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "adapter_model.safetensors"))
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    if "residual_weights" in extra:
        save_file(extra["residual_weights"], os.path.join(out_dir, "residual_weights.safetensors"))
    return config


def export_checkpoint(spec, checkpoint_dir: str, out_dir: str, *, pissa_mode: str = "lora") -> Dict[str, Any]:
    """Rebuild the run's model from `spec` (a RunSpec), load the trained state of the checkpoint in
    `checkpoint_dir` and export it to `out_dir`. Returns the fields of the `exported` event."""
    from .build import build, num_labels_for, resolve_info
    from .checkpoint import load_trained_state, sha256_file

    name = spec.method["name"]
    if name not in EXPORTERS:  # before any model is built or file read
        raise ConfigError(f"export: method {name!r} has no Hugging Face PEFT implementation to export to",
                          hint=f"PEFT-format export supports {', '.join(sorted(EXPORTERS))}")
    if pissa_mode != "lora" and name != "pissa":
        raise ConfigError(f"export: --pissa-mode applies to PiSSA runs only, this run uses {name!r}",
                          hint="leave out --pissa-mode")
    info = resolve_info(spec)
    num_labels, _ = num_labels_for(spec, info, spec.seed)
    built = build(spec, info, num_labels, device="cpu")
    manifest = load_trained_state(checkpoint_dir, spec_identity=spec.identity(), model=built.model,
                                  method=built.method, flag="--checkpoint")
    built.model.eval()
    config = export_peft(built.model, built.method, out_dir, head_name=info.head_name,
                         base_model_name_or_path=spec.model["name"], pissa_mode=pissa_mode)
    files = []
    for fname in sorted(os.listdir(out_dir)):
        if fname in ("adapter_config.json", "adapter_model.safetensors", "residual_weights.safetensors"):
            p = os.path.join(out_dir, fname)
            files.append({"name": fname, "sha256": sha256_file(p), "bytes": os.path.getsize(p)})
    r = config.get("r", config.get("target_r"))  # AdaLoRA: PEFT ignores (and warns about) `r`; target_r is it
    return {"step": int(manifest["step"]), "method": name, "peft_type": config["peft_type"],
            "r": int(r) if r is not None else None,
            "path": os.path.abspath(out_dir), "files": files}
