"""`pretrain`: causal-LM pretraining from scratch (SLTrain and its full-rank / low-rank baselines).

Han et al., "SLTrain: a sparse plus low-rank approach for parameter and memory efficient pretraining", NeurIPS 2024
(arXiv:2406.02214); the procedure follows the official `torchrun_main.py` (andyjm3/SLTrain@2335d62): a randomly
initialised causal LM (the built-in decoder or an HF Llama built from its config), AdamW over every trainable
parameter, linear warmup then cosine decay to `min_lr_ratio`·lr (`--scheduler cosine --min_lr_ratio 0.1`, the
official default), evaluation as loss and perplexity on a held-out split (`corpus/files`, `corpus/synthetic` or
any causal-LM dataset). It is the standard training loop with that schedule floor; at the end it writes the
pretrained model as a dense `model` artifact (SLTrain's s·B·A + S folded into plain linears) for downstream
fine-tuning, and reports in `done.stats`:

* `tokens_per_s`: training tokens per second over the run (the `progress` events carry it per window);
* `peak_mem_mb`: the process peak (CUDA allocator peak on a GPU, max RSS on the CPU);
* `state_mb`: the training state in memory, computed exactly — parameters (fp32) + their gradients + AdamW's
  two moments for every trainable parameter, + frozen parameters and buffers — the number the paper's memory
  comparisons are about, independent of allocator noise;
* `params`: the parameters of the pretrained model; `trainable`: those trained.

Methods: `sltrain` (with `sparsity: 0` it is the low-rank-only baseline) and `full` (full-rank pretraining).
Deviations: the warmup is rankflow's (step+1)/warmup (the official lambda gives lr 0 on the first step); the
cosine is not cyclical (the official default cycle is the whole run, so the same).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

from ..errors import ConfigError
from ..methods.base import option
from ..structures import model_meta, plain_model, plain_state
from ..train import Finished, LoopHooks, run_training
from .base import Procedure, RunContext, register_procedure


@dataclass
class PretrainOptions:
    min_lr_ratio: float = option(0.1, help="the cosine / linear decay ends at this fraction of training.lr "
                                           "(official SLTrain: 0.1)", min=0.0, max=1.0)
    save_model: bool = option(True, help="write the pretrained model as a dense `model` artifact")


def state_mb(model) -> float:
    """Parameters + gradients + AdamW moments of the trainable tensors, + frozen tensors and buffers (MiB)."""
    b = 0
    for p in model.parameters():
        b += p.numel() * p.element_size() * (4 if p.requires_grad else 1)
    for t in model.buffers():
        b += t.numel() * t.element_size()
    return b / 2**20


@register_procedure
class Pretrain(Procedure):
    name = "pretrain"
    summary = ("pretrain a causal LM from random weights (SLTrain, or full-rank / low-rank baselines): cosine decay "
               "to min_lr_ratio·lr, tokens/s and memory in stats, the dense model as an artifact")
    paper = "Han et al., SLTrain, NeurIPS 2024 (arXiv:2406.02214)"
    Options = PretrainOptions
    outputs = {"model": "model"}
    methods = ("sltrain", "full")

    def outputs_for(self) -> Dict[str, str]:
        return dict(self.outputs) if self.options.save_model else {}

    def check(self, spec) -> None:
        super().check(spec)
        if spec.model["task"] != "causal-lm":
            raise ConfigError(f"model.task: pretrain trains causal LMs, not {spec.model['task']}",
                              hint='set model.task to "causal-lm" (tiny-decoder, or an HF Llama config)')
        if spec.model["source"] == "hf" and not spec.model["random_init"]:
            raise ConfigError("model.random_init: pretraining starts from random weights",
                              hint="set model.random_init to true (or fine-tune the pretrained model instead)")

    def run(self, ctx: RunContext) -> int:
        save = self.options.save_model

        def finish(f: Finished) -> Dict[str, float]:
            stats = {"state_mb": state_mb(f.model), "peak_mem_mb": f.peak_mem_mb,
                     "trainable": float(sum(p.numel() for p in f.model.parameters() if p.requires_grad))}
            if f.tokens_per_s is not None:
                stats["tokens_per_s"] = f.tokens_per_s
            model = plain_model(f.model)
            stats["params"] = float(sum(p.numel() for p in model.parameters()))
            if save:
                ctx.write_artifact("model", "model", plain_state(model),
                                   meta=model_meta(ctx.spec, f.info, None, [], metrics=dict(f.metrics),
                                                   pretrained_with=dict(ctx.spec.method)))
            return stats

        hooks = LoopHooks(min_lr_ratio=self.options.min_lr_ratio, finish=finish)
        return run_training(ctx.spec, ctx.out_dir, resume=ctx.resume, stop_at_step=ctx.stop_at_step, hooks=hooks)
