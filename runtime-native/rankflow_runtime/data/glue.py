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

Hugging Face ``datasets`` forms (``dataset.format``: ``auto`` finds the first that exists, ``tsv`` / ``hf`` force
one): the TSVs above; ``<root>/glue/<task>/`` holding ``save_to_disk`` output or hub-layout Parquet/Arrow files
(``glue/sst2/train-00000-of-00001.parquet``, as in the hub's ``nyu-mll/glue``); explicit ``dataset.files``; or
``nyu-mll/glue`` (``glue``) with config ``<task>`` in the local HF cache. Their columns are those of the hub's
``glue`` dataset (``HF_COLUMNS``), whose integer labels are the ids above.

MNLI: ``glue/mnli`` evaluates ``validation_matched`` unless ``eval_split`` says ``validation_mismatched``;
``glue/mnli-m`` / ``glue/mnli-mm`` (also ``mnli_matched`` / ``mnli_mismatched``) name the split themselves, and an
``eval_split`` that contradicts the name is a config error (a result is never labelled with the wrong split).
"""
from __future__ import annotations

import os
from typing import Optional

from . import hf_data
from .common import (classification_example, data_root, dataset_format, optional_root, options_of, resolve_files,
                     spec_get, subset_indices)
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
           "mnli_mismatched": "mnli"}  # the MNLI ones also fix the evaluated split (MNLI_NAMED_SPLIT)
TASKS_META = {t: ("seq-cls", v[5], v[6]) for t, v in TASKS.items()}

# The MNLI names that say which split is evaluated.
MNLI_NAMED_SPLIT = {"mnli-m": "validation_matched", "mnli_matched": "validation_matched",
                    "mnli-mm": "validation_mismatched", "mnli_mismatched": "validation_mismatched"}
# Text and label columns of the hub's `glue` dataset (nyu-mll/glue), per task.
HF_COLUMNS = {"cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
              "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis"),
              "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2")}
HF_HUB_IDS = ("nyu-mll/glue", "glue")
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


def eval_split_of(task: str, spec: dict) -> str:
    """The evaluated split: ``eval_split``, or the one an MNLI alias names (a contradiction is an error)."""
    split = str(spec_get(spec, "eval_split", "validation"))
    alias = str(spec_get(spec, "name", "")).partition("/")[2].lower()
    named = MNLI_NAMED_SPLIT.get(alias)
    if named is not None:
        if split not in ("validation", named):
            raise DatasetConfigError(f"dataset.eval_split '{split}' contradicts dataset.name '{spec_get(spec, 'name')}',"
                                     f" which evaluates {named}",
                                     f"remove eval_split, or use glue/mnli with eval_split: {split}")
        return named
    if task == "mnli" and split in ("validation", "dev"):
        return "validation_matched"
    return split


def _hf_split_name(task: str, split: str) -> str:
    if split == "test":
        split_file(task, split)  # the same error as for the TSVs
    return {"dev": "validation", "dev_matched": "validation_matched",
            "dev_mismatched": "validation_mismatched"}.get(split, split)


def _hf_folder(root: str, task: str) -> Optional[str]:
    for c in (os.path.join(root, "glue", task), os.path.join(root, "glue", TASKS[task][0]),
              os.path.join(root, task)):
        if os.path.isdir(c) and hf_data.has_hf_layout(c):
            return c
    return None


def _official_folder(root: str, task: str) -> Optional[str]:
    try:
        folder = task_dir(root, task)
    except DataError:
        return None
    return folder if os.path.isfile(os.path.join(folder, "train.tsv")) else None


def read_hf_rows(task: str, spec: dict, root: Optional[str], split: str) -> tuple[list, list]:
    """(train rows, eval rows) as ``(text_a, text_b, label)`` from a Hugging Face form of the task."""
    files = resolve_files(spec)
    folder = _hf_folder(root, task) if root and not files else None
    splits, where = hf_data.open_dataset(folder, () if files or folder else HF_HUB_IDS, task, files)
    if not splits:
        raise DataError(f"GLUE {task} in a Hugging Face form not found (no save_to_disk or Parquet/Arrow folder "
                        f"under {os.path.join(root or '<data_root>', 'glue', task)}, not in the local HF cache)",
                        "save it there with DatasetDict.save_to_disk or copy the hub's Parquet files, or "
                        + HOW_TO_GET)
    col_a, col_b = HF_COLUMNS[task]
    want = _hf_split_name(task, split)
    out = []
    for name in ("train", want):
        if name not in splits:
            raise DataError(f"{where}: no split '{name}' (splits: {', '.join(sorted(splits))})",
                            "save the dataset with its train and validation splits")
        ds = splits[name]
        needed = [c for c in (col_a, col_b, "label") if c]
        hf_data.require_columns(ds, needed, f"{where} [{name}]", "use the columns of the hub's glue dataset")
        rows = []
        for i, r in enumerate(hf_data.rows(ds, needed)):
            y = r["label"]
            if NUM_LABELS[task] == 1:
                label: object = float(y)
            else:
                if not isinstance(y, int) or not 0 <= y < NUM_LABELS[task]:
                    if y == -1:  # unlabelled rows (the hub's test splits)
                        continue
                    raise DataError(f"{where} [{name}] row {i}: label {y!r} is not a class id of GLUE {task}",
                                    f"labels are 0..{NUM_LABELS[task] - 1} (the hub's glue ids)")
                label = y
            rows.append((r[col_a], r[col_b] if col_b else None, label))
        if not rows:
            raise DataError(f"{where} [{name}] holds no labelled examples", HOW_TO_GET)
        out.append(rows)
    return out[0], out[1]


def read_rows(task: str, spec: dict, split: str) -> tuple[list, list]:
    """(train rows, eval rows) in the format ``dataset.format`` asks for (``auto``: the TSVs, else a Hugging Face
    form under the data root, else explicit ``files``, else the local HF cache)."""
    fmt = dataset_format(spec, ("tsv", "official", "hf", "parquet", "arrow"), f"glue/{task}")
    root = optional_root(spec)
    if fmt in ("tsv", "official") or (fmt == "auto" and root and _official_folder(root, task)):
        folder = task_dir(data_root(spec, "glue"), task)
        return (read_split(task, os.path.join(folder, "train.tsv")),
                read_split(task, os.path.join(folder, split_file(task, split))))
    if fmt != "auto" or spec_get(spec, "files") or (root and _hf_folder(root, task)):
        return read_hf_rows(task, spec, root, split)
    try:  # neither layout on disk: the HF cache, else the error that says where the files go
        return read_hf_rows(task, spec, None, split)
    except DataError:
        task_dir(data_root(spec, "glue"), task)
        raise


def load(task: str, spec: dict, tok, max_length: int, seed: int):
    split = eval_split_of(task, spec)
    opts = options_of(spec)
    sub_seed = int(opts.get("subset_seed", 0))
    train, evals = read_rows(task, spec, split)
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
