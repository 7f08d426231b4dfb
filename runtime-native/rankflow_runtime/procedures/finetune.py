"""`finetune`: the standard training loop (`train.run_training`), the default procedure.

With an input `model` (a model artifact of an upstream run: pretrained by `pretrain`, compressed by `compress`,
pruned by `prune`, or fine-tuned and merged by another `finetune`) the run's backbone is that model instead of
the one its model spec builds; the run's method adapts it as usual (targets naming a layer that LoRD factored
adapt both factors). Outputs, when asked for in `procedure.options.outputs` (the planner asks for what the
downstream stages read):

* `adapter`: the trained tensors (`adapter_state_dict`: method parameters, persistent method buffers, a trained
  head), with the method spec, the adapted module names and the input model's meta, so a later run can rebuild
  or recover it (LoRAM's `recover`, Break-for-Make's merge);
* `model`: the fine-tuned model as a plain model artifact (a mergeable method merged into its base, full
  fine-tuning as is; other methods are refused when the run starts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

from ..build import build
from ..errors import ConfigError
from ..methods import get_method
from ..methods.base import adapter_state_dict, option
from ..structures import model_meta, plain_model, plain_state
from ..train import Finished, LoopHooks, run_training
from .base import InputDecl, Procedure, RunContext, register_procedure

OUTPUTS = ("adapter", "model")


@dataclass
class FinetuneOptions:
    outputs: list = option([], help="artifacts to write at the end: adapter (the trained tensors) and/or model "
                                    "(the merged model); the planner sets what downstream stages read")


def check_outputs(outputs: List[str], method_name: str) -> None:
    for o in outputs:
        if o not in OUTPUTS:
            raise ConfigError(f"procedure.options.outputs: unknown output {o!r}", hint=f"use {', '.join(OUTPUTS)}")
    cls = get_method(method_name)
    foldable = cls.mergeable or not cls.wraps_targets or getattr(cls, "foldable", False)
    if "model" in outputs and not foldable:
        raise ConfigError(f"procedure.options.outputs: a model output needs a mergeable method; {method_name} is not",
                          hint="write an adapter output instead, or fine-tune with a mergeable method (lora, dora...)")


def adapter_meta(spec, method, info, base) -> Dict[str, Any]:
    return {"method": dict(spec.method), "targets": list(method.targets), "model": dict(spec.model),
            "head_name": info.head_name, "seed": int(spec.seed),
            "base_model": dict(base.meta) if base is not None else None,
            "base_run": base.run_id if base is not None else None}


def make_finish(ctx: RunContext, outputs: List[str], base) -> Any:
    def finish(f: Finished) -> Dict[str, float]:
        if "adapter" in outputs:
            ctx.write_artifact("adapter", "adapter", adapter_state_dict(f.model),
                               meta=adapter_meta(ctx.spec, f.method, f.info, base))
        if "model" in outputs:
            model = plain_model(f.model)
            ctx.write_artifact("model", "model", plain_state(model),
                               meta=model_meta(ctx.spec, f.info, f.task_data.num_labels, [], base=base,
                                               metrics=dict(f.metrics)))
        return {}
    return finish


@register_procedure
class Finetune(Procedure):
    name = "finetune"
    summary = "train the run's method on its dataset (the standard loop); optionally from an upstream model"
    Options = FinetuneOptions
    inputs = {"model": InputDecl("model", False, "an upstream run's model artifact to fine-tune instead of the "
                                 "model the spec builds")}
    outputs = {"adapter": "adapter", "model": "model"}

    def outputs_for(self) -> Dict[str, str]:
        return {o: self.outputs[o] for o in self.options.outputs}

    def check(self, spec) -> None:
        super().check(spec)
        check_outputs(self.options.outputs, spec.method["name"])

    def run(self, ctx: RunContext) -> int:
        base = ctx.inputs.get("model")
        hooks = LoopHooks(build=(lambda spec, info, n, device: build(spec, info, n, device, base=base))
                          if base is not None else None,
                          finish=make_finish(ctx, list(self.options.outputs), base) if self.options.outputs else None)
        return run_training(ctx.spec, ctx.out_dir, resume=ctx.resume, stop_at_step=ctx.stop_at_step, hooks=hooks)

