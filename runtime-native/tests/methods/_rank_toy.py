"""A toy task for the rank-allocation methods: where the signal is, is known.

A student of 8 residual blocks h ← h + tanh(W_i h) (W_i 32×32, frozen, adapted by the method) learns a teacher that
equals it except for a rank-3 ΔW* added to blocks 2 and 5. Trained with the runtime's Stepper (AdamW, clipping 1.0)
on regression (MSE) for `steps` steps; returns the method's final allocation per block and the last losses."""
from __future__ import annotations

import torch
from torch import nn

from rankflow_runtime.methods.base import TrainContext, adapt_model
from rankflow_runtime.optim import GroupRules
from rankflow_runtime.step import Stepper
from rankflow_runtime.testing import make_method

D, N_LAYERS, SIGNAL, TEACHER_RANK = 32, 8, (2, 5), 3


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(D, D, bias=False) for _ in range(N_LAYERS)])

    def forward(self, x):
        h = x
        for layer in self.layers:
            h = h + torch.tanh(layer(h))
        return h


def teacher_and_student(seed: int = 0):
    torch.manual_seed(seed)
    student = Toy()
    teacher = Toy()
    teacher.load_state_dict(student.state_dict())
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for i in SIGNAL:
            u = torch.randn(D, TEACHER_RANK, generator=g)
            v = torch.randn(TEACHER_RANK, D, generator=g)
            teacher.layers[i].weight.add_(u @ v / D ** 0.5)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, student


def toy_run(method: str, rank, options, steps: int = 300, lr: float = 1e-2, seed: int = 0, batch: int = 64):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and immune to a loaded machine
    try:
        return _toy_run(method, rank, options, steps, lr, seed, batch)
    finally:
        torch.set_num_threads(threads)


def _toy_run(method, rank, options, steps, lr, seed, batch):
    teacher, student = teacher_and_student(seed)
    meth = make_method(method, rank, options, seed)
    adapt_model(student, meth, ["layers.*"], None, False)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ctx = TrainContext(model=student, step=0, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(1024, D, generator=g)
    ys = teacher(xs)

    def loss_fn(m, b):
        return ((m(b["x"]) - b["y"]) ** 2).mean()

    st = Stepper(student, meth, opt, ctx, rules=GroupRules(lr, {}, 0.0), max_grad_norm=1.0, loss_fn=loss_fn)
    meth.on_train_start(ctx)
    losses = []
    order = torch.randperm(1024, generator=g)
    for s in range(steps):
        idx = order[(s * batch) % 1024:(s * batch) % 1024 + batch]
        losses.append(st.step([{"x": xs[idx], "y": ys[idx]}]).loss)
    alloc = meth.allocation(student)
    ranks = [alloc["ranks"][f"layers.{i}"] for i in range(N_LAYERS)] if alloc else None
    with torch.no_grad():
        final = float(((student(xs) - ys) ** 2).mean())
    return {"ranks": ranks, "loss": final, "losses": losses, "model": student, "method": meth, "allocation": alloc}
