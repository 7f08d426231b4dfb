"""The warm runtime (rankflow_runtime/forkserver.py) against one Python per run, in one run:

    runtime-native/.venv/bin/python bench/warm_runtime_bench.py [--runs 50] [--cold 5] [--steps 2]

Trains `--runs` tiny real runs (tiny-encoder, LoRA r=4, synthetic/seq-cls, CPU) one after the other
through the fork server, and `--cold` of the same runs as `python -m rankflow_runtime run` processes.
Prints the wall time per run of each (start to exit, as the launcher sees it) and the runs' own
`wall_time_s`, so overhead per run = wall - wall_time_s; and memory over the warm runs: the server's RSS
before and after (it never trains, so it must not grow) and every child's peak RSS (first, last, max),
which would grow run after run if memory leaked across runs.
"""

import argparse
import array
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RT = os.path.join(ROOT, "runtime-native")


def spec(seed: int, steps: int) -> dict:
    return {
        "schema": "rankflow.run/v1",
        "model": {"name": "tiny-encoder", "source": "builtin", "task": "seq-cls", "config": {}, "random_init": True},
        "dataset": {"name": "synthetic/seq-cls", "data_root": None, "max_length": 32, "train_size": 64,
                    "eval_size": 32, "eval_split": "validation", "metric": "accuracy", "options": {}},
        "method": {"name": "lora", "rank": 4, "options": {}, "targets": []},
        "training": {"optimizer": "adamw", "lr": 1e-3, "lr_groups": {}, "weight_decay": 0, "schedule": "constant",
                     "warmup_ratio": 0, "max_steps": steps, "epochs": None, "batch_size": 8, "eval_batch_size": 16,
                     "grad_accum": 1, "max_grad_norm": None, "precision": "fp32", "eval_every": None,
                     "checkpoint_every": None, "log_every": 1, "train_head": True},
        "seed": seed,
        "device": "cpu",
    }


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def own_time(out: str) -> float:
    for line in reversed(out.strip().splitlines()):
        ev = json.loads(line)
        if ev.get("event") == "done":
            return float(ev["wall_time_s"])
    raise RuntimeError(f"no done event: {out[-500:]}")


def warm_run(sock: str, args: list, env: dict, tmp: str) -> tuple:
    """One run through the fork server's protocol (as forkclient.py), returning (stdout, status)."""
    out_path = os.path.join(tmp, "stdout")
    with open(out_path, "w") as out, open(os.path.join(tmp, "stderr"), "a") as err:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        s.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, out.fileno(), err.fileno()]))])
        s.sendall(json.dumps({"args": args, "env": env, "cwd": os.getcwd()}).encode() + b"\n")
        f = s.makefile("rb")
        json.loads(f.readline())
        status = json.loads(f.readline())
        s.close()
    with open(out_path) as fh:
        return fh.read(), status


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--cold", type=int, default=5)
    p.add_argument("--steps", type=int, default=2)
    a = p.parse_args()
    env = {**os.environ, "PYTHONPATH": RT, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "RANKFLOW_NUM_THREADS": "1"}
    tmp = tempfile.mkdtemp(prefix="rankflow-warm-bench-")
    sock = os.path.join(tmp, "socket")
    with open(os.path.join(tmp, "server.log"), "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "rankflow_runtime.forkserver", "--socket", sock], env=env,
                                  stdout=subprocess.PIPE, stderr=log)
    json.loads(server.stdout.readline())  # ready
    server_rss0 = rss_kb(server.pid)
    specs = []
    for i in range(a.runs + a.cold):
        path = os.path.join(tmp, f"spec{i}.json")
        with open(path, "w") as f:
            json.dump(spec(i, a.steps), f)
        specs.append(path)
    try:
        cold_wall, cold_own = [], []
        for i in range(a.cold):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "rankflow_runtime", "run", "--spec", specs[a.runs + i], "--out",
                                os.path.join(tmp, f"cold{i}")], env=env, capture_output=True, text=True, check=True)
            cold_wall.append(time.perf_counter() - t0)
            cold_own.append(own_time(r.stdout))
        warm_wall, warm_own, peaks = [], [], []
        for i in range(a.runs):
            t0 = time.perf_counter()
            out, status = warm_run(sock, ["run", "--spec", specs[i], "--out", os.path.join(tmp, f"warm{i}")], env, tmp)
            warm_wall.append(time.perf_counter() - t0)
            if status.get("code") != 0:
                raise RuntimeError(f"warm run {i} failed: {status}")
            warm_own.append(own_time(out))
            peaks.append(status["maxrss_kb"])
        server_rss1 = rss_kb(server.pid)
    finally:
        server.terminate()
        server.wait()

    def mean(x: list) -> float:
        return sum(x) / max(len(x), 1)

    print(f"warm runtime bench: tiny-encoder LoRA r=4, {a.steps} steps, CPU, 1 thread; "
          f"{a.cold} one-process runs, {a.runs} warm runs")
    for label, wall, own in (("one process/run", cold_wall, cold_own), ("warm runtime", warm_wall, warm_own)):
        print(f"  {label:16} wall/run {mean(wall):6.2f} s  own wall_time_s {mean(own):6.2f} s  "
              f"overhead/run {mean(wall) - mean(own):6.2f} s")
    print(f"  overhead ratio one-process/warm: {(mean(cold_wall) - mean(cold_own)) / max(mean(warm_wall) - mean(warm_own), 1e-9):.1f}x")
    q = len(peaks) // 5 or 1
    print(f"  fork server RSS: {server_rss0 / 1024:.0f} MiB before, {server_rss1 / 1024:.0f} MiB after {a.runs} runs")
    print(f"  child peak RSS: first {peaks[0] / 1024:.0f} MiB, last {peaks[-1] / 1024:.0f} MiB, max "
          f"{max(peaks) / 1024:.0f} MiB; mean of first {q} {mean(peaks[:q]) / 1024:.0f} MiB, of last {q} "
          f"{mean(peaks[-q:]) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
