"""Linear probing: one linear map trained on the frozen features; and `head-only`, the model's own head.

`linear-probe`: Alain & Bengio, "Understanding intermediate layers using linear classifier probes", ICLR 2017
workshop (arXiv:1610.01644); the standard VTAB/ViT baseline. Exactly one linear map, from the features the task
head reads to the outputs, trains; everything else (backbone, embeddings) is frozen. training.train_head is implied.
What that is depends on the model's head (`ModelInfo.head_name`):

* the head is one `nn.Linear` (ViT and the built-in models' `classifier`, LLaMA's `score`, a causal LM's
  `lm_head`): that layer trains. If it shares its weight with the input embedding (tied embeddings, e.g.
  Llama-3.2-3B), the head gets its own copy first (`untie_head`, as PEFT's `modules_to_save` does), so training it
  cannot move the features: on Llama-3.2-3B that is 128,256 × 3,072 = 394,002,432 numbers, with the input
  embedding frozen;
* the head is the Hugging Face sentence-classification head of the RoBERTa family (`features[:, 0, :]` → dropout
  → `dense` → tanh/GELU → dropout → `out_proj`: RoBERTa, XLM-R, CamemBERT, ELECTRA, ...; recognised by its two
  linear layers `dense` (H → H) and `out_proj` (H → labels) and nothing else): it is replaced by one linear map
  on the first token's features, H → labels (H·labels + labels numbers, 1,538 on roberta-base with 2 labels;
  the two-layer head would be 592,130), initialised N(0, initializer_range²) with zero bias as Hugging Face
  initialises a new head; no dropout;
* any other head (several linear layers, or none): refused with a config error, since no single linear map on
  frozen features can be read off it. Train such a head with `head-only`.

`head-only`: the model's own task head trains as it is (RoBERTa's two-layer head included), backbone frozen; tied
head weights are untied the same way. It is the "classifier only" baseline, not a linear probe.

Deviation: a replaced RoBERTa-family head makes the adapted model differ from the base model at initialisation
(a new head); `init_is_identity` describes the linear-head case.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .base import Method, register


class FirstTokenProbe(nn.Module):
    """A linear probe on the first token's features: `linear(features[:, 0, :])`."""

    def __init__(self, in_features: int, out_features: int, std: float, device=None, dtype=None):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, device=device, dtype=dtype)
        if self.linear.weight.device.type != "meta":
            with torch.no_grad():
                self.linear.weight.normal_(0.0, std)
                self.linear.bias.zero_()

    def forward(self, features: torch.Tensor, **_kwargs) -> torch.Tensor:
        return self.linear(features[:, 0, :])


def _linears(module: nn.Module):
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def _is_first_token_head(head: nn.Module) -> bool:
    """The transformers sentence-classification head of the RoBERTa family: `dense` (H → H) then `out_proj`
    (H → labels), no other parameters."""
    lin = dict(_linears(head))
    if set(lin) != {"dense", "out_proj"}:
        return False
    d, o = lin["dense"], lin["out_proj"]
    own = {id(p) for m in lin.values() for p in m.parameters()}
    return d.in_features == d.out_features == o.in_features and all(id(p) in own for p in head.parameters())


def probe_head(model: nn.Module, head_name: str) -> None:
    """Make the head at `head_name` a single linear map on frozen features (replacing a RoBERTa-family head) or
    raise a ConfigError saying why it cannot be."""
    head = model.get_submodule(head_name)
    if isinstance(head, nn.Linear):
        return
    if _is_first_token_head(head):
        dense, out = head.dense, head.out_proj
        std = float(getattr(getattr(model, "config", None), "initializer_range", 0.02) or 0.02)
        probe = FirstTokenProbe(dense.in_features, out.out_features, std, device=out.weight.device,
                                dtype=out.weight.dtype)
        parent_name, _, leaf = head_name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, leaf, probe)
        return
    names = [n for n, _ in _linears(head)]
    raise ConfigError(
        f"method.name: linear-probe needs one linear map on frozen features, but the head `{head_name}` "
        f"({type(head).__name__}) has {len(names)} linear layers{' (' + ', '.join(names) + ')' if names else ''}",
        hint="use method `head-only` to train the model's own head, or a PEFT method with training.train_head")


class _HeadMethod(Method):
    needs_rank = False
    init_is_identity = True
    mergeable = False
    wraps_targets = False
    forces_head = True

    def layer_count(self, d_out, d_in):
        return 0

    def adapt(self, model, targets, ctx):
        if not ctx.head_name:
            raise ConfigError(f"method.name: {self.name} needs a model with a task head",
                              hint="use a classification or causal-lm model")
        self.prepare_head(model, ctx.head_name)
        for p in model.parameters():  # the head is switched on (and counted) by adapt_model
            p.requires_grad_(False)
        self.targets = []
        return []

    def prepare_head(self, model: nn.Module, head_name: str) -> None:
        pass

    def formula(self, model, shapes, ctx):
        return 0  # the head's parameters are added by adapt_model


@register
class LinearProbe(_HeadMethod):
    name = "linear-probe"
    paper = ("Alain & Bengio, Understanding intermediate layers using linear classifier probes, ICLR 2017 workshop "
             "(arXiv:1610.01644)")

    def prepare_head(self, model, head_name):
        probe_head(model, head_name)


@register
class HeadOnly(_HeadMethod):
    name = "head-only"
    paper = ("Baseline without a paper of its own: only the model's own task head trains (e.g. RoBERTa's "
             "two-layer classification head, Liu et al., RoBERTa, arXiv:1907.11692)")
