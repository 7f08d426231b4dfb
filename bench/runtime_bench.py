#!/usr/bin/env python3
"""Runtime benchmark (CPU): training-step time and peak memory of PEFT methods on the built-in models,
as ratios measured in one run.

    runtime-native/.venv/bin/python bench/runtime_bench.py                    # frozen forward, LoRA, full FT
    runtime-native/.venv/bin/python bench/runtime_bench.py --methods all      # every registered method
    runtime-native/.venv/bin/python bench/runtime_bench.py --methods lora,vera --models tiny-decoder --json out.json

Memory: each (model, method) runs in its own child process, so peak memory is not polluted by earlier
measurements: the child builds the model and a batch, resets the kernel's peak-RSS counter
(/proc/self/clear_refs), runs three steps and reports the peak RSS growth over the pre-training baseline
(activations, gradients, optimizer state). Time: one child per model builds every method's model and
interleaves their steps (A, B, C, A, B, C, ...), so load changes on a shared machine hit all methods alike;
it reports the fastest step (the median is kept in --json). "frozen" is a forward pass of the un-adapted
model under no_grad: the floor any method pays.
Ratios are printed against LoRA and against full fine-tuning. Threads are pinned (default 1) because the
machine may be shared; absolute numbers are only comparable within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runtime-native"))

# Sized so a step takes tens of milliseconds on one core: large enough that framework overhead does not
# dominate, small enough for a shared CPU.
BENCH_CONFIGS = {
    "tiny-encoder": dict(vocab_size=2048, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
                         max_position=128),
    "tiny-vit": dict(image_size=64, patch_size=8, channels=3, hidden_size=256, num_layers=4, num_heads=4,
                     intermediate_size=1024),
    "tiny-decoder": dict(vocab_size=2048, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=4,
                         intermediate_size=688, max_position=256),
}
BATCH, SEQ = 8, 128


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def setup(model_name: str, method_name: str, rank: int):
    """(step function, trainable, total) for one (model, method)."""
    import torch

    from rankflow_runtime.methods import get_method
    from rankflow_runtime.methods.base import adapt_model, total_numel, trainable_numel
    from rankflow_runtime.models import BUILTIN, build_model, model_info

    torch.manual_seed(0)
    info = model_info({"name": model_name, "source": "builtin", "task": BUILTIN[model_name]["task"],
                       "config": BENCH_CONFIGS[model_name]})
    num_labels = None if info.task == "causal-lm" else 10
    model = build_model({}, info, num_labels)
    g = torch.Generator().manual_seed(0)
    if info.task == "img-cls":
        c = info.config
        batch = {"pixel_values": torch.randn(BATCH, c["channels"], c["image_size"], c["image_size"], generator=g),
                 "labels": torch.randint(0, 10, (BATCH,), generator=g)}
    else:
        ids = torch.randint(7, info.vocab_size, (BATCH, SEQ), generator=g)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        batch["labels"] = ids.clone() if info.task == "causal-lm" else torch.randint(0, 10, (BATCH,), generator=g)

    frozen = method_name == "frozen"
    if frozen:
        for p in model.parameters():
            p.requires_grad_(False)
        opt = None
    else:
        cls = get_method(method_name)
        method = cls(rank if cls.needs_rank else None, dict(cls.test_options), 0)
        adapt_model(model, method, info.default_targets, info.head_name, train_head=False)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        if frozen:
            with torch.no_grad():
                model(**batch)
            return
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.train(not frozen)
    return step, (0 if frozen else trainable_numel(model)), total_numel(model)


def child_memory(model_name: str, method_name: str, rank: int, steps: int) -> dict:
    """Peak RSS growth of training steps over the built model (own process, so nothing else pollutes it)."""
    import gc
    step, trainable, total = setup(model_name, method_name, rank)
    gc.collect()
    rss0 = _rss_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
        peak_ok = True
    except OSError:
        peak_ok = False
    for _ in range(steps):
        step()
    peak = _rss_kb("VmHWM")
    return {"model": model_name, "method": method_name, "peak_extra_mb": (peak - rss0) / 1024 if peak_ok else float("nan"),
            "trainable": trainable, "total": total}


def child_time(model_name: str, methods: list, rank: int, steps: int, warmup: int) -> list:
    """Step times of all methods in one process, interleaved step by step (A, B, C, A, B, C, ...), so a
    load change on a shared machine hits every method alike."""
    fns = {m: setup(model_name, m, rank)[0] for m in methods}
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {m: [] for m in methods}
    for _ in range(steps):
        for m, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[m].append(time.perf_counter() - t0)
    return [{"model": model_name, "method": m, "step_ms": 1000 * min(t), "median_ms": 1000 * statistics.median(t)}
            for m, t in times.items()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(BENCH_CONFIGS))
    ap.add_argument("--methods", default="frozen,lora,full",
                    help='comma list of registered methods (plus "frozen"), or "all"')
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--child-mem", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--child-time", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child_mem or args.child_time:
        import torch
        torch.set_num_threads(args.threads)
        if args.child_mem:
            print(json.dumps(child_memory(args.child_mem[0], args.child_mem[1], args.rank, 3)))
        else:
            print(json.dumps(child_time(args.child_time[0], args.child_time[1].split(","), args.rank, args.steps,
                                        args.warmup)))
        return 0

    if args.methods == "all":
        from rankflow_runtime.methods import registry
        methods = ["frozen"] + list(registry())
    else:
        methods = args.methods.split(",")
    rows = []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    common = ["--rank", str(args.rank), "--steps", str(args.steps), "--warmup", str(args.warmup),
              "--threads", str(args.threads)]

    def child(flag, a, b):
        p = subprocess.run([sys.executable, os.path.abspath(__file__), flag, a, b, *common], capture_output=True,
                           text=True, env=env)
        if p.returncode != 0:
            print(f"# {a} {b}: failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
            return None
        return json.loads(p.stdout.strip().splitlines()[-1])

    for model_name in args.models.split(","):
        mem = {m: child("--child-mem", model_name, m) for m in methods}
        ok = [m for m in methods if mem[m] is not None]
        timed = child("--child-time", model_name, ",".join(ok)) or []
        for t in timed:
            rows.append({**mem[t["method"]], **t})

    print(f"# runtime_bench: batch {BATCH}, seq {SEQ}, rank {args.rank}, {args.threads} thread(s), "
          f"fastest of {args.steps} steps after {args.warmup} warm-up; ratios within this run")
    hdr = f"{'model':<13} {'method':<14} {'trainable':>10} {'step_ms':>9} {'peak+MB':>8} {'t/lora':>7} {'t/full':>7} {'m/lora':>7} {'m/full':>7}"
    print(hdr)
    print("-" * len(hdr))
    for model_name in args.models.split(","):
        mine = {r["method"]: r for r in rows if r["model"] == model_name}
        lora, full = mine.get("lora"), mine.get("full")
        ratio = lambda a, b, k: f"{a[k] / b[k]:7.2f}" if b and b[k] > 0 else f"{'-':>7}"  # noqa: E731
        for m in methods:
            if m not in mine:
                continue
            r = mine[m]
            print(f"{model_name:<13} {m:<14} {r['trainable']:>10} {r['step_ms']:9.2f} {r['peak_extra_mb']:8.1f} "
                  f"{ratio(r, lora, 'step_ms')} {ratio(r, full, 'step_ms')} {ratio(r, lora, 'peak_extra_mb')} "
                  f"{ratio(r, full, 'peak_extra_mb')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
