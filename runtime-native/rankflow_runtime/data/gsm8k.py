"""GSM8k (Cobbe et al., 2021; github.com/openai/grade-school-math): JSONL records ``{"question", "answer"}``
whose answer ends with ``#### N``.

Files: ``<root>/gsm8k/train.jsonl`` and ``<root>/gsm8k/test.jsonl`` (the official repository's
``grade_school_math/data/`` files, copied or linked there). Formatting follows lm-evaluation-harness: the
prompt is ``"Question: {question}\\nAnswer:"`` and the target ``" {answer}"`` + EOS, so a fine-tuned model writes
its reasoning and ends with ``#### N``. The calculator annotations ``<<48/2=24>>`` are removed from targets by
default (``options.keep_calculator: true`` keeps them). Evaluation: greedy decoding of up to
``options.max_new_tokens`` (256, the harness's default) tokens, stopped at EOS, a blank line or ``Question:``;
``exact_match`` (last number) and ``exact_match_strict`` (``#### N``) from ``metrics``.
"""
from __future__ import annotations

import json
import os
import re

from . import hf_data
from .common import data_root, dataset_format, lm_example, optional_root, options_of, resolve_files, spec_get, \
    subset_indices
from .errors import DatasetConfigError, DataError
from .tokenizer import Tokenizer

_CALC_RE = re.compile(r"<<[^>]*>>")
STOP_STRINGS = ("\n\n", "Question:")
SPLIT_FILES = {"train": "train.jsonl", "test": "test.jsonl"}


def read_jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise DataError(f"GSM8k file '{path}' is missing",
                        "download train.jsonl / test.jsonl from github.com/openai/grade-school-math "
                        "(grade_school_math/data/) into <data_root>/gsm8k/")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})",
                                "each line must be one JSON object") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) \
                    or not isinstance(rec.get("answer"), str):
                raise DataError(f"{path}:{lineno}: a GSM8k record needs string fields 'question' and 'answer'",
                                "use the official GSM8k JSONL files")
            if "####" not in rec["answer"]:
                raise DataError(f"{path}:{lineno}: the answer does not end with '#### <number>'",
                                "use the official GSM8k JSONL files")
            records.append(rec)
    if not records:
        raise DataError(f"GSM8k file '{path}' holds no records", "re-download the file")
    return records


def prompt_text(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def target_text(answer: str, keep_calculator: bool = False) -> str:
    return " " + (answer if keep_calculator else _CALC_RE.sub("", answer))


def encode(records: list[dict], tok: Tokenizer, max_length: int, keep_calculator: bool, for_eval: bool):
    eos = [tok.eos_id] if tok.eos_id is not None else []
    bos = [tok.bos_id] if tok.bos_id is not None else []
    out = []
    for rec in records:
        prompt = bos + tok.encode(prompt_text(rec["question"]))
        target = tok.encode(target_text(rec["answer"], keep_calculator)) + eos
        out.append(lm_example(prompt, target, max_length, keep_prompt_length=for_eval))
    return out


HF_HUB_IDS = ("openai/gsm8k", "gsm8k")


def _hf_folder(root: str):
    for c in (os.path.join(root, "gsm8k", "main"), os.path.join(root, "gsm8k")):
        if os.path.isdir(c) and hf_data.has_hf_layout(c):
            return c
    return None


def read_hf_records(spec: dict, root, split: str, hub: bool) -> tuple[list[dict], list[dict]]:
    """(train, eval) records from a save_to_disk / Parquet / Arrow form (the hub's ``openai/gsm8k`` ``main``)."""
    files = resolve_files(spec)
    folder = _hf_folder(root) if root and not files else None
    splits, where = hf_data.open_dataset(folder, HF_HUB_IDS if hub and not (files or folder) else (), "main", files)
    if not splits:
        raise DataError(f"GSM8k in a Hugging Face form not found under {os.path.join(root or '<data_root>', 'gsm8k')}"
                        " (save_to_disk or main/<split>-*.parquet) nor in the local HF cache",
                        "save it there with DatasetDict.save_to_disk, copy the hub's Parquet files, or put the "
                        "official train.jsonl / test.jsonl in <data_root>/gsm8k/")
    out = []
    for name in ("train", split):
        if name not in splits:
            raise DataError(f"{where}: no split '{name}' (splits: {', '.join(sorted(splits))})",
                            "save GSM8k with its train and test splits")
        hf_data.require_columns(splits[name], ["question", "answer"], f"{where} [{name}]",
                                "GSM8k rows need 'question' and 'answer' columns")
        recs = hf_data.rows(splits[name], ["question", "answer"])
        for i, r in enumerate(recs):
            if not isinstance(r["answer"], str) or "####" not in r["answer"]:
                raise DataError(f"{where} [{name}] row {i}: the answer does not end with '#### <number>'",
                                "use the GSM8k answers as published")
        out.append(recs)
    return out[0], out[1]


def read_records(spec: dict, split: str) -> tuple[list[dict], list[dict]]:
    fmt = dataset_format(spec, ("official", "jsonl", "hf", "parquet", "arrow"), "gsm8k")
    root = optional_root(spec)
    official = root and os.path.isfile(os.path.join(root, "gsm8k", SPLIT_FILES["train"]))
    if fmt in ("official", "jsonl") or (fmt == "auto" and official):
        folder = os.path.join(data_root(spec, "gsm8k"), "gsm8k")
        return read_jsonl(os.path.join(folder, SPLIT_FILES["train"])), read_jsonl(os.path.join(folder, SPLIT_FILES[split]))
    if fmt != "auto" or resolve_files(spec) or (root and _hf_folder(root)):
        return read_hf_records(spec, root, split, hub=fmt == "hf")
    try:
        return read_hf_records(spec, None, split, hub=True)
    except DataError:
        read_jsonl(os.path.join(data_root(spec, "gsm8k"), "gsm8k", SPLIT_FILES["train"]))  # says where it goes
        raise


def load_records(spec: dict, seed: int) -> tuple[list[dict], list[dict], str]:
    split = str(spec_get(spec, "eval_split", "test"))
    if split not in SPLIT_FILES:
        raise DatasetConfigError(f"dataset.eval_split '{split}' does not exist for gsm8k",
                                 "use eval_split 'test' (GSM8k has no validation split)")
    train, evalr = read_records(spec, split)
    opts = options_of(spec)
    sub_seed = int(opts.get("subset_seed", 0))
    train = [train[i] for i in subset_indices(len(train), spec_get(spec, "train_size"), sub_seed)]
    evalr = [evalr[i] for i in subset_indices(len(evalr), spec_get(spec, "eval_size"), sub_seed + 1)]
    return train, evalr, split
