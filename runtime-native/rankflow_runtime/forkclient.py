"""The thin client of the warm runtime (`forkserver.py`): run by path with `python -S`, so it imports
neither torch nor the runtime package (a few milliseconds).

    python -S forkclient.py SOCKET ARGS...

Sends this process's stdin/stdout/stderr (SCM_RIGHTS), ARGS, environment and working folder to the fork
server at SOCKET, forwards SIGTERM/SIGINT to the forked run, and exits with the run's exit status (or dies
of the same signal), so to the launcher it is the runtime process. Its parent's death reaches it as
SIGTERM (PR_SET_PDEATHSIG), forwarded like any SIGTERM. If it dies itself (SIGKILL), the run's watchdog
kills the run. Waits up to `RANKFLOW_FORKSERVER_WAIT_S` (120) seconds for the server's socket to appear.
"""

import array
import json
import os
import signal
import socket
import sys
import time


def _pdeathsig() -> None:
    try:
        import ctypes
        import ctypes.util

        ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl(1, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - not Linux: no parent-death signal
        pass


def _connect(path: str) -> socket.socket:
    deadline = time.monotonic() + float(os.environ.get("RANKFLOW_FORKSERVER_WAIT_S") or 120)
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError as e:
            s.close()
            if time.monotonic() > deadline:
                print(f"rankflow: the warm runtime at {path} does not answer ({e})", file=sys.stderr, flush=True)
                sys.exit(3)
            time.sleep(0.05)


def main() -> None:
    _pdeathsig()
    path, args = sys.argv[1], sys.argv[2:]
    pending: list[int] = []
    pid = [0]

    def forward(sig: int, _frame: object) -> None:
        if pid[0]:
            try:
                os.killpg(pid[0], sig)  # the run's group (DataLoader workers too), as for a plain process
            except OSError:
                try:
                    os.kill(pid[0], sig)
                except OSError:
                    pass
        else:
            pending.append(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    s = _connect(path)
    s.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
    s.sendall(json.dumps({"args": args, "env": dict(os.environ), "cwd": os.getcwd()}).encode() + b"\n")
    f = s.makefile("rb")
    first = f.readline()
    if not first:
        print("rankflow: the warm runtime closed the connection before starting the run", file=sys.stderr, flush=True)
        sys.exit(3)
    pid[0] = json.loads(first)["pid"]
    for sig in pending:
        forward(sig, None)
    line = f.readline()
    if not line:
        print("rankflow: the warm runtime ended before the run did", file=sys.stderr, flush=True)
        sys.exit(3)
    status = json.loads(line)
    if "signal" in status:
        signal.signal(status["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), status["signal"])
        time.sleep(1)
        sys.exit(128 + status["signal"])
    sys.exit(status["code"])


if __name__ == "__main__":
    main()
