"""`combine`: evaluate two adapters merged together into the frozen model — ΔW₁ + ΔW₂ (`mode: sum`) or
(ΔW₁ + ΔW₂)/2 (`average`) — without training: the baselines Break-for-Make is compared with (two plain LoRAs,
one trained per concept, summed or averaged).

Inputs `first`, `second`: adapter artifacts of a mergeable method with this run's method spec (name, rank,
options, targets) and seed; `model` (optional): the model both were trained on. Events: `started`, one `eval` of
the run's evaluation split, `done` (trainable_params: the two adapters' together).
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Dict, List

import torch

from .. import __version__
from ..build import build, data_model_info, resolve_info
from ..errors import EXIT_OK, ConfigError
from ..events import emit, finite_metrics
from ..methods import get_method
from ..methods.base import adapted_layers, load_adapter_state_dict, option
from ..train import pick_device
from .b4m import check_adapter_meta
from .base import InputDecl, Procedure, RunContext, register_procedure


@dataclass
class CombineOptions:
    mode: str = option("sum", help="sum: W0 + ΔW₁ + ΔW₂; average: W0 + (ΔW₁ + ΔW₂)/2", choices=["sum", "average"])


def merged_deltas(model, adapters: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """{layer name: Σ ΔW_i} over the adapters, each loaded into `model` in turn."""
    out: Dict[str, torch.Tensor] = {}
    names = {id(m): n for n, m in model.named_modules()}
    for state in adapters:
        load_adapter_state_dict(model, state)
        with torch.no_grad():
            for layer in adapted_layers(model):
                d = layer.delta_weight().detach().clone()
                key = names[id(layer)]
                out[key] = d if key not in out else out[key] + d
    return out


@register_procedure
class Combine(Procedure):
    name = "combine"
    summary = "evaluate the sum or the average of two adapters merged into the frozen model (no training)"
    Options = CombineOptions
    trains = False
    inputs = {"first": InputDecl("adapter", True, "the first adapter"),
              "second": InputDecl("adapter", True, "the second adapter"),
              "model": InputDecl("model", False, "the model both adapters were trained on")}

    def check(self, spec) -> None:
        super().check(spec)
        if not get_method(spec.method["name"]).mergeable:
            raise ConfigError(f"method.name: combine merges ΔW into the weights; {spec.method['name']} is not "
                              "mergeable", hint="combine adapters of a mergeable method (lora, dora, plp, ...)")

    def run(self, ctx: RunContext) -> int:
        from ..data import evaluate, load_task_data
        t_start, spec = time.time(), ctx.spec
        for name in ("first", "second"):
            check_adapter_meta(spec, ctx.inputs[name], name)
        device = pick_device(spec.device)
        info = resolve_info(spec)
        task_data = load_task_data(dict(spec.dataset), data_model_info(info), spec.seed)
        built = build(spec, info, task_data.num_labels, device, base=ctx.inputs.get("model"))
        model = built.model
        deltas = merged_deltas(model, [ctx.inputs["first"].tensors(), ctx.inputs["second"].tensors()])
        scale = 1.0 if self.options.mode == "sum" else 0.5
        names = {id(m): n for n, m in model.named_modules()}
        with torch.no_grad():
            for layer in adapted_layers(model):
                layer.base.weight.add_((scale * deltas[names[id(layer)]]).to(layer.base.weight.dtype))
                layer.merged = True  # the layer is its base now: W0 + the combination
        emit("started", pid=os.getpid(), device=str(device), torch=torch.__version__,
             python=platform.python_version(), runtime=__version__, step=0, total_steps=1,
             trainable_params=2 * built.trainable, total_params=built.total)
        metrics = finite_metrics(evaluate(model, task_data, spec.training["eval_batch_size"], device))
        emit("eval", step=0, split=task_data.eval_split, metrics=metrics)
        emit("done", step=0, metrics=metrics, best_metrics=metrics, best_step=0,
             trainable_params=2 * built.trainable, total_params=built.total, wall_time_s=time.time() - t_start)
        return EXIT_OK
