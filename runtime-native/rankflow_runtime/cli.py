"""Command line: `python -m rankflow_runtime run|count|describe|smoke|export` (the contract is in the
docstring of `rankflow_runtime/__init__.py`). stdout carries JSON only; logs go to stderr. User errors
become one `error` event and exit code 2, never a stack trace."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import List, Optional

from . import __version__
from .errors import EXIT_RETRYABLE, ConfigError, RunError, exit_code_of
from .events import emit, take_stdout, write_json

log = logging.getLogger("rankflow")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit 2; we want an error event
        raise ConfigError(f"command line: {message}", hint=self.format_usage().strip())


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m rankflow_runtime", description="rankflow native runtime")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True
    r = sub.add_parser("run", help="train one run; JSON-lines events on stdout")
    r.add_argument("--spec", required=True, help="run spec JSON (schemas/runspec.ts)")
    r.add_argument("--out", required=True, help="output directory (checkpoints, logs)")
    r.add_argument("--resume", default=None, help="checkpoint directory to resume from")
    r.add_argument("--input", action="append", default=[], metavar="NAME=DIR",
                   help="an input artifact the spec's `inputs` names (repeatable); verified before it is loaded")
    c = sub.add_parser("count", help="trainable/total parameters, on the meta device")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--spec", help="one run spec")
    g.add_argument("--specs", help="a JSON array of run specs; prints a JSON array of results")
    sub.add_parser("describe", help="methods, models and datasets with their option schemas")
    s = sub.add_parser("smoke", help="train a two-layer MLP for a few steps on the CPU")
    s.add_argument("--out", required=True, help="directory to write the smoke file into")
    e = sub.add_parser("export", help="write a checkpoint's adapter in Hugging Face PEFT format")
    e.add_argument("--spec", required=True, help="the run spec that trained the checkpoint")
    e.add_argument("--checkpoint", required=True, help="checkpoint directory (it holds manifest.json)")
    e.add_argument("--out", required=True, help="directory for adapter_config.json + adapter_model.safetensors")
    e.add_argument("--pissa-mode", default="lora", choices=["lora", "residual"],
                   help="PiSSA only: lora (rank-2r LoRA on the original weights) or residual")
    return p


def describe() -> dict:
    import torch

    from .catalog import METRICS
    from .methods import registry
    from .models import describe_models
    from .procedures import describe_procedures
    try:
        from .data import describe_datasets
        datasets = describe_datasets()
    except ImportError:
        datasets = {}
    return {"runtime": __version__, "torch": torch.__version__,
            "methods": {name: cls.describe() for name, cls in registry().items()},
            "procedures": describe_procedures(), "models": describe_models(), "datasets": datasets,
            "metrics": METRICS}


def _count(args) -> int:
    from .procedures import count_spec as count
    from .spec import load_spec, parse_spec, read_json
    if args.spec:
        write_json(count(load_spec(args.spec)))
        return 0
    arr = read_json(args.specs, "specs")
    if not isinstance(arr, list):
        raise ConfigError(f"{args.specs}: expected a JSON array of run specs", hint="wrap the specs in [ ]")
    results = []
    for i, obj in enumerate(arr):
        try:
            results.append(count(parse_spec(obj, src=f"{os.path.basename(args.specs)}[{i}]")))
        except RunError as e:
            e.message = f"{os.path.basename(args.specs)}[{i}]: {e.message}" if not e.message.startswith(
                os.path.basename(args.specs)) else e.message
            raise
    write_json(results)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        from . import signals
        signals.install()  # before anything slow, so an early SIGTERM is not lost
    take_stdout()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from .models.hf import quiet_libraries
    quiet_libraries()
    try:
        args = _parser().parse_args(argv)
        if args.command == "describe":
            write_json(describe())
            return 0
        if args.command == "smoke":
            from .smoke import run_smoke
            return run_smoke(args.out)
        if args.command == "count":
            return _count(args)
        if args.command == "export":
            from .export_peft import export_checkpoint
            from .spec import load_spec
            emit("exported", **export_checkpoint(load_spec(args.spec), args.checkpoint, args.out,
                                                 pissa_mode=args.pissa_mode))
            return 0
        from .artifacts import parse_input_flags
        from .procedures import run_procedure
        from .spec import load_spec
        inputs = parse_input_flags(args.input)
        return run_procedure(load_spec(args.spec), args.out, input_paths=inputs, resume=args.resume)
    except RunError as e:
        kind = getattr(e, "kind", "internal")
        hint = getattr(e, "hint", None) or None
        emit("error", kind=kind, message=e.message, hint=hint)
        log.error("%s error: %s%s", kind, e.message, f" (fix: {hint})" if hint else "")
        return exit_code_of(kind)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except KeyboardInterrupt:
        emit("error", kind="internal", message="interrupted", hint=None)
        return EXIT_RETRYABLE
    except MemoryError:
        emit("error", kind="oom", message="out of host memory", hint="use a smaller batch or model")
        return EXIT_RETRYABLE
    except Exception as e:  # a bug or a lost device: retryable, with the traceback on stderr
        impossible = _impossible_allocation(e)
        if impossible:
            emit("error", kind="config", message=impossible,
                 hint="lower method.rank, model.config sizes or training.batch_size")
            log.error("config error: %s", impossible)
            return exit_code_of("config")
        if _is_oom(e):
            emit("error", kind="oom", message=f"out of device memory: {str(e).splitlines()[0][:200]}",
                 hint="lower training.batch_size (raise grad_accum) or use bf16")
            return EXIT_RETRYABLE
        traceback.print_exc(file=sys.stderr)
        emit("error", kind="internal", message=f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
             hint="see the runtime log on stderr")
        return EXIT_RETRYABLE


_UNITS = {"B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50, "KB": 2**10, "MB": 2**20,
          "GB": 2**30, "TB": 2**40, "PB": 2**50, "BYTES": 1}


def _requested_bytes(msg: str) -> Optional[int]:
    """The size of the allocation an allocator error names: CPU `you tried to allocate 123 bytes`, CUDA
    `Tried to allocate 256.00 TiB`."""
    import re
    m = re.search(r"tried to allocate ([0-9.]+)\s*([KMGTP]?i?B|bytes)", msg, re.IGNORECASE)
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS.get(m.group(2).upper(), 1))


def _memory_total() -> int:
    """The largest memory of this machine an allocation could come from: host RAM, or a GPU's if larger."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        import torch
        for i in range(torch.cuda.device_count()):
            total = max(total, torch.cuda.get_device_properties(i).total_memory)
    except Exception:
        pass
    return total


def _impossible_allocation(e: BaseException) -> Optional[str]:
    """A user error when one allocation asks for more memory than the machine has (a retry cannot succeed):
    the spec asked for the impossible (a rank of 1e12, a hidden size of 1e8). None otherwise."""
    want = _requested_bytes(str(e))
    have = _memory_total()
    if want is None or want <= have:
        return None
    return (f"one allocation of {want / 2**30:.4g} GiB is more than this machine's {have / 2**30:.4g} GiB: "
            "the spec asks for a model that cannot exist here")


def _is_oom(e: BaseException) -> bool:
    try:
        import torch
        if isinstance(e, torch.cuda.OutOfMemoryError):
            return True
    except Exception:
        pass
    return "out of memory" in str(e).lower()
