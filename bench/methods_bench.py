"""Per-method training cost: step time and training memory of every registered PEFT method relative to LoRA at the
same rank, on the built-in models, plus the same ratio against Hugging Face PEFT's implementation for the methods PEFT
has (LoRA, RandLoRA, VeRA, DoRA, MiSS/Bone) on the same model and layers.

Run from the repository root:
    runtime-native/.venv/bin/python bench/methods_bench.py [--rank 8] [--reps 7] [--steps 3] [--hidden 128] ...
    # the step-changing methods against LoRA, SNELL and full fine-tuning:
    runtime-native/.venv/bin/python bench/methods_bench.py --no-peft --hidden 256 \
        --methods lora,full,snell,snella,lora-ggpo,lora-ggpo@variant=mgpo,prompt-tuning,dept@init=vocab

How it measures (one process, one run, so the ratios share the machine's state):
* Every configuration (model × method × implementation) is built once with its AdamW optimizer. Repetitions are
  interleaved: each repetition runs `--steps` training steps (forward, backward, optimizer step) of every
  configuration in turn, the order rotating between repetitions; the reported time is the median over repetitions
  of the mean step time. One warm-up step per configuration is not timed.
* Memory on CPU is accounted, not sampled (CPU PyTorch has no allocator statistics): the bytes of the distinct
  tensors autograd saves for backward (found with saved-tensor hooks; tensors that are the model's own parameters
  or buffers are not counted), plus trainable parameters, their gradients, the optimizer state and every buffer or
  frozen parameter the method adds to the model. The frozen backbone, common to all, is left out. On CUDA
  (`--device cuda`) the peak of `torch.cuda.max_memory_allocated` over a step, minus the backbone, is used instead.
* "x LoRA" columns divide by rankflow's LoRA on the same model; "vs PEFT" divides rankflow's number by PEFT's
  implementation of the same method.
* rankflow methods step with their training hooks in the loop's order (before_forward, after_backward,
  after_optimizer_step, after_step), so the cost of a method that works in its hooks (LoRA-GGPO's weight
  perturbation, SNELLA's importance EMAs and allocation) is in its step time and memory. Prompt methods get
  `--seq` as the input length (DePT's s) and positions to spare.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "runtime-native"))

import torch  # noqa: E402

from rankflow_runtime.methods import registry  # noqa: E402
from rankflow_runtime.methods.base import adapt_model  # noqa: E402
from rankflow_runtime.models import BUILTIN, build_model, model_info  # noqa: E402

NUM_LABELS = {"tiny-encoder": 3, "tiny-vit": 4, "tiny-decoder": None}
TARGETS = {  # attention q/v (the usual default) plus one rectangular MLP layer
    "tiny-encoder": ["query", "value", "fc1"],
    "tiny-vit": ["query", "value", "fc1"],
    "tiny-decoder": ["q_proj", "v_proj", "up_proj"],
}
# rankflow method name -> how to build PEFT's version of it (None: PEFT has no such method)
PEFT_TWINS = {"lora": "lora", "randlora": "randlora", "vera": "vera", "dora": "dora", "bone": "miss"}


def model_config(name: str, a) -> Dict:
    if name == "tiny-vit":
        return dict(image_size=a.image_size, patch_size=8, hidden_size=a.hidden, num_layers=a.layers,
                    num_heads=4, intermediate_size=2 * a.hidden)
    if name == "tiny-decoder":
        return dict(vocab_size=512, hidden_size=a.hidden, num_layers=a.layers, num_heads=4, num_kv_heads=2,
                    intermediate_size=2 * a.hidden, max_position=max(256, a.seq))
    return dict(vocab_size=512, hidden_size=a.hidden, num_layers=a.layers, num_heads=4,
                intermediate_size=2 * a.hidden, max_position=a.seq + 128)  # room for a soft prompt


def make_batch(name: str, info, a) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if info.task == "img-cls":
        c = info.config
        x = torch.randn(a.batch, c["channels"], c["image_size"], c["image_size"], generator=g)
        return {"pixel_values": x, "labels": torch.arange(a.batch) % NUM_LABELS[name]}
    ids = torch.randint(3, info.vocab_size, (a.batch, a.seq), generator=g)
    if info.task == "seq-cls":
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, 1] % NUM_LABELS[name]}
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def build_base(name: str, a, device):
    info = model_info({"name": name, "source": "builtin", "task": BUILTIN[name]["task"],
                       "config": model_config(name, a), "random_init": True})
    torch.manual_seed(0)
    return build_model({}, info, NUM_LABELS[name]).to(device), info


def method_options(method: str):
    """`name@key=value@...` (values as JSON where they parse: `lora-ggpo@variant="mgpo"` or
    `lora-ggpo@variant=mgpo`) -> (name, options)."""
    import json
    name, *pairs = method.split("@")
    opts = {}
    for pair in pairs:
        k, _, v = pair.partition("=")
        try:
            opts[k] = json.loads(v)
        except ValueError:
            opts[k] = v
    return name, opts


def build_ours(method: str, name: str, a, device):
    m, info = build_base(name, a, device)
    method, opts = method_options(method)
    cls = registry()[method]
    meth = cls(a.rank if cls.needs_rank else None, opts, 0)
    adapt_model(m, meth, TARGETS[name], info.head_name, False, task=info.task, max_length=a.seq,
                max_positions=info.max_positions, pad_token_id=info.pad_token_id)
    return m, meth


def build_peft(kind: str, name: str, a, device):
    import peft

    m, info = build_base(name, a, device)
    t = TARGETS[name]
    r = a.rank
    cfg = {
        "lora": lambda: peft.LoraConfig(r=r, lora_alpha=8, target_modules=t),
        "dora": lambda: peft.LoraConfig(r=r, lora_alpha=8, target_modules=t, use_dora=True),
        "vera": lambda: peft.VeraConfig(r=r, target_modules=t, save_projection=False),
        "randlora": lambda: peft.RandLoraConfig(r=r, target_modules=t, save_projection=False),
        "miss": lambda: peft.MissConfig(r=r, target_modules=t),
    }[kind]()
    return peft.get_peft_model(m, cfg), None


@dataclass
class Config:
    model: str
    method: str
    impl: str  # "rankflow" | "peft"
    module: torch.nn.Module
    meth: object
    batch: Dict[str, torch.Tensor]
    opt: torch.optim.Optimizer = None
    trainable: int = 0
    ctx: object = None  # the hooks' TrainContext (rankflow methods)
    times: List[float] = field(default_factory=list)
    mem: Optional[int] = None
    error: Optional[str] = None


def step(c: Config) -> None:
    m, ctx = c.meth, _ctx(c)
    if m is not None:
        m.before_forward(ctx)
    loss = c.module(**c.batch).loss
    extra = m.extra_loss(ctx) if m is not None else None
    if extra is not None:
        loss = loss + extra
    loss.backward()
    if m is not None:
        m.after_backward(ctx)
    c.opt.step()
    if m is not None:
        m.after_optimizer_step(ctx)
    c.opt.zero_grad(set_to_none=True)
    if m is not None:
        ctx.step += 1
        m.after_step(ctx)


def _ctx(c: Config):
    from rankflow_runtime.methods.base import TrainContext
    if c.ctx is None:
        c.ctx = TrainContext(model=c.module, step=0, total_steps=10_000, optimizer=c.opt, total_epochs=100.0)
        if c.meth is not None:  # methods that grow hand new tensors to the optimizer through a Stepper's ctx
            from rankflow_runtime.optim import GroupRules
            from rankflow_runtime.step import Stepper
            Stepper(c.module, c.meth, c.opt, c.ctx, rules=GroupRules(1e-4, {}, 0.0))
    return c.ctx


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def accounted_memory(c: Config, backbone_keys: set) -> int:
    """Saved-for-backward activations + trainable params + grads + optimizer state + method-added tensors."""
    own = {p.data_ptr() for p in c.module.parameters()} | {b.data_ptr() for b in c.module.buffers()}
    saved: Dict[int, int] = {}

    def pack(t):
        try:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in own and ptr not in saved:
                saved[ptr] = t.untyped_storage().nbytes()
        except Exception:  # noqa: BLE001 - tensors without storage (e.g. sparse) are skipped
            pass
        return t

    c.module.train()
    m, ctx = c.meth, _ctx(c)
    if m is not None:
        m.before_forward(ctx)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = c.module(**c.batch).loss
        extra = m.extra_loss(ctx) if m is not None else None
        if extra is not None:
            loss = loss + extra
    loss.backward()
    if m is not None:
        m.after_backward(ctx)
    grads = sum(_nbytes(p.grad) for p in c.module.parameters() if p.grad is not None)
    c.opt.step()
    if m is not None:
        m.after_optimizer_step(ctx)
    state = sum(_nbytes(v) for s in c.opt.state.values() for v in s.values() if torch.is_tensor(v))
    c.opt.zero_grad(set_to_none=True)
    trainable = sum(_nbytes(p) for p in c.module.parameters() if p.requires_grad)
    added = 0
    for n, t in list(c.module.named_parameters()) + list(c.module.named_buffers()):
        if getattr(t, "requires_grad", False):
            continue
        if _backbone_key(n) not in backbone_keys:
            added += _nbytes(t)
    return sum(saved.values()) + grads + state + trainable + added


def _backbone_key(name: str) -> str:
    """Map an adapted model's tensor name back to the backbone's name (rankflow `.base.`, PEFT `.base_layer.`)."""
    for pre in ("base_model.model.",):
        if name.startswith(pre):
            name = name[len(pre):]
    return name.replace(".base_layer.", ".").replace(".base.", ".")


def cuda_memory(c: Config, base_bytes: int) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    step(c)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - start + (start - base_bytes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny-encoder,tiny-vit,tiny-decoder")
    ap.add_argument("--methods", default="", help="comma list (default: every registered method); options as "
                                                  "name@key=value, e.g. lora-ggpo@variant=mgpo")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-peft", action="store_true")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Specified to not save")
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    methods = [m for m in (a.methods.split(",") if a.methods else sorted(registry())) if m]
    models = [m for m in a.models.split(",") if m]

    configs: List[Config] = []
    backbone: Dict[str, set] = {}
    base_bytes: Dict[str, int] = {}
    for name in models:
        base, info = build_base(name, a, device)
        backbone[name] = {n for n, _ in base.named_parameters()} | {n for n, _ in base.named_buffers()}
        base_bytes[name] = sum(_nbytes(p) for p in base.parameters())
        batch = {k: v.to(device) for k, v in make_batch(name, info, a).items()}
        del base
        jobs = [(mm, "rankflow", build_ours) for mm in methods]
        if not a.no_peft:
            jobs += [(mm, "peft", lambda meth, n, aa, d: build_peft(PEFT_TWINS[meth], n, aa, d))
                     for mm in methods if mm in PEFT_TWINS]
        for meth_name, impl, builder in jobs:
            c = Config(name, meth_name, impl, None, None, batch)
            try:
                c.module, c.meth = builder(meth_name, name, a, device)
                params = [p for p in c.module.parameters() if p.requires_grad]
                c.trainable = sum(p.numel() for p in params)
                c.opt = torch.optim.AdamW(params, lr=1e-4)
                c.module.train()
                step(c)  # warm-up (lazy init, allocator)
            except Exception as e:  # noqa: BLE001 - reported in the table, the others still run
                c.error = f"{type(e).__name__}: {e}"[:70]
            configs.append(c)

    live = [c for c in configs if c.error is None]
    for c in live:
        try:
            c.mem = (cuda_memory(c, base_bytes[c.model]) if device.type == "cuda"
                     else accounted_memory(c, backbone[c.model]))
        except Exception as e:  # noqa: BLE001
            c.error = f"memory: {type(e).__name__}: {e}"[:70]
    live = [c for c in configs if c.error is None]
    t0 = time.perf_counter()
    for rep in range(a.reps):
        k = rep % max(1, len(live))
        for c in live[k:] + live[:k]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            s = time.perf_counter()
            for _ in range(a.steps):
                step(c)
            if device.type == "cuda":
                torch.cuda.synchronize()
            c.times.append((time.perf_counter() - s) / a.steps)
    wall = time.perf_counter() - t0

    med = {(c.model, c.method, c.impl): statistics.median(c.times) for c in live}
    mem = {(c.model, c.method, c.impl): c.mem for c in live}
    print(f"# methods_bench: rank {a.rank}, hidden {a.hidden}, layers {a.layers}, seq {a.seq}, batch {a.batch}, "
          f"targets q/v + first MLP layer, {a.reps} interleaved reps x {a.steps} steps, device {a.device}, "
          f"threads {a.threads}, torch {torch.__version__}; timed loop {wall:.1f}s")
    print("# time = median step (fwd+bwd+AdamW); mem = " +
          ("peak CUDA allocation minus backbone" if device.type == "cuda" else
           "saved activations + trainable + grads + optimizer state + added tensors (backbone excluded)"))
    hdr = f"{'model':<13} {'method':<13} {'impl':<9} {'trainable':>10} {'step ms':>8} {'x LoRA':>7} " \
          f"{'mem KiB':>9} {'x LoRA':>7} {'time vs PEFT':>12} {'mem vs PEFT':>11}"
    print(hdr)
    print("-" * len(hdr))
    for c in configs:
        key = (c.model, c.method, c.impl)
        if c.error:
            print(f"{c.model:<13} {c.method:<13} {c.impl:<9} error: {c.error}")
            continue
        lora = (c.model, "lora", "rankflow")
        tr = med[key] / med[lora] if lora in med else float("nan")
        mr = mem[key] / mem[lora] if lora in mem and mem[lora] else float("nan")
        vs_t = vs_m = ""
        twin = (c.model, c.method, "peft")
        if c.impl == "rankflow" and twin in med:
            vs_t = f"{med[key] / med[twin]:.2f}"
            vs_m = f"{mem[key] / mem[twin]:.2f}" if mem[twin] else ""
        print(f"{c.model:<13} {c.method:<13} {c.impl:<9} {c.trainable:>10} {med[key] * 1e3:>8.2f} {tr:>7.2f} "
              f"{mem[key] / 1024:>9.0f} {mr:>7.2f} {vs_t:>12} {vs_m:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
