"""`smoke --out DIR`: a two-layer MLP trained for a few steps on the CPU. It proves the runtime, its event
stream and its file output work on a machine, in about a second, with no data and no model files."""
from __future__ import annotations

import os
import platform
import sys
import time

import torch
from safetensors.torch import save_file
from torch import nn

from . import __version__
from .checkpoint import sha256_file
from .events import emit

SMOKE_FILE = "smoke.safetensors"


def run_smoke(out_dir: str, steps: int = 20) -> int:
    t0 = time.time()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()  # planted signal
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    emit("started", pid=os.getpid(), device="cpu", torch=torch.__version__, python=platform.python_version(),
         runtime=__version__, step=0, total_steps=steps, trainable_params=n_params, total_params=n_params)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(1, steps + 1):
        ts = time.time()
        idx = torch.randint(0, 256, (32,), generator=g)
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 5 == 0 or step == steps:
            emit("progress", step=step, total_steps=steps, epoch=step * 32 / 256, loss=float(loss.detach()),
                 lr=3e-2, throughput=32 / max(time.time() - ts, 1e-9), peak_mem_mb=_rss_mb())
    with torch.no_grad():
        acc = float((model(x).argmax(-1) == y).float().mean())
        final_loss = float(loss_fn(model(x), y))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, SMOKE_FILE)
    tmp = path + ".tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp,
              metadata={"rankflow": "smoke", "runtime": __version__})
    os.replace(tmp, path)
    emit("checkpoint", step=steps, path=os.path.abspath(out_dir),
         files=[{"name": SMOKE_FILE, "sha256": sha256_file(path), "bytes": os.path.getsize(path)}], best=True,
         reason="final")
    metrics = {"accuracy": acc, "loss": final_loss}
    emit("done", step=steps, metrics=metrics, best_metrics=metrics, best_step=steps, trainable_params=n_params,
         total_params=n_params, wall_time_s=time.time() - t0)
    return 0


def _rss_mb() -> float:
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)
    except Exception:  # pragma: no cover
        return 0.0
