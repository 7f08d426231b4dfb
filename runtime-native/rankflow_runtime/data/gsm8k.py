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

from .common import data_root, lm_example, options_of, spec_get, subset_indices
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


def load_records(spec: dict, seed: int) -> tuple[list[dict], list[dict], str]:
    root = data_root(spec, "gsm8k")
    split = str(spec_get(spec, "eval_split", "test"))
    if split not in SPLIT_FILES:
        raise DatasetConfigError(f"dataset.eval_split '{split}' does not exist for gsm8k",
                                 "use eval_split 'test' (GSM8k has no validation split)")
    folder = os.path.join(root, "gsm8k")
    train = read_jsonl(os.path.join(folder, SPLIT_FILES["train"]))
    evalr = read_jsonl(os.path.join(folder, SPLIT_FILES[split]))
    opts = options_of(spec)
    sub_seed = int(opts.get("subset_seed", 0))
    train = [train[i] for i in subset_indices(len(train), spec_get(spec, "train_size"), sub_seed)]
    evalr = [evalr[i] for i in subset_indices(len(evalr), spec_get(spec, "eval_size"), sub_seed + 1)]
    return train, evalr, split
