#!/usr/bin/env python3
"""Break-for-Make's toy claim, measured through the runtime's own procedures (in one process, CPU): the made
adapter against the sum and the average of two plain LoRAs, each scored on content and style together.

Per seed, on `synthetic/content-style` with the tiny denoiser (d = 64, 2 blocks):
  base           full fine-tuning on contents 0-5 × styles {plain, 0-5} (the pretrained generator);
  content/style  `b4m-break` PLP runs: the new shape 6 from (6, plain) with three style datasets as auxiliaries,
                 the new texture 6 from (0-2, 6) with three content datasets;
  make           `b4m-make` (RiemannianAdamW; `make-adamw` the ablation) on (0-2, 6) + (6, plain);
  lora-content / lora-style   plain LoRA on the same data, `sum` / `average` their `combine`;
  oracle         plain LoRA trained on the evaluated pair (6, 6) itself: the score a reasonable adapter reaches.
Every adapter is scored on the unseen pair (6, 6) by the dataset's frozen classifiers (content, style, joint =
both right in one sample) and by the samples' MSE to the clean (6, 6) render.

    runtime-native/.venv/bin/python bench/b4m_toy.py [--seeds 0,1,2] [--base-steps 2000] [--steps 200]
        [--make-steps 150] [--samples 32] [--rank 8] [--basis-rows 0]

Prints one line per (seed, adapter) and the mean ± sd over the seeds.
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

from rankflow_runtime import events  # noqa: E402
from rankflow_runtime.procedures import run_procedure  # noqa: E402
from rankflow_runtime.spec import example_spec, parse_spec  # noqa: E402

DENOISER = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128}
BASE = {"contents": [0, 1, 2, 3, 4, 5], "styles": [None, 0, 1, 2, 3, 4, 5]}
EVAL = {"eval_contents": [6], "eval_styles": [6]}
CONTENT = {"contents": [6], "styles": [None]}
STYLE = {"contents": [0, 1, 2], "styles": [6]}
AUX_STYLE = [{"options": {"contents": [0, 1, 2], "styles": [s]}} for s in (0, 1, 2)]
AUX_CONTENT = [{"options": {"contents": [c], "styles": [None]}} for c in (0, 1, 2)]


class Pipeline:
    def __init__(self, args, seed: int, root: str):
        self.a, self.seed, self.root = args, seed, root
        self.ids: dict = {}
        self.paths: dict = {}

    def run_id(self, stage: str) -> str:
        return self.ids.setdefault(stage, f"run-{self.seed:04x}{len(self.ids) + 1:012x}")

    def spec(self, stage, method, data, procedure, inputs=(), steps=None, lr=None, groups=None, train_size=512,
             schedule="constant"):
        s = example_spec(**{
            "model": {"name": "tiny-denoiser", "source": "builtin", "task": "img-gen", "config": DENOISER,
                      "random_init": True},
            "dataset": {"name": "synthetic/content-style", "data_root": None, "max_length": 16,
                        "train_size": train_size, "eval_size": None, "eval_split": "validation", "metric": "joint",
                        "options": {**data, "eval_samples": self.a.samples}},
            "method": method, "training.train_head": False, "training.max_steps": steps or self.a.steps,
            "training.lr": lr or self.a.lr, "training.lr_groups": groups or {}, "training.batch_size": 16,
            "training.eval_every": None, "training.warmup_ratio": 0.0, "training.schedule": schedule,
            "training.log_every": 1000})
        s["seed"] = self.seed
        s["run_id"] = self.run_id(stage)
        s["procedure"] = procedure
        s["inputs"] = {k: {"run": self.run_id(v), "artifact": "model" if v == "base" else "adapter"}
                       for k, v in inputs}
        return s

    def run(self, stage, spec, inputs=()):
        with events.capture() as rec:
            rc = run_procedure(parse_spec(spec), os.path.join(self.root, stage),
                               input_paths={k: self.paths[v] for k, v in inputs} or None)
        if rc != 0:
            raise SystemExit(f"{stage}: exit {rc}: {rec[-1]}")
        arts = [r for r in rec if r["event"] == "artifact"]
        if arts:
            self.paths[stage] = arts[-1]["path"]
        return [r for r in rec if r["event"] == "done"][-1]["metrics"]

    def all(self) -> dict:
        a, lora = self.a, {"name": "lora", "rank": self.a.rank, "options": {"alpha": self.a.rank}, "targets": []}
        plp = {"name": "plp", "rank": a.rank, "options": {"basis_rows": a.basis_rows}, "targets": []}
        full = {"name": "full", "rank": None, "options": {}, "targets": []}
        out = {}
        base = self.spec("base", full, {**BASE, "eval_contents": [0, 3], "eval_styles": [None, 2]},
                         {"name": "finetune", "options": {"outputs": ["model"]}}, steps=a.base_steps, lr=2e-3,
                         train_size=4096, schedule="cosine")
        base["training"]["batch_size"] = 32
        out["base (own prompts)"] = self.run("base", base)
        on_base = (("model", "base"),)
        brk = lambda role, data, aux, lr, up: self.spec(  # noqa: E731
            role, plp, {**data, **EVAL}, {"name": "b4m-break", "options": {"role": role, "aux": aux}}, on_base,
            lr=lr, groups={"up": up})
        self.run("content", brk("content", CONTENT, AUX_STYLE, a.lr, a.lr / 10), on_base)
        self.run("style", brk("style", STYLE, AUX_CONTENT, a.lr / 10, a.lr), on_base)
        make_in = on_base + (("content", "content"), ("style", "style"))
        for name, opt in (("make", "riemannian"), ("make-adamw", "adamw")):
            spec = self.spec(name, plp, {**STYLE, **EVAL}, {"name": "b4m-make", "options": {
                "joint": [{"options": CONTENT}], "optimizer": opt}}, make_in, steps=a.make_steps, lr=a.make_lr)
            out[name] = self.run(name, spec, make_in)
        fine = {"name": "finetune", "options": {"outputs": ["adapter"]}}
        for name, data in (("lora-content", CONTENT), ("lora-style", STYLE), ("oracle", {"contents": [6],
                                                                                          "styles": [6]})):
            out[name] = self.run(name, self.spec(name, lora, {**data, **EVAL}, fine, on_base), on_base)
        pair = on_base + (("first", "lora-content"), ("second", "lora-style"))
        for mode in ("sum", "average"):
            spec = self.spec(mode, lora, {"contents": [6], "styles": [6]}, {"name": "combine",
                                                                            "options": {"mode": mode}}, pair)
            out[mode] = self.run(mode, spec, pair)
        return out


def line(name, m):
    return f"{name:>18}  content {m['content']:.2f}  style {m['style']:.2f}  joint {m['joint']:.2f}  mse {m['mse']:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--base-steps", type=int, default=2000)
    p.add_argument("--steps", type=int, default=200, help="break and plain-LoRA steps")
    p.add_argument("--make-steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=3e-3, help="LoRA lr and the break stages' target-half lr")
    p.add_argument("--make-lr", type=float, default=1e-3)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--basis-rows", type=int, default=0, help="PLP basis_rows N (0: ⌊d_in/2⌋+⌊d_out/2⌋ = 64, the "
                   "frozen halves then have singular values ≈ 0.7, as SDXL's 640/1280-wide layers with N = 1280 "
                   "have 0.5-1; the official 1280 gives 0.16 at d = 64)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        with tempfile.TemporaryDirectory() as root:
            res = Pipeline(args, seed, root).all()
        print(f"seed {seed} ({time.time() - t0:.0f} s)", flush=True)
        for name, m in res.items():
            print(line(name, m), flush=True)
            results.setdefault(name, []).append(m)
    print(f"mean ± sd over {len(next(iter(results.values())))} seeds, evaluated on (6, 6), {args.samples} samples")
    for name, ms in results.items():
        cells = []
        for k in ("content", "style", "joint", "mse"):
            v = [m[k] for m in ms]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{k} {statistics.mean(v):.3f} ± {sd:.3f}")
        print(f"{name:>18}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
