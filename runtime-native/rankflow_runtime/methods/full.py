"""Full fine-tuning: every parameter of the model trains (the baseline every PEFT paper compares to).

Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification", ACL 2018 (arXiv:1801.06146);
Devlin et al., "BERT", NAACL 2019 (arXiv:1810.04805). The method's targets are ignored.
"""
from __future__ import annotations

from .base import Method, register


@register
class Full(Method):
    name = "full"
    paper = "Devlin et al., BERT: Pre-training of Deep Bidirectional Transformers, NAACL 2019 (arXiv:1810.04805)"
    needs_rank = False
    init_is_identity = True
    mergeable = False
    wraps_targets = False
    trains_backbone = True

    def layer_count(self, d_out, d_in):
        return d_out * d_in

    def adapt(self, model, targets, ctx):
        for p in model.parameters():
            p.requires_grad_(True)
        self.targets = []
        return []

    def formula(self, model, shapes, ctx):
        return sum(p.numel() for p in model.parameters())
