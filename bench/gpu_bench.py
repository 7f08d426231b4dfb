#!/usr/bin/env python3
"""GPU benchmark (H200): every registered PEFT method on a transformers LLaMA built from a bundled config,
bf16, at 7B-class attention-layer sizes (q_proj/v_proj are 4096x4096), sized to finish within 5 minutes.

    runtime-native/.venv/bin/python bench/gpu_bench.py                       # all methods, frozen and full
    runtime-native/.venv/bin/python bench/gpu_bench.py --methods lora,randlora,vera --json gpu.json
    runtime-native/.venv/bin/python bench/gpu_bench.py --tiny                # CPU dry run of the script itself

The model is `llama-2-7b` (hidden 4096, intermediate 11008, vocab 32000) cut to --layers blocks (default 4,
about 1.07B parameters), random weights in bf16, built once on the GPU and deep-copied for each method.
Each method wraps the --targets layers at --rank, and trains --steps AdamW steps (after --warmup) under
bf16 autocast on a fixed random batch of --batch x --seq tokens, calling the method hooks in the same order
as the runtime's training loop. Reported per method: median step time, tokens/s, peak allocated memory
and its growth over the model's own memory, with ratios to LoRA and to full fine-tuning (all from this one
run). Methods still waiting when --budget-s runs out are reported as skipped, so the script always ends.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runtime-native"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="all", help='comma list of registered methods (plus "frozen"), or "all"')
    ap.add_argument("--config", default="llama-2-7b", help="bundled transformers config (runtime-native/.../configs)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--targets", default="q_proj,v_proj")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=270.0, help="stop starting new methods after this long")
    ap.add_argument("--options", default="{}", help='JSON {"method": {option: value}} overrides')
    ap.add_argument("--tiny", action="store_true", help="CPU dry run with a tiny config (checks the script)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch
    import transformers

    from rankflow_runtime.methods import get_method, registry
    from rankflow_runtime.methods.base import TrainContext, adapt_model, trainable_numel
    from rankflow_runtime.models.hf import bundled

    t_start = time.time()
    if args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
        args.batch, args.seq, args.steps, args.warmup = 2, 32, 2, 1
        overrides = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=4,
                         vocab_size=256)
    else:
        if not torch.cuda.is_available():
            print("gpu_bench: no CUDA device (use --tiny for a CPU dry run)", file=sys.stderr)
            return 2
        device, dtype = torch.device("cuda"), torch.bfloat16
        torch.backends.cuda.matmul.allow_tf32 = True
        overrides = {}
    raw = {k: v for k, v in bundled()[args.config].items() if not k.startswith("_")}
    model_type = raw.pop("model_type")
    cfg = transformers.AutoConfig.for_model(model_type, **{**raw, **overrides, "num_hidden_layers": args.layers})

    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with device:
        base = transformers.AutoModelForCausalLM.from_config(cfg)
    torch.set_default_dtype(old)
    base.eval()
    n_total = sum(p.numel() for p in base.parameters())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, cfg.vocab_size, (args.batch, args.seq), generator=g).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    targets = args.targets.split(",")
    shapes = sorted({tuple(m.weight.shape) for n, m in base.named_modules()
                     if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in targets})
    print(f"# gpu_bench: {args.config} cut to {args.layers} layers ({n_total / 1e9:.2f}B params, {dtype}), "
          f"targets {targets} {shapes}, rank {args.rank}, batch {args.batch}x{args.seq}, "
          f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}", flush=True)

    methods = ["frozen", "full"] + sorted(set(registry()) - {"full"}) if args.methods == "all" else args.methods.split(",")
    extra_opts = json.loads(args.options)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else \
        (lambda: torch.autocast("cpu", enabled=False))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for name in methods:
        if time.time() - t_start > args.budget_s:
            rows.append({"method": name, "status": "skipped (time budget)"})
            continue
        model = opt = None
        try:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            t_build = time.time()
            model = copy.deepcopy(base)
            method = None
            if name == "frozen":
                for p in model.parameters():
                    p.requires_grad_(False)
            else:
                cls = get_method(name)
                method = cls(args.rank if cls.needs_rank else None, extra_opts.get(name, {}), 0)
                adapt_model(model, method, targets, "lm_head", train_head=False)
                if name == "full":  # AdamW on bf16 weights (no fp32 master copy): the usual memory floor
                    pass
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=1e-5) if params else None
            build_s = time.time() - t_build
            model.train(name != "frozen")
            sync()
            mem0 = torch.cuda.memory_allocated() if device.type == "cuda" else 0
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            ctx = TrainContext(model=model, step=0, total_steps=args.warmup + args.steps, optimizer=opt, device=device)
            if method is not None:
                method.on_train_start(ctx)
            times = []
            for i in range(args.warmup + args.steps):
                sync()
                t0 = time.perf_counter()
                if name == "frozen":
                    with torch.no_grad(), autocast():
                        model(**batch)
                else:
                    ctx.step, ctx.batch = i, batch
                    method.before_forward(ctx)
                    with autocast():
                        loss = model(**batch).loss
                        extra = method.extra_loss(ctx)
                        if extra is not None:
                            loss = loss + extra
                    ctx.loss = loss
                    loss.backward()
                    method.after_backward(ctx)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    ctx.step = i + 1
                    method.after_step(ctx)
                sync()
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
            step = statistics.median(times)
            peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
            rows.append({"method": name, "status": "ok", "trainable": trainable_numel(model), "step_ms": 1000 * step,
                         "tokens_per_s": args.batch * args.seq / step, "peak_gb": peak / 2**30,
                         "extra_gb": (peak - mem0) / 2**30, "build_s": build_s})
        except Exception as e:  # one failing method must not hide the others' numbers
            oom = "out of memory" in str(e).lower()
            rows.append({"method": name, "status": ("oom" if oom else "error") + f": {type(e).__name__}: {str(e)[:120]}"})
            traceback.print_exc(file=sys.stderr)
        finally:
            del model, opt
        r = rows[-1]
        print(f"#   {name}: {r['status']}" + (f", {r['step_ms']:.1f} ms/step" if r["status"] == "ok" else ""),
              file=sys.stderr, flush=True)

    ok = {r["method"]: r for r in rows if r["status"] == "ok"}
    lora, full = ok.get("lora"), ok.get("full")
    hdr = f"{'method':<14} {'trainable':>12} {'step_ms':>9} {'tok/s':>9} {'peak_GB':>8} {'+GB':>7} {'t/lora':>7} {'t/full':>7} {'m/lora':>7} {'m/full':>7}"
    print(hdr)
    print("-" * len(hdr))
    ratio = lambda r, b, k: f"{r[k] / b[k]:7.2f}" if b and b[k] > 0 else f"{'-':>7}"  # noqa: E731
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['method']:<14} {r['status']}")
            continue
        print(f"{r['method']:<14} {r['trainable']:>12} {r['step_ms']:9.1f} {r['tokens_per_s']:9.0f} {r['peak_gb']:8.2f} "
              f"{r['extra_gb']:7.2f} {ratio(r, lora, 'step_ms')} {ratio(r, full, 'step_ms')} "
              f"{ratio(r, lora, 'extra_gb')} {ratio(r, full, 'extra_gb')}")
    print(f"# total {time.time() - t_start:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
