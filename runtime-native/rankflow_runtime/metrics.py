"""Evaluation metrics, defined as the benchmarks define them (numpy only; no scipy / sklearn).

GLUE (the official GLUE scorer and Hugging Face's ``glue`` metric):
  * CoLA: Matthews correlation coefficient (``mcc``), accuracy also reported;
  * STS-B: Pearson (``pearson``) and Spearman (``spearman``, Pearson of the average ranks, so ties get the
    mean of the ranks they span) correlation of predicted and gold scores;
  * MRPC, QQP: ``f1`` (F1 of the positive class, label 1 = paraphrase / duplicate) and ``accuracy``;
  * SST-2, MNLI (matched / mismatched), QNLI, RTE, WNLI: ``accuracy``.

Degenerate inputs: where a correlation is undefined (a constant prediction or gold vector, e.g. an untrained
regression head, or MCC with a single predicted class) the value is 0.0, the convention of scikit-learn's
``matthews_corrcoef``; scipy would return NaN for Pearson/Spearman, which a JSON event cannot carry. F1 with no
predicted and no gold positives is 0.0 (scikit-learn's ``zero_division=0``).

VTAB-1k: ``top1`` accuracy per task; ``vtab_group_means`` averages the per-task top-1 within the Natural (7
tasks), Specialized (4) and Structured (8) groups. The headline "VTAB mean" in the PEFT literature (VPT, NOAH,
SSF, FacT, ...) is the mean of the three group means, ``mean_of_groups``; ``mean_of_tasks`` (the plain mean over
all 19 tasks, weighting Structured more) is also returned and named as such.

GSM8k: see ``gsm8k_reference_answer``, ``gsm8k_extract_strict``, ``gsm8k_extract_flexible``.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, Sequence

import numpy as np

from .catalog import VTAB_GROUPS, greater_is_better  # noqa: F401 (the catalogue owns groups and directions)


def _arr(x: Iterable, dtype=None) -> np.ndarray:
    a = np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=dtype)
    return a.reshape(-1)


def _check_same_length(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"predictions ({a.shape[0]}) and references ({b.shape[0]}) differ in length")
    if a.shape[0] == 0:
        raise ValueError("cannot compute a metric over zero examples")


# ---------------------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------------------
def accuracy(preds: Sequence, labels: Sequence) -> float:
    p, y = _arr(preds), _arr(labels)
    _check_same_length(p, y)
    return float(np.mean(p == y))


def f1_binary(preds: Sequence, labels: Sequence, positive: int = 1) -> float:
    """F1 of the positive class: 2 TP / (2 TP + FP + FN); 0.0 when there are no positives at all."""
    p, y = _arr(preds), _arr(labels)
    _check_same_length(p, y)
    tp = float(np.sum((p == positive) & (y == positive)))
    fp = float(np.sum((p == positive) & (y != positive)))
    fn = float(np.sum((p != positive) & (y == positive)))
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2 * tp / denom


def matthews_corrcoef(preds: Sequence, labels: Sequence) -> float:
    """Matthews correlation (the multi-class R_K statistic; equals (TP TN - FP FN) / sqrt(...) for two
    classes). 0.0 when the denominator vanishes (a single predicted or gold class)."""
    p, y = _arr(preds), _arr(labels)
    _check_same_length(p, y)
    classes = np.unique(np.concatenate([p, y]))
    index = {c: i for i, c in enumerate(classes.tolist())}
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.float64)  # rows: gold, columns: predicted
    for yi, pi in zip(y.tolist(), p.tolist()):
        cm[index[yi], index[pi]] += 1
    t = cm.sum(axis=1)  # gold counts
    pr = cm.sum(axis=0)  # predicted counts
    c = np.trace(cm)
    s = cm.sum()
    cov_ytyp = c * s - float(np.dot(t, pr))
    cov_ypyp = s * s - float(np.dot(pr, pr))
    cov_ytyt = s * s - float(np.dot(t, t))
    denom = cov_ytyt * cov_ypyp
    if denom == 0:
        return 0.0
    return float(cov_ytyp / math.sqrt(denom))


# ---------------------------------------------------------------------------------------------------------
# regression (STS-B)
# ---------------------------------------------------------------------------------------------------------
def pearson(x: Sequence, y: Sequence) -> float:
    a, b = _arr(x, np.float64), _arr(y, np.float64)
    _check_same_length(a, b)
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    if denom == 0:
        return 0.0
    r = float(np.dot(a, b)) / denom
    return max(-1.0, min(1.0, r))


def rankdata_average(x: Sequence) -> np.ndarray:
    """Ranks 1..n; tied values share the average of the ranks they occupy (scipy's ``method='average'``)."""
    a = _arr(x, np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(a.shape[0], dtype=np.float64)
    i = 0
    n = a.shape[0]
    while i < n:
        j = i
        while j + 1 < n and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i: j + 1]] = (i + j) / 2.0 + 1.0  # mean of ranks i+1 .. j+1
        i = j + 1
    return ranks


def spearman(x: Sequence, y: Sequence) -> float:
    a, b = _arr(x, np.float64), _arr(y, np.float64)
    _check_same_length(a, b)
    return pearson(rankdata_average(a), rankdata_average(b))


# ---------------------------------------------------------------------------------------------------------
# per-dataset metric sets
# ---------------------------------------------------------------------------------------------------------
#: Metrics where lower is better; every other metric is greater-is-better.


def classification_metrics(preds: Sequence, labels: Sequence, names: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        if name in ("accuracy", "top1"):
            out[name] = accuracy(preds, labels)
        elif name == "f1":
            out[name] = f1_binary(preds, labels)
        elif name == "mcc":
            out[name] = matthews_corrcoef(preds, labels)
    return out


def regression_metrics(preds: Sequence, labels: Sequence, names: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        if name == "pearson":
            out[name] = pearson(preds, labels)
        elif name == "spearman":
            out[name] = spearman(preds, labels)
        elif name == "mse":
            a, b = _arr(preds, np.float64), _arr(labels, np.float64)
            _check_same_length(a, b)
            out[name] = float(np.mean((a - b) ** 2))
    return out


# ---------------------------------------------------------------------------------------------------------
# VTAB-1k
# ---------------------------------------------------------------------------------------------------------


def vtab_group_means(top1: Mapping[str, float], require_all: bool = False) -> dict[str, float]:
    """Group means of per-task top-1 accuracies.

    Returns ``natural`` / ``specialized`` / ``structured`` (mean over the group's tasks present in ``top1``),
    ``mean_of_groups`` (the mean of the group means: the VTAB-1k headline number of the PEFT papers) and
    ``mean_of_tasks`` (the plain mean over all tasks present). A group with no task present is omitted (and
    ``mean_of_groups`` then averages only the groups present), unless ``require_all`` is set, in which case any
    missing task is an error.
    """
    known = {t for ts in VTAB_GROUPS.values() for t in ts}
    unknown = sorted(set(top1) - known)
    if unknown:
        raise ValueError(f"unknown VTAB-1k task(s): {', '.join(unknown)}")
    if require_all:
        missing = sorted(known - set(top1))
        if missing:
            raise ValueError(f"missing VTAB-1k task(s): {', '.join(missing)}")
    out: dict[str, float] = {}
    for group, tasks in VTAB_GROUPS.items():
        values = [float(top1[t]) for t in tasks if t in top1]
        if values:
            out[group] = float(np.mean(values))
    groups = [out[g] for g in VTAB_GROUPS if g in out]
    if groups:
        out["mean_of_groups"] = float(np.mean(groups))
        out["mean_of_tasks"] = float(np.mean([float(v) for v in top1.values()]))
    return out


# ---------------------------------------------------------------------------------------------------------
# GSM8k
# ---------------------------------------------------------------------------------------------------------
# The rules of EleutherAI's lm-evaluation-harness ``gsm8k`` task (v3): a reference is the text after the
# official ``#### `` marker; a model output is filtered either "strict" (the first ``#### N``: only counts
# answers written in the dataset's own format) or "flexible" (the last number-like string anywhere in the
# output); both sides are then normalised by removing commas, dollar signs, everything up to ``#### `` and a
# trailing period, and compared as strings, case-insensitively. An output with no match is ``[invalid]``.
INVALID = "[invalid]"
_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_IGNORE_RES = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))


def gsm8k_normalize(text: str) -> str:
    """lm-eval's ``regexes_to_ignore`` (``,``, ``$``, ``.*#### ``, trailing ``.``), stripped, lower-cased."""
    s = text
    for rx in _IGNORE_RES:
        s = rx.sub("", s)
    return s.strip().lower()


def gsm8k_reference_answer(answer: str) -> str:
    """The gold answer of a GSM8k record: the number after the final ``#### `` marker, normalised."""
    if "####" not in answer:
        raise ValueError("a GSM8k answer must end with '#### <number>'")
    return gsm8k_normalize(answer.split("####")[-1])


def gsm8k_extract_strict(output: str) -> str:
    """lm-eval "strict-match": the first ``#### N`` in the output (``[invalid]`` when absent)."""
    m = _STRICT_RE.search(output)
    return gsm8k_normalize(m.group(1)) if m else INVALID


def gsm8k_extract_flexible(output: str) -> str:
    """lm-eval "flexible-extract": the last number-like match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)``, normalised
    (commas and ``$`` removed, a trailing period dropped); ``[invalid]`` when the output has no digits."""
    matches = _FLEXIBLE_RE.findall(output)
    if not matches:
        return INVALID
    last = matches[-1]
    value = last[0] if last[0] else last[1]
    return gsm8k_normalize(value)


def gsm8k_exact_match(outputs: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``exact_match`` (flexible extraction, the last number: the headline) and ``exact_match_strict``.
    ``references`` are full GSM8k answers (``... #### N``) or bare numbers."""
    if len(outputs) != len(references):
        raise ValueError("outputs and references differ in length")
    if not outputs:
        raise ValueError("cannot compute a metric over zero examples")
    golds = [gsm8k_reference_answer(r) if "####" in r else gsm8k_normalize(r) for r in references]
    flex = [gsm8k_extract_flexible(o) == g for o, g in zip(outputs, golds)]
    strict = [gsm8k_extract_strict(o) == g for o, g in zip(outputs, golds)]
    return {"exact_match": float(np.mean(flex)), "exact_match_strict": float(np.mean(strict))}
