"""Small helpers shared by the test suites (conformance and per-method tests): tiny model configurations,
synthetic batches with a planted signal, building an adapted model, and a few training steps that call
the method hooks in the same order as `train.py`."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from .methods import get_method
from .methods.base import Method, TrainContext, adapt_model
from .models import BUILTIN, ModelInfo, build_model, model_info
from .optim import GroupRules
from .step import Stepper

# Tiny configurations (non-square layers on purpose: fc1/fc2, GQA v_proj, up_proj).
TINY_CONFIGS: Dict[str, Dict[str, Any]] = {
    "tiny-encoder": dict(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=48,
                         max_position=16),
    "tiny-vit": dict(image_size=16, patch_size=8, channels=3, hidden_size=32, num_layers=2, num_heads=2,
                     intermediate_size=48),
    "tiny-decoder": dict(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                         intermediate_size=48, max_position=32),
}
# Targets: the attention q/v defaults plus one rectangular MLP layer.
TINY_TARGETS: Dict[str, List[str]] = {
    "tiny-encoder": ["query", "value", "fc1"],
    "tiny-vit": ["query", "value", "fc2"],
    "tiny-decoder": ["q_proj", "v_proj", "up_proj"],
}
NUM_LABELS = {"tiny-encoder": 3, "tiny-vit": 4, "tiny-decoder": None}
# The tiny decoder's 64-token vocabulary is too small for the default ascii tokenizer: texts the methods tokenize
# (prompt initialisations) use the hashed-word tokenizer there.
TOKENIZER_SPEC = {"tiny-decoder": SimpleNamespace(dataset={"options": {"tokenizer": "words"}})}


# The learning-rate policy of the conformance suite's "loss goes down" check, the same for every method: AdamW
# without weight decay at each rate in turn (until one passes) for TRAIN_STEPS steps on one batch.
LR_POLICY = (1e-2, 1e-1, 1e-3)
TRAIN_STEPS = 20


def tiny_info(model: str, config: Optional[Dict[str, Any]] = None) -> ModelInfo:
    """The tiny configuration of a built-in model, with `config` overrides (e.g. {"dropout": 0.1})."""
    return model_info({"name": model, "source": "builtin", "task": BUILTIN[model]["task"],
                       "config": {**TINY_CONFIGS[model], **(config or {})}, "random_init": True})


def make_method(name: str, rank: Optional[int] = 4, options: Optional[Dict[str, Any]] = None, seed: int = 0) -> Method:
    cls = get_method(name)
    opts = dict(cls.test_options)
    opts.update(options or {})
    return cls(rank if cls.needs_rank else None, opts, seed)


def base_model(model: str, seed: int = 0, config: Optional[Dict[str, Any]] = None) -> Tuple[nn.Module, ModelInfo]:
    info = tiny_info(model, config)
    torch.manual_seed(seed)
    return build_model({}, info, NUM_LABELS[model]), info


def adapted_model(model: str, method: str, rank: Optional[int] = 4, options=None, train_head: bool = False,
                  seed: int = 0, targets: Optional[List[str]] = None, config: Optional[Dict[str, Any]] = None):
    """(model, method, info, formula) with the method applied to the tiny model built from `seed`."""
    m, info = base_model(model, seed, config)
    meth = make_method(method, rank, options, seed)
    from .build import adapt_facts, reserve_positions
    reserve_positions(info, meth, explicit=False)
    _, formula = adapt_model(m, meth, targets or TINY_TARGETS[model], info.head_name, train_head,
                             **adapt_facts(TOKENIZER_SPEC.get(model), info))
    return m, meth, info, formula


def synthetic_batch(model: str, n: int = 8, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A batch with a planted, learnable signal (the label is a function of the input)."""
    info = tiny_info(model)
    g = torch.Generator().manual_seed(seed)
    if info.task == "img-cls":
        c = info.config
        x = torch.randn(n, c["channels"], c["image_size"], c["image_size"], generator=g)
        labels = torch.arange(n) % NUM_LABELS[model]
        x[:, 0] += labels[:, None, None].float()  # class shifts the first channel
        return {"pixel_values": x, "labels": labels}
    t = 12
    ids = torch.randint(3, info.vocab_size, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[0, -3:] = 0  # one padded row
    if info.task == "seq-cls":
        labels = ids[:, 1] % NUM_LABELS[model]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    ids[:, 1::2] = (ids[:, 0::2] + 1) % info.vocab_size  # every odd token follows from the previous one
    labels = ids.clone()
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train_steps(model: nn.Module, method: Method, batch: Dict[str, torch.Tensor], steps: int, lr: float) -> List[float]:
    """Plain AdamW steps on one batch through the training loop's `Stepper` (the same hook order as
    `train.py`; groups added during training get lr `lr`, no weight decay). Returns the losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ctx = TrainContext(model=model, step=0, total_steps=steps)
    stepper = Stepper(model, method, opt, ctx, rules=GroupRules(lr=lr, lr_groups={}, weight_decay=0.0),
                      loss_fn=lambda m, b: m(**b).loss)
    method.on_train_start(ctx)
    model.train()
    return [stepper.step([batch]).loss for _ in range(steps)]
