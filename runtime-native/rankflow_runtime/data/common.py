"""Helpers shared by the dataset readers: spec access, data roots, subsetting, encoding."""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .errors import DatasetConfigError, DataError
from .tokenizer import Tokenizer
from .types import IGNORE_INDEX


def spec_get(spec: dict, key: str, default: Any = None) -> Any:
    value = spec.get(key, default) if isinstance(spec, dict) else getattr(spec, key, default)
    return default if value is None else value


def options_of(spec: dict) -> dict:
    opts = spec_get(spec, "options", {}) or {}
    if not isinstance(opts, dict):
        raise DatasetConfigError("dataset.options must be a mapping", "write dataset.options as key: value pairs")
    return {k: v for k, v in opts.items() if v is not None}  # null = the option's default


FORMATS = ("auto", "official", "tsv", "csv", "jsonl", "parquet", "arrow", "hf")


def dataset_format(spec: dict, allowed: tuple, what: str) -> str:
    """``dataset.format`` (absent: ``auto``), checked against the formats this dataset can be read from."""
    fmt = str(spec_get(spec, "format", "auto")).lower()
    if fmt != "auto" and fmt not in allowed:
        raise DatasetConfigError(f"dataset.format '{fmt}' is not a format of {what}",
                                 f"use one of: auto, {', '.join(allowed)}")
    return fmt


def optional_root(spec: dict) -> Optional[str]:
    """The data root when one is set and exists (``dataset.data_root``, else ``$RANKFLOW_DATA``), else None."""
    root = spec_get(spec, "data_root") or os.environ.get("RANKFLOW_DATA")
    root = os.path.expanduser(str(root)) if root else None
    return root if root and os.path.isdir(root) else None


def data_root(spec: dict, family: str) -> str:
    root = spec_get(spec, "data_root") or os.environ.get("RANKFLOW_DATA")
    if not root:
        raise DataError(f"dataset '{spec_get(spec, 'name')}' reads files from disk but no data root is set",
                        f"set dataset.data_root in the recipe or the RANKFLOW_DATA environment variable to the "
                        f"folder holding {family}/")
    root = os.path.expanduser(str(root))
    if not os.path.isdir(root):
        raise DataError(f"data root '{root}' does not exist",
                        "point dataset.data_root (or RANKFLOW_DATA) at an existing folder")
    return root


def subset_indices(n: int, size: Optional[int], seed: int) -> list[int]:
    """All indices when ``size`` is None or >= n; else a seeded random subset of ``size``, in file order."""
    if size is None or size >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n, size=int(size), replace=False).tolist())


def effective_max_length(spec: dict, model_max: int) -> int:
    want = int(spec_get(spec, "max_length", model_max or 128))
    return min(want, model_max) if model_max else want


def classification_example(ids: Sequence[int], label, regression: bool,
                           token_type_ids: Optional[Sequence[int]] = None) -> dict:
    ids_t = torch.tensor(list(ids), dtype=torch.long)
    ex = {
        "input_ids": ids_t,
        "attention_mask": torch.ones_like(ids_t),
        "labels": torch.tensor(float(label), dtype=torch.float32) if regression
        else torch.tensor(int(label), dtype=torch.long),
    }
    if token_type_ids is not None:
        ex["token_type_ids"] = torch.tensor(list(token_type_ids), dtype=torch.long)
    return ex


def lm_example(prompt: Sequence[int], target: Sequence[int], max_length: int, keep_prompt_length: bool = False,
               extra: Optional[dict] = None) -> dict:
    """``prompt + target`` with labels -100 on the prompt. Too long: the prompt loses tokens from its start
    (keeping at least half the budget for it), then the target is cut at its end."""
    prompt, target = list(prompt), list(target)
    if len(prompt) + len(target) > max_length:
        keep_prompt = min(len(prompt), max(max_length // 2, max_length - len(target)))
        prompt = prompt[len(prompt) - keep_prompt:]
        target = target[: max_length - len(prompt)]
    ids = torch.tensor(prompt + target, dtype=torch.long)
    labels = ids.clone()
    labels[: len(prompt)] = IGNORE_INDEX
    ex = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    if keep_prompt_length:
        ex["prompt_length"] = torch.tensor(len(prompt), dtype=torch.long)
    if extra:
        ex.update(extra)
    return ex


def require_tokenizer_fits(tok: Tokenizer, vocab_size: int, what: str) -> None:
    if vocab_size and getattr(tok, "vocab_size", 0) > vocab_size:
        raise DatasetConfigError(
            f"the tokenizer for {what} has {tok.vocab_size} ids but the model's vocab_size is {vocab_size}",
            "use a model whose vocabulary matches its tokenizer")


def resolve_files(spec: dict) -> Optional[dict]:
    """``dataset.files`` with relative paths resolved against the data root (``dataset.data_root``, else
    ``$RANKFLOW_DATA``), else the working folder; None when the spec names no files."""
    files = spec_get(spec, "files")
    if not files:
        return None
    if not isinstance(files, dict):
        raise DatasetConfigError("dataset.files must map split names to files",
                                 "write files: {train: train.csv, validation: dev.csv}")
    root = spec_get(spec, "data_root") or os.environ.get("RANKFLOW_DATA") or "."
    out = {}
    for split, path in files.items():
        paths = [path] if isinstance(path, str) else path
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
            raise DatasetConfigError(f"dataset.files.{split}: expected a file path (or a list of paths)",
                                     "write files: {train: train.csv, validation: dev.csv}")
        full = [os.path.join(os.path.expanduser(str(root)), os.path.expanduser(p)) for p in paths]
        out[str(split)] = full[0] if isinstance(path, str) else full
    return out
