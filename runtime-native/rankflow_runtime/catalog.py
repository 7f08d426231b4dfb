"""The catalogue of metrics and dataset facts, owned here and published through ``describe`` (``metrics``, and
per dataset task ``defaults`` and ``benchmark``); the planner and the tables read it from the committed
snapshot (``schemas/methods.generated.json``, ``npm run gen``) and restate none of it.

* ``METRICS``: each metric's direction (``max``: higher is better, ``min``: lower is better; best-checkpoint
  selection and the tables' bold/underline use it) and whether it is a ratio in [0, 1] that tables print ×100.
* ``DEFAULTS``: per family and task, the spec defaults a recipe may override: ``max_length`` (for image
  datasets the resolution in pixels), ``train_size`` / ``eval_size`` (null: the whole split) and ``eval_split``.
  A task without defaults is not plannable from a recipe (the planner refuses it rather than guess).
* ``benchmark(family, task)``: the benchmark a task belongs to: GLUE, or a VTAB-1k group (Natural, Specialized,
  Structured: ``VTAB_GROUPS``).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

#: The 19 VTAB-1k tasks by group (the standard grouping of Zhai et al. 2019: 7 Natural, 4 Specialized, 8
#: Structured), named as the VTAB reader names them.
VTAB_GROUPS: Dict[str, tuple] = {
    "natural": ("cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"),
    "specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "structured": ("clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori",
                   "smallnorb_azi", "smallnorb_ele"),
}


def _m(direction: str, ratio: bool, help: str) -> Dict[str, Any]:
    return {"direction": direction, "ratio": ratio, "help": help}


METRICS: Dict[str, Dict[str, Any]] = {
    "accuracy": _m("max", True, "fraction of examples classified correctly"),
    "top1": _m("max", True, "top-1 accuracy (VTAB-1k's reported metric)"),
    "f1": _m("max", True, "F1 of the positive class (MRPC, QQP)"),
    "mcc": _m("max", True, "Matthews correlation (CoLA)"),
    "pearson": _m("max", True, "Pearson correlation of predicted and gold scores (STS-B)"),
    "spearman": _m("max", True, "Spearman rank correlation (STS-B)"),
    "mse": _m("min", False, "mean squared error of a regression head"),
    "loss": _m("min", False, "mean evaluation loss"),
    "perplexity": _m("min", False, "exp of the mean token loss"),
    "token_accuracy": _m("max", True, "fraction of target tokens predicted correctly (teacher forcing)"),
    "exact_match": _m("max", True, "GSM8k: the extracted final answer equals the reference (flexible extraction)"),
    "exact_match_strict": _m("max", True, "GSM8k: exact match with the strict '#### answer' format"),
    "joint": _m("max", True, "content-style: both content and style of a generated image recognised"),
    "content": _m("max", True, "content-style: content of a generated image recognised"),
    "style": _m("max", True, "content-style: style of a generated image recognised"),
}


def greater_is_better(metric: str) -> bool:
    """Whether a higher value of ``metric`` is better (unknown metrics: higher)."""
    return METRICS.get(metric, {}).get("direction", "max") == "max"


def _d(max_length: int, train_size: Optional[int], eval_size: Optional[int], eval_split: str) -> Dict[str, Any]:
    return {"max_length": max_length, "train_size": train_size, "eval_size": eval_size, "eval_split": eval_split}


_GLUE = _d(128, None, None, "validation")
_VTAB = _d(224, 1000, None, "test")  # VTAB-1k: train on the 800+200 of train800val200.txt, evaluate on test.txt
DEFAULTS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "glue": {t: (_d(128, None, None, "validation_matched") if t == "mnli" else _GLUE)
             for t in ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")},
    "vtab": {t: _VTAB for g in VTAB_GROUPS.values() for t in g},
    "gsm8k": {"gsm8k": _d(512, None, None, "test")},
    "synthetic": {
        "seq-cls": _d(32, 512, 128, "validation"),
        "regression": _d(32, 512, 128, "validation"),
        "img-cls": _d(32, 512, 128, "validation"),
        "causal-lm": _d(64, 512, 128, "validation"),
        "gsm8k-like": _d(64, 512, 64, "validation"),
        # images, not tokens (max_length unused); the evaluation is eval_samples generations per evaluated prompt
        "content-style": _d(16, 256, None, "validation"),
    },
    # pretraining text (data/corpus.py); sizes are sequences (null: every document); 256 = the official SLTrain length
    "corpus": {"files": _d(256, None, None, "validation"), "synthetic": _d(256, None, None, "validation")},
    # your own data, by kind (the evaluated split is `validation`, or the one other file of dataset.files)
    "custom": {"classification": _d(128, None, None, "validation"), "regression": _d(128, None, None, "validation"),
               "lm": _d(256, None, None, "validation")},
}


def benchmark(family: str, task: str) -> Optional[Dict[str, Any]]:
    """``{"name": "glue", "group": None}``, ``{"name": "vtab", "group": "natural"}``, or None."""
    if family == "glue":
        return {"name": "glue", "group": None}
    if family == "vtab":
        group = next((g for g, ts in VTAB_GROUPS.items() if task in ts), None)
        return {"name": "vtab", "group": group}
    return None


def task_facts(family: str, task: str) -> Dict[str, Any]:
    """What ``describe`` adds to a dataset task: its ``defaults`` (when plannable) and ``benchmark``."""
    out: Dict[str, Any] = {}
    if task in DEFAULTS.get(family, {}):
        out["defaults"] = dict(DEFAULTS[family][task])
    b = benchmark(family, task)
    if b:
        out["benchmark"] = b
    return out
