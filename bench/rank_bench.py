#!/usr/bin/env python3
"""Cost of the methods that move rank during training, over LoRA at the same FINAL budget, in one run:
step time over a whole short schedule (allocation phases included), the share of the step spent in the
allocation hooks themselves, and training memory during and after allocation.

    runtime-native/.venv/bin/python bench/rank_bench.py [--steps 60] [--rank 8] [--device cpu|cuda] [--threads 1]

Configurations (tiny-encoder of the runtime benchmark, hidden 256, 4 layers, q/v targets, batch 8 × 128):
  lora r          the reference
  adalora         rank r (target), init_r 1.5·r; budget falls over the middle 60 % (masking every step)
  increlora       rank r, init 1, k ⌈r/2⌉-table, top_h M/2, growth every T/10 steps after T/10
  triadaptlora    rank r, init 1, k ⌊r/2⌋, growth every T/10 steps after T/10
  diffora         rank 2r, ρ 0.5 (final count = LoRA r's), search over the first 25 %
Every configuration is built once (same backbone seed) with its own Stepper and AdamW; the steps are
interleaved (one step of each, in a rotating order) so load on a shared machine hits all alike. Reported:
  step ×LoRA      mean step time over the T steps ÷ LoRA's (medians of per-phase would hide the phase costs)
  hooks %         time inside after_backward / after_optimizer_step / after_step (+ growth) ÷ step time
  mem ×LoRA       CPU: accounted bytes (saved activations + trainable + grads + optimizer state + method
                  tensors, backbone excluded; bench/methods_bench.py) at mid-schedule and at the end;
                  CUDA: peak allocated during one step minus the backbone
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runtime-native"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import torch  # noqa: E402

from methods_bench import Config, accounted_memory  # noqa: E402
from runtime_bench import BATCH, BENCH_CONFIGS, SEQ  # noqa: E402
from rankflow_runtime.methods import get_method  # noqa: E402
from rankflow_runtime.methods.base import TrainContext, adapt_model  # noqa: E402
from rankflow_runtime.models import BUILTIN, build_model, model_info  # noqa: E402
from rankflow_runtime.optim import GroupRules, GroupSchedule  # noqa: E402
from rankflow_runtime.step import Stepper  # noqa: E402

HOOKS = ("after_backward", "after_optimizer_step", "after_step")


def configs(r: int, T: int) -> Dict[str, tuple]:
    every = max(1, T // 10)
    return {
        "lora": ("lora", r, {}),
        "adalora": ("adalora", r, {"tinit": T // 5, "tfinal": T // 5, "orth_reg_weight": 0.1}),
        "increlora": ("increlora", r, {"init_warmup": every, "incre_interval": every, "top_h": 4}),
        "triadaptlora": ("triadaptlora", r, {"init_warmup": every, "incre_interval": every}),
        "diffora": ("diffora", 2 * r, {"ratio": 0.5, "search_ratio": 0.25}),
    }


class Run:
    def __init__(self, label: str, method: str, rank: int, options: dict, T: int, device):
        torch.manual_seed(0)
        info = model_info({"name": "tiny-encoder", "source": "builtin", "task": "seq-cls",
                           "config": BENCH_CONFIGS["tiny-encoder"]})
        self.model = build_model({}, info, 10)
        self.method = get_method(method)(rank, options, 0)
        adapt_model(self.model, self.method, info.default_targets, info.head_name, False)
        self.model.to(device).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW([{"params": params, "lr": 1e-4, "weight_decay": 0.0}], lr=1e-4)
        self.ctx = TrainContext(model=self.model, step=0, total_steps=T)
        self.stepper = Stepper(self.model, self.method, self.opt, self.ctx,
                               scheduler=GroupSchedule(self.opt, "linear", 0, T), rules=GroupRules(1e-4, {}, 0.0),
                               max_grad_norm=1.0, loss_fn=lambda m, b: m(**b).loss)
        self.method.on_train_start(self.ctx)
        self.label, self.times, self.hook_time, self.mem = label, [], 0.0, {}
        self.device = device
        self._wrap_hooks()

    def _wrap_hooks(self) -> None:
        for name in HOOKS:
            fn = getattr(self.method, name)

            def timed(ctx, fn=fn):
                self._sync()
                t0 = time.perf_counter()
                fn(ctx)
                self._sync()
                self.hook_time += time.perf_counter() - t0
            setattr(self.method, name, timed)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self, batch) -> None:
        self._sync()
        t0 = time.perf_counter()
        self.stepper.step([batch])
        self._sync()
        self.times.append(time.perf_counter() - t0)

    def memory(self, batch, backbone: set, base_bytes: int) -> int:
        """Bytes of one training step on a copy (the run itself is not advanced)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.stepper.step([batch])  # counted as a normal step of the schedule on CUDA
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - base_bytes
        model, method, opt = copy.deepcopy((self.model, self.method, self.opt))
        for name in HOOKS:  # the copy runs its own (untimed) hooks, not the timers bound to this run
            method.__dict__.pop(name, None)
        c = Config("tiny-encoder", self.label, "rankflow", model, method, batch, opt=opt)
        c.ctx = TrainContext(model=model, step=self.ctx.step, total_steps=self.ctx.total_steps, optimizer=opt)
        Stepper(model, method, opt, c.ctx, rules=GroupRules(1e-4, {}, 0.0))
        return accounted_memory(c, backbone)


def make_batch(device):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(7, BENCH_CONFIGS["tiny-encoder"]["vocab_size"], (BATCH, SEQ), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": torch.randint(0, 10, (BATCH,), generator=g).to(device)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="comma list of configurations (default: all)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    T = a.steps
    want = [x for x in a.only.split(",") if x] or list(configs(a.rank, T))
    runs = [Run(k, *v, T=T, device=device) for k, v in configs(a.rank, T).items() if k in want or k == "lora"]
    info = model_info({"name": "tiny-encoder", "source": "builtin", "task": "seq-cls",
                       "config": BENCH_CONFIGS["tiny-encoder"]})
    torch.manual_seed(0)
    base = build_model({}, info, 10)
    backbone = {n for n, _ in base.named_parameters()} | {n for n, _ in base.named_buffers()}
    base_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    del base
    batch = make_batch(device)
    t0 = time.perf_counter()
    for s in range(T):
        k = s % len(runs)
        for run in runs[k:] + runs[:k]:
            if s == T // 2:
                run.mem["mid"] = run.memory(batch, backbone, base_bytes)
            run.step(batch)
    for run in runs:
        run.mem["end"] = run.memory(batch, backbone, base_bytes)
    wall = time.perf_counter() - t0
    ref = next(r for r in runs if r.label == "lora")
    mean = {r.label: statistics.fmean(r.times) for r in runs}
    print(f"# rank_bench: tiny-encoder {BENCH_CONFIGS['tiny-encoder']['hidden_size']}×"
          f"{BENCH_CONFIGS['tiny-encoder']['num_layers']}, q/v, batch {BATCH}×{SEQ}, T = {T} steps interleaved, "
          f"final budget of LoRA r={a.rank}, device {a.device}, threads {a.threads}, torch {torch.__version__}; "
          f"{wall:.0f} s")
    hdr = (f"{'method':<13} {'rank':>4} {'final pattern':>13} {'trainable end':>13} {'step ms':>8} {'x LoRA':>7} "
           f"{'hooks %':>7} {'mem mid xLoRA':>13} {'mem end xLoRA':>13}")
    print(hdr)
    print("-" * len(hdr))
    for r in runs:
        alloc = r.method.allocation(r.model)
        final = alloc["params"] if alloc else sum(p.numel() for n, p in r.model.named_parameters()
                                                  if p.requires_grad and "classifier" not in n)
        trainable = sum(p.numel() for n, p in r.model.named_parameters() if p.requires_grad
                        and "classifier" not in n)
        hooks = 100 * r.hook_time / sum(r.times)
        print(f"{r.label:<13} {r.method.rank:>4} {final:>13,} {trainable:>13,} {mean[r.label] * 1e3:>8.2f} "
              f"{mean[r.label] / mean['lora']:>7.2f} {hooks:>7.1f} {r.mem['mid'] / ref.mem['mid']:>13.2f} "
              f"{r.mem['end'] / ref.mem['end']:>13.2f}")
    if not math.isfinite(sum(mean.values())):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
