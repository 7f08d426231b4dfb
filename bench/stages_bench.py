#!/usr/bin/env python3
"""What the three stage procedures cost, as ratios measured in one process (interleaved, medians):

1. pretraining (SLTrain): training tokens/s of SLTrain (r, δ) against dense full-rank pretraining of the same
   decoder, and the training state in memory (parameters + gradients + AdamW moments) of each;
2. compression (LoRD): the time to compress (weight SVD and activation-aware with calibration) relative to one
   training step of the dense model, and the compressed model's forward time relative to the original's;
3. pruning (LoRAM): the forward and the LoRA training step of the pruned model relative to the full model's.

    runtime-native/.venv/bin/python bench/stages_bench.py [--hidden 256] [--layers 4] [--steps 12] [--threads 2]

On a GPU (cuda available) the same code times CUDA (synchronised); the default size is CPU-friendly.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runtime-native"))

import torch  # noqa: E402

from rankflow_runtime.methods import get_method  # noqa: E402
from rankflow_runtime.methods.base import AdaptContext, adapt_model  # noqa: E402
from rankflow_runtime.models import build_model, model_info  # noqa: E402
from rankflow_runtime.procedures.compress import output_covariances  # noqa: E402
from rankflow_runtime.procedures.pretrain import state_mb  # noqa: E402
from rankflow_runtime.procedures.prune import PruneOptions, prune_model  # noqa: E402
from rankflow_runtime.structures import plain_model  # noqa: E402

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def decoder(args, device):
    cfg = {"vocab_size": 2048, "hidden_size": args.hidden, "num_layers": args.layers, "num_heads": 8,
           "num_kv_heads": 4, "intermediate_size": args.hidden * 8 // 3, "max_position": args.seq}
    info = model_info({"name": "tiny-decoder", "source": "builtin", "task": "causal-lm", "config": cfg})
    torch.manual_seed(0)
    return build_model({}, info, None).to(device), info


def batch(args, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, 2048, (args.batch, args.seq), generator=g).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def stepper(model, lr=1e-3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)

    def step(b):
        model(**b).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def interleaved(fns, rounds, device):
    """Median seconds of each callable, run round-robin (`rounds` times after one warm-up each)."""
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, f in enumerate(fns):
            times[i].append(timed(f, device))
    return [statistics.median(t) for t in times]


def bench_pretrain(args, device):
    dense, _ = decoder(args, device)
    sl, info = decoder(args, device)
    r = max(4, args.hidden // 4)
    adapt_model(sl, get_method("sltrain")(r, {"sparsity": 0.03}, 0), ALL, info.head_name, True)
    for p in dense.parameters():
        p.requires_grad_(True)
    b = batch(args, device)
    sd, ss = stepper(dense), stepper(sl)
    t_dense, t_sl = interleaved([lambda: sd(b), lambda: ss(b)], args.steps, device)
    tokens = args.batch * args.seq
    print(f"pretraining ({args.layers}x{args.hidden} decoder, SLTrain r={r} δ=0.03 on all attention/MLP linears):")
    print(f"  tokens/s   dense {tokens / t_dense:9.0f}   SLTrain {tokens / t_sl:9.0f}   ratio SLTrain/dense "
          f"{t_dense / t_sl:.2f}")
    print(f"  state MiB  dense {state_mb(dense):9.1f}   SLTrain {state_mb(sl):9.1f}   ratio SLTrain/dense "
          f"{state_mb(sl) / state_mb(dense):.2f}")
    return t_dense


def bench_compress(args, device, t_step):
    base, info = decoder(args, device)
    cal = [batch(args, device, seed=s) for s in range(4)]
    out = {}
    for variant in ("svd", "activation"):
        model = copy.deepcopy(base)
        t0 = time.perf_counter()
        meth = get_method("lord")(args.hidden, {"variant": variant, "rank_rule": "ratio", "ratio": 0.5}, 0)
        if variant == "activation":
            names = [n for n, m in model.named_modules() if n.split(".")[-1] in ALL]
            meth.calibration = output_covariances(model, names, cal)
        meth.adapt(model, ALL, AdaptContext(head_name=info.head_name))
        comp = plain_model(model)
        sync(device)
        out[variant] = (time.perf_counter() - t0, comp)
    b = batch(args, device, seed=9)
    with torch.inference_mode():
        t_orig, t_comp = interleaved([lambda: base(**b), lambda: out["activation"][1](**b)], args.steps, device)
    n0, n1 = (sum(p.numel() for p in m.parameters()) for m in (base, out["activation"][1]))
    print("compression (LoRD, targets keep 50% of their parameters):")
    for v in ("svd", "activation"):
        print(f"  {v:10s} {out[v][0]:7.2f} s = {out[v][0] / t_step:6.1f} dense training steps")
    print(f"  parameters {n0} -> {n1} (×{n0 / n1:.2f}); forward compressed/original {t_comp / t_orig:.2f} "
          f"(speed-up {t_orig / t_comp:.2f})")


def bench_prune(args, device):
    full, info = decoder(args, device)
    pruned = copy.deepcopy(full)
    prune_model(pruned, PruneOptions(mlp_ratio=0.5, attn_ratio=0.5), 0)
    lf, lp = copy.deepcopy(full), copy.deepcopy(pruned)
    for m in (lf, lp):
        adapt_model(m, get_method("lora")(8, {}, 0), ALL, info.head_name, False)
    b = batch(args, device, seed=3)
    with torch.inference_mode():
        f_full, f_pruned = interleaved([lambda: full(**b), lambda: pruned(**b)], args.steps, device)
    sf, sp = stepper(lf), stepper(lp)
    s_full, s_pruned = interleaved([lambda: sf(b), lambda: sp(b)], args.steps, device)
    n0, n1 = (sum(p.numel() for p in m.parameters()) for m in (full, pruned))
    print("pruning (LoRAM, 50% of the MLP channels and KV groups):")
    print(f"  parameters {n0} -> {n1} (×{n0 / n1:.2f}); state MiB of LoRA training full {state_mb(lf):.1f} "
          f"pruned {state_mb(lp):.1f}")
    print(f"  forward speed-up {f_full / f_pruned:.2f}; LoRA training step speed-up {s_full / s_pruned:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch {torch.__version__}, {args.threads} threads")
    t_step = bench_pretrain(args, device)
    bench_compress(args, device, t_step)
    bench_prune(args, device)


if __name__ == "__main__":
    main()
