"""Linear probing: the backbone stays frozen and only the task head trains.

Alain & Bengio, "Understanding intermediate layers using linear classifier probes", ICLR 2017 workshop
(arXiv:1610.01644); the standard VTAB/ViT baseline. The head always trains (training.train_head is implied).
"""
from __future__ import annotations

from .base import Method, register


@register
class LinearProbe(Method):
    name = "linear-probe"
    paper = "Alain & Bengio, Understanding intermediate layers using linear classifier probes, ICLR 2017 workshop (arXiv:1610.01644)"
    needs_rank = False
    init_is_identity = True
    mergeable = False
    wraps_targets = False
    forces_head = True

    def layer_count(self, d_out, d_in):
        return 0

    def adapt(self, model, targets, ctx):
        if not ctx.head_name:
            from ..errors import ConfigError
            raise ConfigError("method.name: linear-probe needs a model with a task head",
                              hint="use a classification or causal-lm model")
        for p in model.parameters():
            p.requires_grad_(False)
        self.targets = []
        return []

    def formula(self, model, shapes, ctx):
        return 0
