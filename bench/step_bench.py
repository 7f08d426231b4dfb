#!/usr/bin/env python3
"""Step-time cost of the training loop's procedure hooks for a method that uses none of them (LoRA): the step
as `train.py` ran it before the hooks existed (inlined below, with torch's LambdaLR) against
`rankflow_runtime.step.Stepper.step` with `GroupSchedule`, on two identical copies of the same model, in one
process, interleaved step by step. Also checks that both give bit-identical losses.

    runtime-native/.venv/bin/python bench/step_bench.py [--model tiny-encoder] [--steps 60] [--threads 1]

Prints the median and fastest step of each and the ratios new / old (1.00 = unaffected), including the median
of the per-step ratios of adjacent (paired) steps, which is the least sensitive to load changes on a shared
machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runtime-native"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import torch  # noqa: E402

from runtime_bench import BATCH, BENCH_CONFIGS, SEQ  # noqa: E402  (the runtime benchmark's model sizes)
from rankflow_runtime.methods import get_method  # noqa: E402
from rankflow_runtime.methods.base import TrainContext, adapt_model  # noqa: E402
from rankflow_runtime.models import BUILTIN, build_model, model_info  # noqa: E402
from rankflow_runtime.optim import GroupRules, GroupSchedule, lr_lambda  # noqa: E402
from rankflow_runtime.step import Stepper  # noqa: E402


def build(model_name: str, rank: int):
    """(model, method, batch, optimizer): a fresh, identical copy on every call."""
    torch.manual_seed(0)
    info = model_info({"name": model_name, "source": "builtin", "task": BUILTIN[model_name]["task"],
                       "config": BENCH_CONFIGS[model_name]})
    model = build_model({}, info, None if info.task == "causal-lm" else 10)
    method = get_method("lora")(rank, {}, 0)
    adapt_model(model, method, info.default_targets, info.head_name, train_head=False)
    g = torch.Generator().manual_seed(0)
    if info.task == "img-cls":
        c = info.config
        batch = {"pixel_values": torch.randn(BATCH, c["channels"], c["image_size"], c["image_size"], generator=g),
                 "labels": torch.randint(0, 10, (BATCH,), generator=g)}
    else:
        ids = torch.randint(7, info.vocab_size, (BATCH, SEQ), generator=g)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                 "labels": ids.clone() if info.task == "causal-lm" else torch.randint(0, 10, (BATCH,), generator=g)}
    params = [p for p in model.parameters() if p.requires_grad]
    return model, method, batch, torch.optim.AdamW([{"params": params, "lr": 1e-4, "weight_decay": 0.0}], lr=1e-4)


def legacy_step(model, method, batch, opt, sched, ctx, max_grad_norm=1.0):
    """The pre-hook loop body of train.py (one micro-batch, fp32)."""
    method.before_forward(ctx)
    ctx.batch = batch
    loss = model(**batch).loss
    extra = method.extra_loss(ctx)
    total = loss + extra if extra is not None else loss
    if not torch.isfinite(total.detach()):
        raise RuntimeError("nan")
    ctx.loss = total
    total.backward()
    step_loss = float(loss.detach()) / 1
    method.after_backward(ctx)
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], max_grad_norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    ctx.step += 1
    method.after_step(ctx)
    return step_loss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-encoder")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    total = a.steps + 2
    m_old, meth_old, batch, opt_old = build(a.model, a.rank)
    m_new, meth_new, _, opt_new = build(a.model, a.rank)
    sched_old = torch.optim.lr_scheduler.LambdaLR(opt_old, lr_lambda("linear", 2, total))
    ctx_old = TrainContext(model=m_old, step=0, total_steps=total)
    ctx_new = TrainContext(model=m_new, step=0, total_steps=total)
    stepper = Stepper(m_new, meth_new, opt_new, ctx_new, scheduler=GroupSchedule(opt_new, "linear", 2, total),
                      rules=GroupRules(1e-4, {}, 0.0), max_grad_norm=1.0, loss_fn=lambda m, b: m(**b).loss)
    m_old.train(), m_new.train()
    times = {"old": [], "new": []}
    same = True
    runs = {"old": lambda: legacy_step(m_old, meth_old, batch, opt_old, sched_old, ctx_old),
            "new": lambda: stepper.step([batch]).loss}
    for i in range(a.steps + 2):
        got = {}
        for k in (("old", "new") if i % 2 == 0 else ("new", "old")):  # alternate who goes first
            t0 = time.perf_counter()
            got[k] = runs[k]()
            if i >= 2:  # two warm-up steps
                times[k].append(time.perf_counter() - t0)
        same &= got["old"] == got["new"]
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    best = {k: min(v) * 1000 for k, v in times.items()}
    print(f"{a.model} + lora r={a.rank}, {a.steps} steps interleaved, {a.threads} thread(s)")
    print(f"  old loop body: median {med['old']:.2f} ms, fastest {best['old']:.2f} ms")
    print(f"  Stepper.step : median {med['new']:.2f} ms, fastest {best['new']:.2f} ms")
    paired = statistics.median(n / o for n, o in zip(times["new"], times["old"]))
    print(f"  ratio new/old: median {med['new'] / med['old']:.3f}, fastest {best['new'] / best['old']:.3f}, "
          f"median of paired steps {paired:.3f}")
    print(f"  losses bit-identical over {a.steps + 2} steps: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
