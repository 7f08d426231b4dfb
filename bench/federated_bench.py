#!/usr/bin/env python3
"""Cost of LoRA-FAIR's federated round and of Break-for-Make's preconditioner, as ratios measured in one process.

1. A federated round of the `lora-fair` procedure (K clients × E local steps through the procedure's own client
   code: per-client RNG / data position / optimizer swaps, then the server aggregation) against K·E centralised
   steps of the same model, batch size and optimizer (one `Stepper`, one optimizer), interleaved round by round.
   The aggregation is timed separately for FedIT, LoRA-FAIR (`gd`, the default 1000 steps per layer) and `ridge`.
2. One optimizer step of `RiemannianAdamW` (the make stage) against torch's AdamW on the same PLP model and
   gradients, and the whole training step (forward, backward, step) with each.

    runtime-native/.venv/bin/python bench/federated_bench.py [--clients 8] [--local-steps 5] [--repeats 5]

Prints medians and the ratios (1.00 = the same cost). The evaluation after each round is left out of both sides.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runtime-native"))

import torch  # noqa: E402

from rankflow_runtime import b4m  # noqa: E402
from rankflow_runtime.federated.server import ServerSettings, aggregate_round  # noqa: E402
from rankflow_runtime.methods.base import TrainContext  # noqa: E402
from rankflow_runtime.optim import GroupRules, make_optimizer  # noqa: E402
from rankflow_runtime.procedures.base import RunContext  # noqa: E402
from rankflow_runtime.procedures.lora_fair import FederatedRun, LoraFairOptions  # noqa: E402
from rankflow_runtime.spec import example_spec, parse_spec  # noqa: E402
from rankflow_runtime.step import Stepper  # noqa: E402
from rankflow_runtime.testing import adapted_model, synthetic_batch  # noqa: E402

VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 128, "num_heads": 4, "intermediate_size": 256,
       "num_layers": 4}


def _spec(clients: int, local: int):
    s = example_spec(**{
        "model": {"name": "tiny-vit", "source": "builtin", "task": "img-cls", "config": VIT, "random_init": True},
        "dataset": {"name": "synthetic/img-cls", "data_root": None, "max_length": 32, "train_size": 64 * clients,
                    "eval_size": 16, "eval_split": "validation", "metric": "accuracy", "options": {}},
        "method": {"name": "lora", "rank": 8, "options": {}, "targets": []},
        "training.max_steps": local * 100, "training.batch_size": 16, "training.schedule": "constant"})
    s["procedure"] = {"name": "lora-fair", "options": {"num_clients": clients, "local_steps": local}}
    return parse_spec(s)


def bench_round(clients: int, local: int, repeats: int) -> None:
    spec = _spec(clients, local)
    opts = LoraFairOptions(num_clients=clients, local_steps=local)
    fed = FederatedRun(opts, RunContext(spec=spec, out_dir=tempfile.mkdtemp()))
    fed.setup()
    central_opt = make_optimizer(spec, fed.model, fed.method, fed.built.info.head_name)
    ctx = TrainContext(model=fed.model, step=0, total_steps=10**6)
    stepper = Stepper(fed.model, fed.method, central_opt, ctx, rules=GroupRules.from_training(dict(spec.training)),
                      max_grad_norm=spec.training["max_grad_norm"])
    batch = fed.task_data.collate([fed.task_data.train[i] for i in range(spec.training["batch_size"])])
    t_round, t_central, t_agg = [], [], {"fedit": [], "lora-fair": [], "ridge": []}
    g = torch.Generator().manual_seed(0)
    for r in range(repeats):
        fed.server.partial = {}
        t0 = time.perf_counter()
        fed.train_clients(r, list(range(clients)), _NoPreempt())
        fed.aggregate(r, list(range(clients)))
        t_round.append(time.perf_counter() - t0)
        uploads = {k: fed.server.partial[k].upload for k in range(clients)}
        for name, settings in (("fedit", ServerSettings("fedit")), ("lora-fair", ServerSettings("lora-fair")),
                               ("ridge", ServerSettings("lora-fair", solver="ridge"))):
            s = time.perf_counter()
            aggregate_round(uploads, {k: fed.sizes[k] for k in range(clients)}, fed.layers, settings, g)
            t_agg[name].append(time.perf_counter() - s)
        t3 = time.perf_counter()
        for _ in range(clients * local):
            stepper.step([batch])
        t_central.append(time.perf_counter() - t3)
    med = statistics.median
    print(f"federated round ({clients} clients x {local} local steps, tiny-vit {VIT['hidden_size']}d x "
          f"{VIT['num_layers']} layers, LoRA r=8 on q/v):")
    print(f"  round (clients + LoRA-FAIR aggregation)   {med(t_round) * 1e3:9.1f} ms")
    print(f"  {clients * local} centralised steps                    {med(t_central) * 1e3:9.1f} ms")
    print(f"  ratio round / centralised                 {med(t_round) / med(t_central):9.2f}")
    for name, ts in t_agg.items():
        print(f"  aggregation {name:<10}                    {med(ts) * 1e3:9.2f} ms "
              f"({med(ts) / med(t_central) * 100:5.1f} % of the centralised steps)")


class _NoPreempt:
    requested = False


def bench_preconditioner(repeats: int) -> None:
    model, method, _, _ = adapted_model("tiny-encoder", "plp", rank=8, targets=["query", "key", "value", "out"],
                                        options={"basis_rows": 0})
    batch = synthetic_batch("tiny-encoder", n=16)
    params = [p for p in model.parameters() if p.requires_grad]
    opts = {"riemannian": b4m.RiemannianAdamW(params, lr=1e-4, pairs=b4m.plp_pairs(model)),
            "adamw": torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)}
    step_t = {k: [] for k in opts}
    full_t = {k: [] for k in opts}
    for _ in range(repeats * 20):
        for name, opt in opts.items():
            t0 = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            t1 = time.perf_counter()
            opt.step()
            t2 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            step_t[name].append(t2 - t1)
            full_t[name].append(t2 - t0)
    med = statistics.median
    print("make stage optimizer (PLP r=8 on q/k/v/out of the tiny encoder):")
    for name in opts:
        print(f"  {name:<10} optimizer step {med(step_t[name]) * 1e3:8.3f} ms   training step "
              f"{med(full_t[name]) * 1e3:8.3f} ms")
    print(f"  ratio RiemannianAdamW / AdamW: optimizer step {med(step_t['riemannian']) / med(step_t['adamw']):.2f}, "
          f"training step {med(full_t['riemannian']) / med(full_t['adamw']):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--local-steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bench_round(a.clients, a.local_steps, a.repeats)
    bench_preconditioner(a.repeats)


if __name__ == "__main__":
    main()
