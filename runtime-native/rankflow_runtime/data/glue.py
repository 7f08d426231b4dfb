"""GLUE (Wang et al., 2019) from the official TSV distribution (``download_glue_data.py`` / gluebenchmark.com).

Folders, searched under the data root in this order: ``glue/<Task>/``, ``glue_data/<Task>/``, ``<Task>/``, with
the official folder names (``CoLA``, ``SST-2``, ``MRPC``, ``QQP``, ``STS-B``, ``MNLI``, ``QNLI``, ``RTE``,
``WNLI``). Files: ``train.tsv`` and ``dev.tsv`` (MNLI: ``dev_matched.tsv`` / ``dev_mismatched.tsv``). Test files
carry no labels, so ``test`` is not an evaluation split.

Column layouts (as distributed; read by header name where there is a header):

=======  =========================================================================  ===========================
task     text columns                                                               label
=======  =========================================================================  ===========================
CoLA     no header; 4 columns: source, label, original mark, sentence                column 2 (0/1)
SST-2    ``sentence``                                                               ``label`` (0/1)
MRPC     ``#1 String``, ``#2 String`` (header starts with a BOM in some copies)     ``Quality`` (0/1)
QQP      ``question1``, ``question2``                                               ``is_duplicate`` (0/1)
STS-B    ``sentence1``, ``sentence2``                                               ``score`` (float, 0..5)
MNLI     ``sentence1``, ``sentence2``                                               ``gold_label`` (last column)
QNLI     ``question``, ``sentence``                                                 ``label`` (text)
RTE      ``sentence1``, ``sentence2``                                               ``label`` (text)
WNLI     ``sentence1``, ``sentence2``                                               ``label`` (0/1)
=======  =========================================================================  ===========================

Quoting: the files are tab-separated with no quoting at all (``csv.QUOTE_NONE``): a ``"`` is text, never a field
delimiter (MRPC, SST-2 and QQP contain unbalanced quotes). Lines are split on ``\\n`` only. Rows with the wrong
number of fields are skipped for QQP (its train file has a few broken rows, which the GLUE baselines skip too)
and are an error elsewhere. Label ids follow the Hugging Face ``glue`` dataset: MNLI entailment/neutral/
contradiction = 0/1/2; QNLI and RTE entailment/not_entailment = 0/1.

With a Hugging Face tokenizer whose model takes segment ids (BERT), examples also carry ``token_type_ids``.

Subsets: ``train_size`` / ``eval_size`` take a random subset drawn with ``options.subset_seed`` (default 0,
independent of the run seed, so every seed of a sweep sees the same examples), kept in file order.
"""
from __future__ import annotations

import os
from typing import Optional

from .common import classification_example, data_root, options_of, spec_get, subset_indices
from .errors import DatasetConfigError, DataError

# task -> (folder, text columns, label column, label map or None (ints) or "float", header?, metrics, default)
_ACC = ["accuracy", "loss"]
TASKS = {
    "cola": ("CoLA", (3, None), 1, None, False, ["mcc", "accuracy", "loss"], "mcc"),
    "sst2": ("SST-2", ("sentence", None), "label", None, True, _ACC, "accuracy"),
    "mrpc": ("MRPC", ("#1 String", "#2 String"), "Quality", None, True, ["accuracy", "f1", "loss"], "accuracy"),
    "qqp": ("QQP", ("question1", "question2"), "is_duplicate", None, True, ["accuracy", "f1", "loss"], "accuracy"),
    "stsb": ("STS-B", ("sentence1", "sentence2"), "score", "float", True, ["pearson", "spearman", "loss"], "pearson"),
    "mnli": ("MNLI", ("sentence1", "sentence2"), "gold_label",
             {"entailment": 0, "neutral": 1, "contradiction": 2}, True, _ACC, "accuracy"),
    "qnli": ("QNLI", ("question", "sentence"), "label", {"entailment": 0, "not_entailment": 1}, True, _ACC,
             "accuracy"),
    "rte": ("RTE", ("sentence1", "sentence2"), "label", {"entailment": 0, "not_entailment": 1}, True, _ACC,
            "accuracy"),
    "wnli": ("WNLI", ("sentence1", "sentence2"), "label", None, True, _ACC, "accuracy"),
}
NUM_LABELS = {"cola": 2, "sst2": 2, "mrpc": 2, "qqp": 2, "stsb": 1, "mnli": 3, "qnli": 2, "rte": 2, "wnli": 2}
ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli-mm": "mnli", "mnli_matched": "mnli",
           "mnli_mismatched": "mnli"}
TASKS_META = {t: ("seq-cls", v[5], v[6]) for t, v in TASKS.items()}

SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "dev": "dev.tsv"}
MNLI_SPLITS = {"train": "train.tsv", "validation_matched": "dev_matched.tsv", "validation": "dev_matched.tsv",
               "dev_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv",
               "dev_mismatched": "dev_mismatched.tsv"}
HOW_TO_GET = ("download GLUE with the official download_glue_data.py (or from gluebenchmark.com) and place the "
              "task folders under <data_root>/glue/")


def task_dir(root: str, task: str) -> str:
    folder = TASKS[task][0]
    candidates = [os.path.join(root, "glue", folder), os.path.join(root, "glue_data", folder),
                  os.path.join(root, folder)]
    for c in candidates:
        if os.path.isdir(c):
            return c
    raise DataError(f"GLUE {folder} not found: none of {', '.join(candidates)} exists", HOW_TO_GET)


def split_file(task: str, split: str) -> str:
    table = MNLI_SPLITS if task == "mnli" else SPLITS
    if split == "test":
        raise DatasetConfigError(f"dataset.eval_split 'test' has no labels in GLUE ({task})",
                                 "evaluate on the validation split (GLUE test labels are not public)")
    if split not in table:
        raise DatasetConfigError(f"dataset.eval_split '{split}' does not exist for glue/{task}",
                                 f"use one of: {', '.join(k for k in table if k != 'train')}")
    return table[split]


def read_tsv(path: str) -> list[list[str]]:
    """Rows of a GLUE TSV: tab-split, no quoting, BOM removed, ``\\r`` stripped, blank lines dropped."""
    if not os.path.isfile(path):
        raise DataError(f"GLUE file '{path}' is missing", HOW_TO_GET)
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    rows = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.strip():
            rows.append(line.split("\t"))
    return rows


def read_split(task: str, path: str) -> list[tuple[str, Optional[str], object]]:
    """``(text_a, text_b, label)`` triples of one GLUE file."""
    folder, (col_a, col_b), col_label, label_map, has_header, _, _ = TASKS[task]
    rows = read_tsv(path)
    if has_header:
        if not rows:
            raise DataError(f"GLUE file '{path}' is empty", HOW_TO_GET)
        header = [h.strip() for h in rows[0]]
        needed = [c for c in (col_a, col_b, col_label) if c is not None]
        missing = [c for c in needed if c not in header]
        if missing:
            raise DataError(f"{path}: header lacks column(s) {', '.join(repr(m) for m in missing)} of GLUE {folder}",
                            "use the official GLUE files (" + HOW_TO_GET + ")")
        # MNLI's dev files have extra annotator columns; gold_label is always the last one.
        ia = header.index(col_a)
        ib = header.index(col_b) if col_b is not None else None
        il = len(header) - 1 if col_label == "gold_label" else header.index(col_label)
        width = len(header)
        body = rows[1:]
        first_line = 2
    else:
        ia, ib, il, width = col_a, col_b, col_label, 4
        body = rows
        first_line = 1
    out = []
    for n, row in enumerate(body):
        if len(row) != width:
            if task == "qqp":
                continue
            raise DataError(f"{path}:{n + first_line}: expected {width} tab-separated fields, found {len(row)}",
                            "the file is damaged or not the official GLUE version; re-download it")
        raw = row[il].strip()
        if label_map == "float":
            try:
                label: object = float(raw)
            except ValueError:
                raise DataError(f"{path}:{n + first_line}: score '{raw}' is not a number",
                                "re-download the official STS-B files") from None
        elif label_map is not None:
            if raw not in label_map:
                if task == "mnli" and raw == "-":  # no gold label (annotators disagreed): not in the dev files
                    continue
                raise DataError(f"{path}:{n + first_line}: unknown label '{raw}' for GLUE {folder}",
                                f"labels are {', '.join(label_map)}")
            label = label_map[raw]
        else:
            if raw not in ("0", "1"):
                raise DataError(f"{path}:{n + first_line}: label '{raw}' is not 0 or 1 for GLUE {folder}",
                                "re-download the official GLUE files")
            label = int(raw)
        out.append((row[ia], row[ib] if ib is not None else None, label))
    if not out:
        raise DataError(f"GLUE file '{path}' holds no examples", HOW_TO_GET)
    return out


def load(task: str, spec: dict, tok, max_length: int, seed: int):
    root = data_root(spec, "glue")
    folder = task_dir(root, task)
    split = str(spec_get(spec, "eval_split", "validation"))
    if task == "mnli" and split == "validation":
        split = "validation_matched"
    eval_name = split_file(task, split)
    opts = options_of(spec)
    sub_seed = int(opts.get("subset_seed", 0))
    train = read_split(task, os.path.join(folder, "train.tsv"))
    evals = read_split(task, os.path.join(folder, eval_name))
    train = [train[i] for i in subset_indices(len(train), spec_get(spec, "train_size"), sub_seed)]
    evals = [evals[i] for i in subset_indices(len(evals), spec_get(spec, "eval_size"), sub_seed + 1)]
    regression = NUM_LABELS[task] == 1

    def encode(rows):
        out = []
        for a, b, y in rows:
            if hasattr(tok, "encode_pair"):  # HF tokenizers: their specials, plus segment ids for BERT-style models
                ids, types = tok.encode_pair(a, b, max_length)
            else:
                ids, types = tok.encode_for_classification(a, b, max_length), None
            out.append(classification_example(ids, y, regression, types))
        return out

    return encode(train), encode(evals), NUM_LABELS[task], split
