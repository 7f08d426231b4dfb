"""The server of a federated LoRA run: one round's aggregation over the clients' uploaded adapter tensors.

An upload is the client's `adapter_state_dict` after local training (every LoRA layer's `lora_A` / `lora_B` and
any other trained tensor, e.g. the task head). Per LoRA layer the aggregation is `aggregate.py`'s; every other
tensor is averaged with the same weights p_k ∝ n_k (FedAvg). `reinit` (FLoRA-style) also returns, per layer,
the exact update s·ΔW* to merge into the frozen weight, and broadcasts a fresh A (drawn from a generator seeded
by (seed, round)) with B = 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence

import torch

from . import aggregate as agg

AGGREGATIONS = ("lora-fair", "fedit", "reinit")


@dataclass
class LoraLayer:
    """A LoRA layer of the model: its module name, scale s, shapes."""

    name: str
    scaling: float
    rank: int
    d_in: int
    d_out: int

    @property
    def a_key(self) -> str:
        return f"{self.name}.lora_A"

    @property
    def b_key(self) -> str:
        return f"{self.name}.lora_B"


def lora_layers(model: torch.nn.Module) -> List[LoraLayer]:
    """The model's layers with `lora_A` / `lora_B` parameters (in module order)."""
    out = []
    for name, m in model.named_modules():
        a, b = getattr(m, "lora_A", None), getattr(m, "lora_B", None)
        if isinstance(a, torch.nn.Parameter) and isinstance(b, torch.nn.Parameter):
            out.append(LoraLayer(name=name, scaling=float(m.scaling), rank=a.shape[0], d_in=a.shape[1],
                                 d_out=b.shape[0]))
    return out


@dataclass
class RoundResult:
    broadcast: Dict[str, torch.Tensor]  # the next global adapter state (same names, shapes, dtypes as an upload)
    merges: Dict[str, torch.Tensor] = field(default_factory=dict)  # layer name -> s·ΔW* (reinit only)
    report: Dict[str, float] = field(default_factory=dict)


@dataclass
class ServerSettings:
    aggregation: str = "lora-fair"
    lam: float = 0.01
    solver: str = "gd"
    solver_lr: float = 1e-2
    solver_steps: int = 1000


def aggregate_round(uploads: Mapping[int, Mapping[str, torch.Tensor]], sizes: Mapping[int, int],
                    layers: Sequence[LoraLayer], settings: ServerSettings, generator: torch.Generator) -> RoundResult:
    """Aggregate one round. `uploads[k]` / `sizes[k]` for the sampled clients k (any order; processed in
    ascending k, so the result does not depend on the order the uploads arrived in)."""
    clients = sorted(uploads)
    p = agg.client_weights([sizes[k] for k in clients])
    first = uploads[clients[0]]
    lora_keys = {x for layer in layers for x in (layer.a_key, layer.b_key)}
    broadcast: Dict[str, torch.Tensor] = {}
    for key, t in first.items():  # FedAvg for everything that is not a LoRA factor
        if key not in lora_keys:
            broadcast[key] = agg.weighted_mean([uploads[k][key] for k in clients], p).to(t.dtype)
    aggs = [agg.aggregate_layer([uploads[k][layer.a_key] for k in clients],
                                [uploads[k][layer.b_key] for k in clients], p) for layer in layers]
    reinit = settings.aggregation == "reinit"
    deltas = (agg.corrections(aggs, settings.lam, settings.solver, settings.solver_lr, settings.solver_steps)
              if settings.aggregation == "lora-fair" else [torch.zeros_like(la.b_bar) for la in aggs])
    b_after, merges = [], {}
    for layer, la, delta in zip(layers, aggs, deltas):
        dtype = first[layer.a_key].dtype
        if reinit:
            merges[layer.name] = (layer.scaling * agg.ideal_delta([uploads[k][layer.a_key] for k in clients],
                                                                  [uploads[k][layer.b_key] for k in clients], p))
            broadcast[layer.a_key] = agg.lora_init_a(layer.rank, layer.d_in, generator).to(dtype)
            broadcast[layer.b_key] = torch.zeros(layer.d_out, layer.rank, dtype=dtype)
            b_after.append(la.b_bar)
        else:
            broadcast[layer.a_key] = la.a_bar.to(dtype)
            broadcast[layer.b_key] = (la.b_bar + delta).to(dtype)
            b_after.append(la.b_bar + delta)
    exact = [reinit] * len(aggs)
    report = agg.report(aggs, b_after, exact).as_dict() if aggs else {}
    return RoundResult(broadcast=broadcast, merges={k: v.to(first[layers[0].a_key].dtype) for k, v in merges.items()},
                       report=report)


def payload_numel(state: Mapping[str, torch.Tensor]) -> int:
    """Elements a client uploads (and the server broadcasts): LoRA-FAIR's payload equals FedIT's."""
    return sum(int(t.numel()) for t in state.values())


def split_uploads(flat: Mapping[str, torch.Tensor]) -> Dict[int, Dict[str, torch.Tensor]]:
    """`{"<k>/<tensor>": t}` (a checkpoint's uploads file) -> `{k: {tensor: t}}`."""
    out: Dict[int, Dict[str, torch.Tensor]] = {}
    for key, t in flat.items():
        k, _, name = key.partition("/")
        out.setdefault(int(k), {})[name] = t
    return out


def join_uploads(uploads: Mapping[int, Mapping[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    return {f"{k}/{name}": t for k, state in uploads.items() for name, t in state.items()}
