"""Text corpora for causal-LM pretraining (``corpus/files``) and a synthetic one for tests (``corpus/synthetic``).

``corpus/files`` reads documents from local files under the data root (or absolute paths), given as glob patterns
in ``dataset.options.train_files`` (and optionally ``eval_files``):

* ``.txt``: documents separated by blank lines;
* ``.jsonl`` / ``.json`` (JSON lines): one object per line, the document in ``options.text_field`` (``text``);
* ``.parquet``: the ``text_field`` column (needs ``pyarrow``);
* any of them gzip-compressed (``.gz``): C4's ``c4-train.*.json.gz`` and FineWeb's parquet shards work as they are.

Without ``eval_files`` the last ``held_out`` fraction of the documents (after a seeded shuffle, ``data_seed``) is the
held-out split. Each document becomes one training sequence, ``[BOS] + tokens`` truncated to ``max_length``
(the official SLTrain dataloader truncates and pads each document); with ``packing: true`` the documents are
instead joined with ``[EOS]`` and cut into blocks of ``max_length`` tokens (no padding, no tokens lost).
``train_size`` / ``eval_size`` cap the number of sequences. The metrics are those of every causal-LM task: loss,
perplexity (the default) and token accuracy on the held-out split.

``corpus/synthetic`` generates its documents (no files): sentences from a seeded random Markov chain over a
small word vocabulary whose transition logits are low-rank plus sparse, so a model has something learnable
to pretrain on; the same tokenization path as ``corpus/files`` follows.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
from typing import Iterable, List, Optional

import numpy as np
import torch

from .common import data_root, options_of
from .errors import DataError, DatasetConfigError
from .tokenizer import Tokenizer

TASKS = ("files", "synthetic")
DEFAULT_HELD_OUT = 0.05


def _open_text(path: str) -> io.TextIOBase:
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _kind(path: str) -> str:
    base = path[:-3] if path.endswith(".gz") else path
    for ext, kind in ((".jsonl", "jsonl"), (".json", "jsonl"), (".txt", "txt"), (".parquet", "parquet")):
        if base.endswith(ext):
            return kind
    raise DataError(f"{path}: unknown corpus file type", "use .txt, .jsonl/.json (JSON lines) or .parquet, optionally .gz")


def read_documents(path: str, text_field: str) -> List[str]:
    """The documents of one corpus file (see the module docstring); malformed lines are data errors."""
    kind = _kind(path)
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading parquet needs pyarrow", "install pyarrow or convert to JSON lines") from None
        table = pq.read_table(path)
        if text_field not in table.column_names:
            raise DataError(f"{path}: no column {text_field!r} (columns: {', '.join(table.column_names)})",
                            "set dataset.options.text_field")
        return [str(t) for t in table.column(text_field).to_pylist() if t]
    with _open_text(path) as f:
        if kind == "txt":
            return [d.strip() for d in f.read().split("\n\n") if d.strip()]
        docs = []
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not a JSON line ({e.msg})", "write one JSON object per line") from None
            if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
                raise DataError(f"{path}:{n}: no string field {text_field!r}", "set dataset.options.text_field")
            if obj[text_field].strip():
                docs.append(obj[text_field])
        return docs


def _files(spec: dict, key: str) -> List[str]:
    patterns = options_of(spec).get(key)
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise DatasetConfigError(f"dataset.options.{key}: expected a list of glob patterns", "e.g. [c4/*.json.gz]")
    root = None
    out: List[str] = []
    for pat in patterns:
        if not os.path.isabs(pat):
            root = root or data_root(spec, "the corpus files")
            pat = os.path.join(root, pat)
        hits = sorted(glob.glob(os.path.expanduser(pat)))
        if not hits:
            raise DataError(f"dataset.options.{key}: no file matches {pat}", "check the pattern and the data root")
        out += hits
    return out


def _documents(paths: Iterable[str], text_field: str) -> List[str]:
    docs: List[str] = []
    for p in paths:
        docs += read_documents(p, text_field)
    return docs


def synthetic_documents(n: int, seed: int, words: int = 48, rank: int = 3, length=(8, 24)) -> List[str]:
    """`n` sentences from a Markov chain over `words` made-up words; transition logits = low rank + sparse."""
    rng = np.random.default_rng(seed)
    vocab = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=int(rng.integers(2, 6)))) for _ in range(words)]
    logits = rng.normal(size=(words, rank)) @ rng.normal(size=(rank, words))
    mask = rng.random((words, words)) < 0.05
    logits = 1.5 * logits + mask * rng.normal(scale=4.0, size=(words, words))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    out = []
    for _ in range(n):
        k, w = int(rng.integers(*length)), int(rng.integers(words))
        sent = [vocab[w]]
        for _ in range(k - 1):
            w = int(rng.choice(words, p=probs[w]))
            sent.append(vocab[w])
        out.append(" ".join(sent) + ".")
    return out


def _example(ids: List[int]) -> dict:
    t = torch.tensor(ids, dtype=torch.long)
    return {"input_ids": t, "attention_mask": torch.ones_like(t), "labels": t.clone()}


def encode(docs: List[str], tok: Tokenizer, max_length: int, packing: bool, limit: Optional[int]) -> List[dict]:
    """Documents -> causal-LM examples (see the module docstring), at most `limit` of them."""
    bos = [tok.bos_id] if tok.bos_id is not None else []
    eos = [tok.eos_id] if tok.eos_id is not None else []
    out: List[dict] = []
    if not packing:
        for d in docs:
            ids = (bos + tok.encode(d) + eos)[:max_length]
            if len(ids) >= 2:
                out.append(_example(ids))
            if limit is not None and len(out) >= limit:
                break
        return out
    buf: List[int] = []
    for d in docs:
        buf += bos + tok.encode(d) + eos
        while len(buf) >= max_length:
            out.append(_example(buf[:max_length]))
            buf = buf[max_length:]
            if limit is not None and len(out) >= limit:
                return out
    return out


def load(task: str, spec: dict, tok: Tokenizer, max_length: int, seed: int):
    """(train examples, eval examples) for ``corpus/<task>``."""
    opts = options_of(spec)
    text_field = str(opts.get("text_field", "text"))
    held_out = float(opts.get("held_out", DEFAULT_HELD_OUT))
    packing = bool(opts.get("packing", False))
    n_train, n_eval = spec.get("train_size"), spec.get("eval_size")
    if task == "synthetic":
        docs = synthetic_documents(int(n_train or 512) + int(n_eval or 64), seed)
        train_docs, eval_docs = docs[: int(n_train or 512)], docs[int(n_train or 512):]
    else:
        train_paths = _files(spec, "train_files")
        if not train_paths:
            raise DatasetConfigError("corpus/files needs dataset.options.train_files",
                                     "list glob patterns of .txt / .jsonl / .parquet files under the data root")
        train_docs = _documents(train_paths, text_field)
        eval_paths = _files(spec, "eval_files")
        if eval_paths:
            eval_docs = _documents(eval_paths, text_field)
        else:
            order = np.random.default_rng(seed).permutation(len(train_docs))
            cut = max(1, int(round(held_out * len(train_docs))))
            if len(train_docs) < 2:
                raise DataError(f"corpus/files: {len(train_docs)} document(s) cannot be split into train and held-out",
                                "add documents or give dataset.options.eval_files")
            eval_docs = [train_docs[i] for i in order[len(order) - cut:]]
            train_docs = [train_docs[i] for i in order[: len(order) - cut]]
    train = encode(train_docs, tok, max_length, packing, n_train)
    evals = encode(eval_docs, tok, max_length, packing, n_eval)
    if not train or not evals:
        raise DataError(f"corpus/{task}: no {'training' if not train else 'held-out'} sequence of ≥ 2 tokens",
                        "add documents, lower max_length with packing, or raise held_out")
    return train, evals
