"""Absurd sizes (issue 20, item 3): a rank of 1e12 or a `model.config.hidden_size` of 1e8 built on the meta
device and planned, then failed five retried attempts with a 256 TB allocation. `count` refuses a model past
MAX_PARAMS (naming the rank and the widest adapted layer, or the config), and an allocation larger than the
machine's memory is a `config` error (exit 2, never retried)."""
import json

import pytest

from rankflow_runtime import events
from rankflow_runtime.build import MAX_PARAMS
from rankflow_runtime.cli import _impossible_allocation, _requested_bytes, main
from rankflow_runtime.spec import example_spec


def _run(tmp_path, command, spec):
    (tmp_path / "s.json").write_text(json.dumps(spec))
    argv = [command, "--spec", str(tmp_path / "s.json")] + (["--out", str(tmp_path / "o")] if command == "run" else [])
    with events.capture() as lines:
        rc = main(argv)
    return rc, [x for x in lines if x.get("event") == "error"]


def test_count_refuses_a_rank_of_1e12_naming_the_layer_width(tmp_path):
    rc, errors = _run(tmp_path, "count", example_spec(**{"method.rank": 10**12}))
    assert rc == 2 and errors[0]["kind"] == "config"
    assert errors[0]["message"].startswith("method.rank: lora at rank 1000000000000 makes 5.12e+14 trainable")
    assert "at most 64 wide" in errors[0]["message"] and errors[0]["hint"] == "use a rank of at most 64"


def test_count_refuses_a_hidden_size_of_1e8(tmp_path):
    spec = example_spec()
    spec["model"]["config"] = {"hidden_size": 10**8}
    rc, errors = _run(tmp_path, "count", spec)
    assert rc == 2 and errors[0]["kind"] == "config" and errors[0]["message"].startswith("model.config: ")
    assert f"(at most {MAX_PARAMS:.0e})" in errors[0]["message"]


@pytest.mark.parametrize("method,rank", [("lora", 64), ("vera", 1024), ("lora", 512)])
def test_large_but_possible_ranks_still_count(tmp_path, method, rank):
    rc, errors = _run(tmp_path, "count", example_spec(**{"method.name": method, "method.rank": rank}))
    assert rc == 0 and errors == []


def test_run_with_an_impossible_rank_is_a_config_error_not_retried(tmp_path, capsys):
    rc, errors = _run(tmp_path, "run", example_spec(**{"method.rank": 10**12}))
    assert rc == 2, errors
    assert errors[0]["kind"] == "config" and "more than this machine's" in errors[0]["message"]
    assert "Traceback" not in capsys.readouterr().err


def test_allocation_sizes_are_read_from_cpu_and_cuda_messages():
    cpu = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
           "to allocate 256000000000000 bytes. Error code 12 (Cannot allocate memory)")
    assert _requested_bytes(cpu) == 256_000_000_000_000
    cuda = "CUDA out of memory. Tried to allocate 256.00 TiB. GPU 0 has a total capacity of 79.15 GiB"
    assert _requested_bytes(cuda) == 256 * 2**40
    assert _impossible_allocation(RuntimeError(cuda)) is not None
    # an allocation the machine could hold is an ordinary (retryable) out-of-memory, not a user error
    assert _impossible_allocation(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB.")) is None
    assert _impossible_allocation(RuntimeError("something else")) is None
