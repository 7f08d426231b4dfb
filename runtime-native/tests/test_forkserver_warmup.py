"""The warm runtime's warm-up (`forkserver._preload`): what each forked run would otherwise import or build
first is there before the fork, no thread was started (a forked child of a threaded OpenMP/pyarrow process
hangs), and the server's objects are frozen out of the collector. Runs in a fresh interpreter, as the
server does, so the import state of this test process does not matter."""
import json
import os
import subprocess
import sys

PROBE = r"""
import gc, json, os, sys
from rankflow_runtime import forkserver
def threads():
    return len(os.listdir("/proc/self/task"))
forkserver._preload()
from rankflow_runtime.methods import base as mbase
from rankflow_runtime.procedures import base as pbase
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    import torch
    # the child computes (OpenMP starts here, in the child) and builds an optimizer; it reports what it imported
    before = set(sys.modules)
    x = torch.nn.Parameter(torch.randn(8, 8))
    opt = torch.optim.AdamW([x])
    (x @ x).sum().backward()
    opt.step()
    os.write(write_end, json.dumps(sorted(set(sys.modules) - before)).encode())
    os._exit(0)
os.close(write_end)
with os.fdopen(read_end) as f:
    imported = json.loads(f.read() or "null")
_, status = os.waitpid(pid, 0)
print(json.dumps({
    "dynamo": "torch._dynamo" in sys.modules,
    "methods": len(mbase.REGISTRY),
    "procedures": len(pbase.PROCEDURES),
    "frozen": gc.get_freeze_count(),
    "threads": threads(),
    "datasets": "datasets" in sys.modules or "pyarrow" in sys.modules,
    "child": os.waitstatus_to_exitcode(status),
    "child_imported": imported,
}))
"""


def test_preload_warms_up_without_threads():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    base = subprocess.run([sys.executable, "-c", "import os; print(len(os.listdir('/proc/self/task')))"],
                          capture_output=True, text=True, env=env, check=True)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["dynamo"], "the first optimizer's import of torch._dynamo is paid in the server"
    assert r["methods"] >= 20 and r["procedures"] >= 5, r
    assert r["frozen"] > 0
    assert not r["datasets"], "datasets/pyarrow start threads: a forked run would hang"
    assert r["child"] == 0, "the forked child failed"
    assert r["child_imported"] == [], "the forked child imported these itself"
    # torch's own start-up threads (if any) are allowed; the warm-up adds none beyond a bare interpreter's few
    assert r["threads"] <= int(base.stdout) + 2, r
