"""A no-op stand-in for rankflow_runtime, used only by bench/orchestration_bench.ts: it speaks the same
JSON-lines protocol (started, progress, checkpoint, done) without importing torch or training anything,
so the benchmark measures rankflow's orchestration path alone."""
import hashlib
import json
import os
import sys
import time


def emit(**event):
    event["time"] = time.time()
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(argv):
    out = argv[argv.index("--out") + 1]
    total = 2
    emit(event="started", pid=os.getpid(), device="cpu", torch="none", python=sys.version.split()[0],
         runtime="noop", step=0, total_steps=total, trainable_params=1, total_params=1)
    emit(event="progress", step=1, total_steps=total, epoch=0.5, loss=1.0, lr=0.0, throughput=0.0, peak_mem_mb=0.0)
    ckpt = os.path.join(out, "checkpoints", "step-00000002")
    os.makedirs(ckpt, exist_ok=True)
    body = b"noop-checkpoint"
    with open(os.path.join(ckpt, "adapter.safetensors"), "wb") as f:
        f.write(body)
    emit(event="checkpoint", step=total, path=ckpt, best=True, reason="final",
         files=[{"name": "adapter.safetensors", "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}])
    metrics = {"accuracy": 0.5, "loss": 1.0}
    emit(event="done", step=total, metrics=metrics, best_metrics=metrics, best_step=total,
         trainable_params=1, total_params=1, wall_time_s=0.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
