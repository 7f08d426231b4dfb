"""The warm runtime: a fork server that imports torch, transformers and the runtime once, then forks one
child per run, so a run pays for a `fork()` instead of starting Python and importing torch.

    python -m rankflow_runtime.forkserver --socket PATH

The launcher (`launcher/spawn.ts`) starts one per worker process and starts each run through the thin
client `forkclient.py` (plain Python, no torch), which connects to PATH and sends its own stdin, stdout and
stderr (SCM_RIGHTS), its arguments, environment and working folder. The server forks; the child becomes
exactly what `python -m rankflow_runtime ARGS` would have been:

* its stdio are the client's (so the worker reads the same JSON-lines events and stderr log), its
  environment and working folder are the client's (the slot's `CUDA_VISIBLE_DEVICES`, the thread count,
  `RANKFLOW_RUN_ID`), its signal handlers are the defaults, and it runs in its own process group;
* the client forwards SIGTERM/SIGINT to it (the runtime's checkpoint-on-SIGTERM is unchanged) and exits
  with the child's exit status (or dies of the same signal);
* when the client dies (SIGKILL of the worker's process group, a kill -9 in a fault test), the child's
  watchdog sees the connection close and SIGKILLs the child's group: nothing trains on unobserved.

What one process per run gave is kept: a crash or an OOM kills only that child; memory cannot leak from
run to run (every run is a fresh copy-on-write image of a server that never trains); a run's seeds are set
from its spec as before, so exact resume is unchanged. The server never touches CUDA (forking after CUDA
initialisation is unsafe): it only imports. A run's per-run environment applies in the child, except what
libraries read at import time in the server (the worker's environment): the thread count, read by OpenMP
when torch loads, is applied again with `torch.set_num_threads`.

On SIGTERM (the worker stopping, or dying: PR_SET_PDEATHSIG) the server stops accepting and exits once its
running children are done (each got the SIGTERM through its client).
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import signal
import socket
import sys
import threading
import time

# What a run imports anyway; imported once here. Failures are left to the child to report. Not the data
# package: `datasets`/`pyarrow` start native threads at import, after which a forked child hangs in its
# first torch op (measured); a run imports them itself.
PRELOAD = ("torch", "transformers", "rankflow_runtime.cli", "rankflow_runtime.train", "rankflow_runtime.build")


def _warm_up() -> None:
    """What every run would otherwise do first, paid once here: every method and procedure module (the
    registries import them all on first use), and the first optimizer's import of `torch._dynamo` (1.0-1.3 s
    per run on a CPU, measured: `torch.optim.Optimizer.__init__` imports it lazily). Nothing here computes:
    a tensor op would start OpenMP's thread pool, which a forked child cannot use."""
    from rankflow_runtime.methods import registry
    from rankflow_runtime.procedures import procedures

    registry()
    procedures()
    torch = sys.modules["torch"]
    torch.optim.AdamW([torch.nn.Parameter(torch.empty(1))])  # empty: not even a fill


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux
        return 1


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - the child imports again and says why
            print(f"[forkserver] preloading {name} failed: {e}", file=sys.stderr, flush=True)
    before = _threads()
    try:
        _warm_up()
    except Exception as e:  # noqa: BLE001 - each run does it again and says why
        print(f"[forkserver] warming up failed: {e}", file=sys.stderr, flush=True)
    if _threads() != before:
        print(f"[forkserver] warming up started threads ({before} -> {_threads()}): forked runs may hang",
              file=sys.stderr, flush=True)
    # What was built so far lives as long as the server: out of the collector's sight, its pages stay shared
    # with every child instead of being copied when a child's collector touches their reference counts.
    gc.collect()
    gc.freeze()


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """One request: a 1-byte message carrying the client's fds 0/1/2, then a JSON line."""
    fds = array.array("i")
    msg, anc, _flags, _addr = conn.recvmsg(1, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not msg or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("a request carries three file descriptors")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ValueError("the client closed before its request ended")
        buf += chunk
    return json.loads(buf), list(fds)


def _watchdog(conn: socket.socket) -> None:
    """In the child: the client is gone (it never sends after its request) -> kill this run's group."""
    try:
        conn.recv(1)
    except OSError:
        pass
    os.killpg(os.getpid(), signal.SIGKILL)


def _apply_threads(env: dict) -> None:
    n = env.get("RANKFLOW_NUM_THREADS") or env.get("OMP_NUM_THREADS")
    if n and n.isdigit() and int(n) > 0 and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(n))


def _child(conn: socket.socket, listener: socket.socket, req: dict, fds: list[int]) -> None:
    """The forked run: become `python -m rankflow_runtime ARGS` with the client's stdio, env and cwd."""
    code = 1
    try:
        os.setpgid(0, 0)
        listener.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        env = req["env"]
        os.environ.clear()
        os.environ.update(env)
        os.chdir(req["cwd"])
        for p in reversed([p for p in env.get("PYTHONPATH", "").split(":") if p]):
            if p not in sys.path:
                sys.path.insert(0, p)
        _apply_threads(env)
        threading.Thread(target=_watchdog, args=(conn,), daemon=True).start()
        import runpy

        sys.argv = ["rankflow_runtime", *req["args"]]
        module = env.get("RANKFLOW_RUNTIME_MODULE") or "rankflow_runtime"
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - as an uncaught exception in `python -m`: traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve_one(conn: socket.socket, listener: socket.socket, running: set, lock: threading.Lock) -> None:
    try:
        req, fds = _recv_request(conn)
    except (OSError, ValueError, json.JSONDecodeError) as e:
        print(f"[forkserver] bad request: {e}", file=sys.stderr, flush=True)
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        _child(conn, listener, req, fds)
    try:
        os.setpgid(pid, pid)  # also here, so a signal to the group never races the child's own setpgid
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    with lock:
        running.add(pid)
    try:
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    except OSError:
        pass  # the client is gone; its child's watchdog ends it

    def reap() -> None:
        _, status, usage = os.wait4(pid, 0)
        out = {"maxrss_kb": usage.ru_maxrss}
        if os.WIFSIGNALED(status):
            out["signal"] = os.WTERMSIG(status)
        else:
            out["code"] = os.WEXITSTATUS(status)
        try:
            conn.sendall(json.dumps(out).encode() + b"\n")
        except OSError:
            pass
        conn.close()
        with lock:
            running.discard(pid)

    threading.Thread(target=reap, daemon=True).start()


def serve(path: str) -> int:
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # the socket appears whole: a client never connects to a half-bound one
    listener.listen(64)
    running: set = set()
    lock = threading.Lock()
    stopping = threading.Event()

    def stop(_sig: int, _frame: object) -> None:
        stopping.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"event": "forkserver", "pid": os.getpid(), "socket": path}), flush=True)
    while not stopping.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            if stopping.is_set():
                break
            continue
        _serve_one(conn, listener, running, lock)
    try:
        os.unlink(path)
    except OSError:
        pass
    while True:  # children got SIGTERM through their clients: let them checkpoint and exit
        with lock:
            if not running:
                break
        time.sleep(0.2)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rankflow_runtime.forkserver")
    p.add_argument("--socket", required=True)
    return serve(p.parse_args(argv).socket)


if __name__ == "__main__":
    sys.exit(main())
