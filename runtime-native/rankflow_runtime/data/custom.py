"""Your own data: CSV, TSV, JSON Lines or Parquet (or Arrow) files with a column mapping in the recipe.

    dataset: {name: my-reviews, format: csv, files: {train: train.csv, validation: dev.csv},
              text: [premise, hypothesis], label: label}

The run spec carries ``files`` (split -> path; relative paths are under the data root, else the working
folder), ``format`` (``auto``: from the file extension), ``columns`` (``text``: one column or two for a pair,
``label``; ``prompt`` / ``target`` for a causal LM) and optionally ``labels`` (the label set, in id order) and
``problem_type`` (``classification``, the default, or ``regression``).

* **classification**: the label set is the sorted distinct values of the training split's label column (numbers
  numerically, else as text) unless ``labels`` gives it; an evaluation label outside it is a data error.
* **regression**: labels are numbers (one output, MSE loss; Pearson / Spearman).
* **causal LM**: ``prompt`` + ``target`` columns (loss on the target tokens, which end with EOS), or ``text``
  alone (loss on every token).

Every problem (a missing file, a missing column, an empty or unseen label, a malformed line) is a ``data`` error
that names the file (and line or row), the column and the fix.
"""
from __future__ import annotations

import csv
import json
import os
from typing import Optional

from .common import classification_example, lm_example, resolve_files, spec_get, subset_indices
from .errors import DatasetConfigError, DataError

EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
              ".arrow": "arrow"}
FORMATS = ("csv", "tsv", "jsonl", "parquet", "arrow")
PROBLEM_TYPES = ("classification", "regression")
CLS_METRICS = ["accuracy", "f1", "mcc", "loss"]
REG_METRICS = ["pearson", "spearman", "mse", "loss"]
LM_METRICS = ["loss", "perplexity", "token_accuracy"]
PATH_HINT = "relative paths are read under dataset.data_root (or $RANKFLOW_DATA), else the working folder"


def columns_of(spec: dict) -> dict:
    cols = spec_get(spec, "columns", {}) or {}
    if not isinstance(cols, dict):
        raise DatasetConfigError("dataset.columns must map roles (text, label, prompt, target) to column names",
                                 "write e.g. text: [premise, hypothesis] and label: label in the dataset entry")
    unknown = [k for k in cols if k not in ("text", "label", "prompt", "target")]
    if unknown:
        raise DatasetConfigError(f"dataset.columns.{unknown[0]}: unknown role", "roles: text, label, prompt, target")
    text = cols.get("text")
    if isinstance(text, str):
        text = [text]
    if text is not None and (not isinstance(text, list) or not 1 <= len(text) <= 2
                             or not all(isinstance(t, str) and t for t in text)):
        raise DatasetConfigError("dataset.text: expected one column name or a list of two",
                                 "write text: sentence, or text: [premise, hypothesis]")
    return {"text": text, "label": cols.get("label"), "prompt": cols.get("prompt"), "target": cols.get("target")}


def kind_of(spec: dict) -> tuple[str, str, list, str]:
    """(model task, kind, metric names, default metric) of a custom dataset, from its columns."""
    cols = columns_of(spec)
    problem = str(spec_get(spec, "problem_type", "classification"))
    if problem not in PROBLEM_TYPES:
        raise DatasetConfigError(f"dataset.problem_type '{problem}' is not one of {', '.join(PROBLEM_TYPES)}",
                                 "use classification (labels are classes) or regression (labels are numbers)")
    if cols["prompt"] or cols["target"]:
        if not (cols["prompt"] and cols["target"]):
            raise DatasetConfigError("dataset.prompt and dataset.target go together (a causal-LM dataset)",
                                     "name both columns, or use text alone for language modelling")
        return "causal-lm", "lm", list(LM_METRICS), "perplexity"
    if not cols["text"]:
        raise DatasetConfigError(f"dataset '{spec_get(spec, 'name')}': no text column given",
                                 "name the text column(s): text: sentence (and label: label for classification)")
    if not cols["label"]:
        return "causal-lm", "lm", list(LM_METRICS), "perplexity"
    if problem == "regression":
        return "seq-cls", "regression", list(REG_METRICS), "pearson"
    return "seq-cls", "classification", list(CLS_METRICS), "accuracy"


def _format(spec: dict, path: str) -> str:
    fmt = str(spec_get(spec, "format", "auto")).lower()
    if fmt in ("auto", ""):
        ext = os.path.splitext(path)[1].lower()
        if ext not in EXTENSIONS:
            raise DatasetConfigError(f"dataset.files: cannot tell the format of '{path}' from its extension",
                                     f"set dataset.format to one of: {', '.join(FORMATS)}")
        return EXTENSIONS[ext]
    if fmt not in FORMATS:
        raise DatasetConfigError(f"dataset.format '{fmt}' is not a format of your own data files",
                                 f"use one of: auto, {', '.join(FORMATS)}")
    return fmt


def read_file(spec: dict, split: str, path: str) -> tuple[list[dict], list[str], str]:
    """(rows, column names, how to name row i in a message: '{path}:{line}') of one data file."""
    if not os.path.isfile(path):
        raise DataError(f"dataset.files.{split}: '{path}' does not exist", f"fix the path ({PATH_HINT})")
    fmt = _format(spec, path)
    if fmt in ("csv", "tsv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",")
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = []
            for row in reader:
                if None in row:
                    raise DataError(f"{path}:{reader.line_num}: more fields than the header's {len(header)}",
                                    f"fix the line (a {fmt.upper()} file needs one header line naming the columns)")
                if any(v is not None and v.strip() for v in row.values()):
                    row["__line__"] = reader.line_num
                    rows.append(row)
        return rows, header, "line"
    if fmt == "jsonl":
        rows, header = [], []
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})",
                                    "write one JSON object per line") from None
                if not isinstance(rec, dict):
                    raise DataError(f"{path}:{lineno}: a line must be a JSON object", "write one object per line")
                for k in rec:
                    if k not in header:
                        header.append(k)
                rec["__line__"] = lineno
                rows.append(rec)
        return rows, header, "line"
    from . import hf_data
    splits, _ = hf_data.open_dataset(files={split: path})
    ds = splits[split]
    header = hf_data.columns(ds)
    rows = hf_data.rows(ds, header)
    for i, r in enumerate(rows):
        r["__line__"] = i
    return rows, header, "row"


def _where(path: str, unit: str, row: dict) -> str:
    return f"{path}:{row['__line__']}" if unit == "line" else f"{path} row {row['__line__']}"


def _require(path: str, header: list[str], column: str, role: str) -> None:
    if column not in header:
        raise DataError(f"{path}: no column '{column}' (dataset.{role}; the file has: {', '.join(header) or 'none'})",
                        f"set dataset.{role} to one of the file's columns")


def _text(path: str, unit: str, row: dict, column: str, role: str) -> str:
    v = row.get(column)
    if v is None or (isinstance(v, float) and v != v) or (role == "label" and isinstance(v, str) and not v.strip()):
        raise DataError(f"{_where(path, unit, row)}: column '{column}' (dataset.{role}) is empty",
                        "fill in the value or remove the row")
    return v if isinstance(v, str) else str(v)


def _label_key(v) -> object:
    """Labels compare as numbers when they are numbers (a CSV's "1" and a JSONL's 1 are one class)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return int(v) if float(v).is_integer() else float(v)
    s = str(v).strip()
    try:
        f = float(s)
        return int(f) if f.is_integer() else f
    except ValueError:
        return s


def label_set(spec: dict, train_rows: list[dict], path: str, unit: str, column: str) -> list:
    """The classes in id order: ``dataset.labels`` or the sorted distinct training labels."""
    given = spec_get(spec, "labels")
    if given:
        if not isinstance(given, list):
            raise DatasetConfigError("dataset.labels must be a list of label values", "write labels: [neg, pos]")
        return [_label_key(v) for v in given]
    values = {_label_key(_text(path, unit, r, column, "label")) for r in train_rows}
    nums = sorted(v for v in values if not isinstance(v, str))
    strs = sorted(str(v) for v in values if isinstance(v, str))
    labels = nums + strs if not (nums and strs) else sorted(map(str, values))
    if len(labels) < 2:
        raise DataError(f"{path}: column '{column}' (dataset.label) has only one distinct value ({labels[0]!r})",
                        "a classification dataset needs at least two classes in its training split")
    return labels


def _split_files(spec: dict, eval_split: str) -> tuple[str, str, str]:
    files = resolve_files(spec) or {}
    if "train" not in files:
        raise DatasetConfigError(f"dataset '{spec_get(spec, 'name')}': dataset.files has no 'train' file",
                                 "write files: {train: train.csv, validation: dev.csv}")
    split = eval_split
    if split not in files:
        others = [k for k in files if k != "train"]
        if split == "validation" and len(others) == 1:
            split = others[0]
        else:
            raise DatasetConfigError(f"dataset.eval_split '{eval_split}': dataset.files has no such file",
                                     f"add files.{eval_split}, or set eval_split to one of: "
                                     f"{', '.join(others) or '(none: add a validation file)'}")
    for k in (files["train"], files[split]):
        if not isinstance(k, str):
            raise DatasetConfigError("dataset.files: give one file per split", "write files: {train: train.csv}")
    return files["train"], files[split], split


def num_labels(spec: dict) -> Optional[int]:
    """Classes (1 for regression, None for a causal LM) without encoding anything; reads the training labels
    unless ``dataset.labels`` gives them."""
    task, kind, _, _ = kind_of(spec)
    if kind == "lm":
        return None
    if kind == "regression":
        return 1
    if spec_get(spec, "labels"):
        return len(label_set(spec, [], "", "line", ""))
    train_path, _, _ = _split_files(spec, str(spec_get(spec, "eval_split", "validation")))
    rows, header, unit = read_file(spec, "train", train_path)
    column = columns_of(spec)["label"]
    _require(train_path, header, column, "label")
    return len(label_set(spec, rows, train_path, unit, column))


def load(spec: dict, tok, max_length: int, subset_seed: int):
    """(train examples, eval examples, num_labels, kind, evaluated split, label names)."""
    task, kind, _, _ = kind_of(spec)
    cols = columns_of(spec)
    train_path, eval_path, split = _split_files(spec, str(spec_get(spec, "eval_split", "validation")))
    loaded = []
    for name, path in (("train", train_path), (split, eval_path)):
        rows, header, unit = read_file(spec, name, path)
        if not rows:
            raise DataError(f"{path}: no rows", f"put the {name} examples in it ({PATH_HINT})")
        roles = [("text", c) for c in (cols["text"] or [])] + [(r, cols[r]) for r in ("label", "prompt", "target")
                                                                 if cols[r]]
        for role, c in roles:
            _require(path, header, c, role)
        loaded.append((path, rows, unit))
    (tp, train_rows, tu), (ep, eval_rows, eu) = loaded
    train_rows = [train_rows[i] for i in subset_indices(len(train_rows), spec_get(spec, "train_size"), subset_seed)]
    eval_rows = [eval_rows[i] for i in subset_indices(len(eval_rows), spec_get(spec, "eval_size"), subset_seed + 1)]
    if kind == "lm":
        enc = lambda p, u, rows, ev: [_lm(tok, p, u, r, cols, max_length, ev) for r in rows]  # noqa: E731
        return enc(tp, tu, train_rows, False), enc(ep, eu, eval_rows, True), 0, kind, split, None
    labels = label_set(spec, train_rows, tp, tu, cols["label"]) if kind == "classification" else None
    index = {v: i for i, v in enumerate(labels)} if labels else None

    def encode(path, unit, rows):
        out = []
        for r in rows:
            a = _text(path, unit, r, cols["text"][0], "text")
            b = _text(path, unit, r, cols["text"][1], "text") if len(cols["text"]) > 1 else None
            y = _label(path, unit, r, cols["label"], index, labels)
            if hasattr(tok, "encode_pair"):
                ids, types = tok.encode_pair(a, b, max_length)
            else:
                ids, types = tok.encode_for_classification(a, b, max_length), None
            out.append(classification_example(ids, y, index is None, types))
        return out

    return encode(tp, tu, train_rows), encode(ep, eu, eval_rows), len(labels) if labels else 1, kind, split, labels


def _label(path: str, unit: str, row: dict, column: str, index: Optional[dict], labels: Optional[list]):
    raw = _text(path, unit, row, column, "label")
    if index is None:
        try:
            return float(raw)
        except ValueError:
            raise DataError(f"{_where(path, unit, row)}: column '{column}' holds '{raw}', not a number "
                            "(dataset.problem_type: regression)",
                            "fix the value, or set problem_type: classification") from None
    key = _label_key(raw)
    if key not in index:
        raise DataError(f"{_where(path, unit, row)}: label '{raw}' in column '{column}' is not one of the training "
                        f"labels ({', '.join(map(str, labels))})",
                        "add it to dataset.labels, or fix or remove the row")
    return index[key]


def _lm(tok, path: str, unit: str, row: dict, cols: dict, max_length: int, for_eval: bool) -> dict:
    bos = [tok.bos_id] if tok.bos_id is not None else []
    eos = [tok.eos_id] if tok.eos_id is not None else []
    if cols["prompt"]:
        prompt = bos + tok.encode(_text(path, unit, row, cols["prompt"], "prompt"))
        target = tok.encode(_text(path, unit, row, cols["target"], "target")) + eos
    else:
        prompt, target = bos, tok.encode(_text(path, unit, row, cols["text"][0], "text")) + eos
    return lm_example(prompt, target, max_length)
