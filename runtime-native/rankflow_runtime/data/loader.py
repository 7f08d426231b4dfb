"""``load_task_data``: dataset spec + model info -> ``TaskData``; ``describe_datasets`` for ``describe``."""
from __future__ import annotations

from typing import Optional

from .. import catalog
from .. import metrics as M
from . import content_style, custom, gsm8k, synthetic
from .options import OPTIONS, validate as validate_options
from .common import effective_max_length, options_of, require_tokenizer_fits, spec_get
from .errors import DatasetConfigError
from .tokenizer import PAD_ID, make_tokenizer
from .types import Collator, ExampleDataset, ModelInfo, TaskData

# family -> task -> (model task, metric names, default metric)
_CLS = ["accuracy", "f1", "mcc", "loss"]
_LM = ["loss", "perplexity", "token_accuracy"]
_GEN = ["exact_match", "exact_match_strict", "loss", "perplexity", "token_accuracy"]
SYNTHETIC = {
    "seq-cls": ("seq-cls", _CLS, "accuracy"),
    "regression": ("seq-cls", ["pearson", "spearman", "mse", "loss"], "pearson"),
    "img-cls": ("img-cls", ["accuracy", "top1", "loss"], "accuracy"),
    "causal-lm": ("causal-lm", _LM, "perplexity"),
    "gsm8k-like": ("causal-lm", _GEN, "exact_match"),
    "content-style": ("img-gen", content_style.METRICS, "joint"),
}
GSM8K = {"gsm8k": ("causal-lm", _GEN, "exact_match")}
CORPUS = {"files": ("causal-lm", _LM, "perplexity"), "synthetic": ("causal-lm", _LM, "perplexity")}


def _families() -> dict[str, dict]:
    fams = {"synthetic": SYNTHETIC, "gsm8k": GSM8K, "corpus": CORPUS}
    try:
        from . import glue
        fams["glue"] = glue.TASKS_META
    except ImportError:  # pragma: no cover
        pass
    try:
        from . import vtab
        fams["vtab"] = vtab.TASKS_META
    except ImportError:  # pragma: no cover
        pass
    return fams


# dataset.format values per family (``auto``, the default, finds the first form present).
FORMATS = {
    "glue": {"tsv": "the official TSVs (download_glue_data.py): <root>/glue/<Task>/{train,dev}.tsv",
             "hf": "Hugging Face datasets: save_to_disk or hub-layout Parquet/Arrow under <root>/glue/<task>/, "
                   "dataset.files, or nyu-mll/glue in the local HF cache"},
    "vtab": {"official": "the VPT/NOAH lists: <root>/vtab-1k/<task>/{train800val200,test,...}.txt + images",
             "hf": "Hugging Face datasets with image + label columns: save_to_disk or Parquet/Arrow under "
                   "<root>/vtab-1k/<task>/ (splits train800val200/test or train/test), or dataset.files"},
    "gsm8k": {"jsonl": "the official JSONL: <root>/gsm8k/{train,test}.jsonl",
              "hf": "Hugging Face datasets (question, answer): save_to_disk or main/<split>-*.parquet under "
                    "<root>/gsm8k/, dataset.files, or openai/gsm8k in the local HF cache"},
    "custom": {f: f"your own {f.upper()} files in dataset.files (split -> file), columns mapped by dataset.text /"
                  " label (classification, regression) or prompt / target (causal LM)" for f in custom.FORMATS},
}
_FORMAT_ALIASES = {"glue": ("official", "parquet", "arrow"), "vtab": ("parquet", "arrow"),
                   "gsm8k": ("official", "parquet", "arrow")}


def _check_format(fam: str, spec: dict) -> None:
    fmt = str(spec_get(spec, "format", "auto")).lower()
    allowed = set(FORMATS.get(fam, {})) | set(_FORMAT_ALIASES.get(fam, ())) | {"auto"}
    if fam == "synthetic" and fmt != "auto" or fam != "synthetic" and fmt not in allowed:
        raise DatasetConfigError(f"dataset.format '{fmt}' is not a format of {spec_get(spec, 'name')}",
                                 f"use one of: {', '.join(sorted(allowed)) if fam != 'synthetic' else 'auto'}")


def describe_datasets() -> dict:
    """``{family: {tasks, metrics, default_metric, per_task}}`` as the runtime's ``describe`` command prints it.
    ``default_metric`` is a string where all tasks of the family share one, else a ``{task: metric}`` mapping;
    ``per_task`` gives each task's model task, metrics and default metric."""
    out = {}
    for fam, tasks in _families().items():
        metrics = sorted({m for _, ms, _ in tasks.values() for m in ms})
        defaults = {t: d for t, (_, _, d) in tasks.items()}
        uniq = set(defaults.values())
        out[fam] = {"tasks": sorted(tasks), "metrics": metrics,
                    "default_metric": uniq.pop() if len(uniq) == 1 else defaults,
                    "per_task": {t: {"model_task": mt, "metrics": list(ms), "default_metric": d,
                                     **catalog.task_facts(fam, t)}
                                 for t, (mt, ms, d) in sorted(tasks.items())},
                    "options": OPTIONS[fam]}
    if "vtab" in out:
        out["vtab"]["groups"] = {g: list(ts) for g, ts in M.VTAB_GROUPS.items()}
    if "glue" in out:
        from . import glue
        # names that fix the evaluated split: glue/mnli-m, glue/mnli-mm (the dash forms; the others are aliases)
        out["glue"]["named_splits"] = {a: {"task": glue.ALIASES[a], "eval_split": s}
                                       for a, s in glue.MNLI_NAMED_SPLIT.items() if "-" in a}
    for fam, formats in FORMATS.items():
        if fam in out:
            out[fam]["formats"] = formats
    out["custom"] = {
        "tasks": [], "formats": FORMATS["custom"], "options": OPTIONS["custom"],
        "fields": {"files": "split -> file (train required; validation or test evaluated)",
                   "text": "one text column, or two for a pair", "label": "the label column",
                   "prompt": "causal LM: the prompt column", "target": "causal LM: the target column",
                   "labels": "optional: the label set in id order (default: sorted distinct training labels)",
                   "problem_type": "classification (default) or regression"},
        "per_kind": {"classification": {"model_task": "seq-cls", "metrics": custom.CLS_METRICS,
                                        "default_metric": "accuracy", **catalog.task_facts("custom", "classification")},
                     "regression": {"model_task": "seq-cls", "metrics": custom.REG_METRICS,
                                    "default_metric": "pearson", **catalog.task_facts("custom", "regression")},
                     "lm": {"model_task": "causal-lm", "metrics": custom.LM_METRICS, "default_metric": "perplexity",
                            **catalog.task_facts("custom", "lm")}},
    }
    return out


def parse_spec_name(spec: dict) -> tuple[str, str, tuple]:
    """Like ``parse_name``, plus your own data: a name outside the benchmark families with ``dataset.files``."""
    name = str(spec_get(spec, "name", "")).strip()
    fam = name.partition("/")[0].lower()
    if spec_get(spec, "files") and fam not in _families() and name != "gsm8k":
        return "custom", name, custom.kind_of(spec)[0:1] + custom.kind_of(spec)[2:]
    return parse_name(name)


def parse_name(name: str) -> tuple[str, str, tuple]:
    fams = _families()
    name = str(name).strip()
    if name == "gsm8k":
        return "gsm8k", "gsm8k", GSM8K["gsm8k"]
    fam, _, task = name.partition("/")
    fam = fam.lower()
    if fam not in fams or not task:
        raise DatasetConfigError(f"unknown dataset.name '{name}'",
                                 "use glue/<task>, vtab/<task>, gsm8k, corpus/<files|synthetic> or synthetic/<kind> "
                                 "(see `describe`), or your own files with dataset.files and the column mapping")
    tasks = fams[fam]
    key = task.lower()
    if fam == "glue":
        from . import glue
        key = glue.ALIASES.get(key, key)
    if fam == "vtab":
        from . import vtab
        key = vtab.ALIASES.get(key, key)
    if key not in tasks:
        raise DatasetConfigError(f"unknown dataset.name '{name}': {fam} has no task '{task}'",
                                 f"use one of: {', '.join(sorted(tasks))}")
    return fam, key, tasks[key]


def _primary(spec: dict, names: list[str], default: str, dataset: str) -> str:
    metric = spec_get(spec, "metric", "default")
    if metric in ("default", "auto", ""):
        return default
    if metric not in names:
        raise DatasetConfigError(f"dataset.metric '{metric}' is not computed for {dataset}",
                                 f"use one of: {', '.join(names)}")
    return metric


def load_task_data(dataset_spec: dict, model_info: ModelInfo, seed: int) -> TaskData:
    """Load (or generate) a dataset for a model. ``dataset_spec`` is the run spec's ``dataset`` mapping."""
    spec = dict(dataset_spec)
    model_info = ModelInfo.of(model_info)
    name = str(spec_get(spec, "name", ""))
    fam, task, (model_task, names, default) = parse_spec_name(spec)
    if model_info.task != model_task:
        raise DatasetConfigError(f"dataset '{name}' needs a {model_task} model, the model is {model_info.task}",
                                 f"pick a {model_task} model (model.task) for this dataset")
    opts = options_of(spec)
    validate_options(fam, opts)
    _check_format(fam, spec)
    data_seed = int(opts["data_seed"]) if opts.get("data_seed") is not None else int(seed)
    primary = _primary(spec, names, default, name)
    eval_split = str(spec_get(spec, "eval_split", "validation"))
    vocab = int(model_info.vocab_size or 0)
    max_len = effective_max_length(spec, int(model_info.max_length or 0))
    pad_to = max_len if opts.get("pad_to_max_length") else None
    tok = None
    kind = "classification"
    generation = None
    info: dict = {"family": fam, "task": task}

    if model_task not in ("img-cls", "img-gen"):
        tok = make_tokenizer(opts.get("tokenizer"), vocab, model_task, model_info.tokenizer,
                             {"pad_id": model_info.pad_id, "bos_id": model_info.bos_id, "eos_id": model_info.eos_id},
                             trust_remote_code=model_info.trust_remote_code)
        require_tokenizer_fits(tok, vocab, name)
    pad_id = model_info.pad_id if model_info.pad_id is not None else (tok.pad_id if tok else PAD_ID)

    if fam == "synthetic":
        if task in ("seq-cls", "regression"):
            regression = task == "regression"
            train, evals, num_labels = synthetic.seq_cls(spec, vocab, max_len, tok, data_seed, regression)
            kind = "regression" if regression else "classification"
        elif task == "img-cls":
            train, evals, num_labels = synthetic.img_cls(spec, int(model_info.image_size),
                                                         int(model_info.channels), data_seed)
        elif task == "content-style":
            train, evals = content_style.generate(opts, synthetic.sizes(spec)[0], data_seed)
            num_labels, kind = 0, "generation"
            info["sample_seed"] = data_seed
        elif task == "causal-lm":
            train, evals = synthetic.causal_lm(spec, vocab, max_len, tok, data_seed)
            num_labels, kind = 0, "lm"
        else:  # gsm8k-like
            tr, ev = synthetic.gsm8k_like(spec, data_seed)
            train, evals, generation = _gsm8k_encode(tr, ev, tok, max_len, opts, default_new=32)
            generation["max_length"] = int(model_info.max_length) if model_info.max_length else None
            num_labels, kind = 0, "generation"
    elif fam == "gsm8k":
        tr, ev, eval_split = gsm8k.load_records(spec, data_seed)
        train, evals, generation = _gsm8k_encode(tr, ev, tok, max_len, opts, default_new=256)
        generation["max_length"] = int(model_info.max_length) if model_info.max_length else None
        num_labels, kind = 0, "generation"
    elif fam == "corpus":
        from . import corpus
        train, evals = corpus.load(task, spec, tok, max_len, data_seed)
        num_labels, kind = 0, "lm"
    elif fam == "glue":
        from . import glue
        train, evals, num_labels, eval_split = glue.load(task, spec, tok, max_len, data_seed)
        kind = "regression" if num_labels == 1 else "classification"
    elif fam == "custom":
        train, evals, num_labels, kind, eval_split, labels = custom.load(spec, tok, max_len,
                                                                         int(opts.get("subset_seed", 0)))
        info["labels"] = labels
    else:  # vtab
        from . import vtab
        train, evals, num_labels, eval_split, loader = vtab.load(task, spec, model_info, data_seed)
        info["loader"] = "lazy"
        return TaskData(name=name, task=model_task, train=ExampleDataset(train, loader),
                        eval=ExampleDataset(evals, loader), collate=Collator(pad_id, None), num_labels=num_labels,
                        primary_metric=primary, metric_names=list(names),
                        greater_is_better=M.greater_is_better(primary), eval_split=eval_split, tokenizer=None,
                        kind=kind, generation=None, info=info)

    if kind == "classification" and num_labels != 2:  # f1 is the positive-class F1 of binary tasks only
        names = [n for n in names if n != "f1"]
        if primary == "f1":
            raise DatasetConfigError(f"dataset.metric 'f1' needs a binary task, {name} has {num_labels} classes",
                                     "use accuracy or mcc")
    return TaskData(name=name, task=model_task, train=ExampleDataset(train), eval=ExampleDataset(evals),
                    collate=Collator(pad_id, pad_to), num_labels=num_labels, primary_metric=primary,
                    metric_names=list(names), greater_is_better=M.greater_is_better(primary),
                    eval_split=eval_split, tokenizer=tok, kind=kind, generation=generation, info=info)


def _gsm8k_encode(train_recs, eval_recs, tok, max_len: int, opts: dict, default_new: int):
    if not tok.invertible:
        raise DatasetConfigError("GSM8k-style generation needs an invertible tokenizer, not the hashed 'words' one",
                                 "set dataset.options.tokenizer to 'bytes' or 'ascii' (or use an HF tokenizer)")
    keep = bool(opts.get("keep_calculator", False))
    train = gsm8k.encode(train_recs, tok, max_len, keep, for_eval=False)
    evals = gsm8k.encode(eval_recs, tok, max_len, keep, for_eval=True)
    generation = {
        "max_new_tokens": int(opts.get("max_new_tokens", default_new)),
        "stop": list(gsm8k.STOP_STRINGS),
        "references": [r["answer"] for r in eval_recs],
        "max_length": None,
        "backend": str(opts.get("generation", "greedy")),
    }
    return train, evals, generation


def num_labels_for(dataset_spec: dict) -> Optional[int]:
    """The number of labels of a dataset without reading or generating it (for ``count``): classes, 1 for
    regression, None for causal-LM datasets. Raises the same config errors as ``load_task_data`` for unknown
    names or options."""
    spec = dict(dataset_spec)
    fam, task, (model_task, _, _) = parse_spec_name(spec)
    opts = options_of(spec)
    validate_options(fam, opts)
    _check_format(fam, spec)
    if model_task in ("causal-lm", "img-gen"):
        return None
    if fam == "custom":
        return custom.num_labels(spec)
    if fam == "synthetic":
        if task == "regression":
            return 1
        return int(opts.get("num_classes", 2 if task == "seq-cls" else 4))
    if fam == "glue":
        from . import glue
        return glue.NUM_LABELS[task]
    from . import vtab
    return vtab.NUM_CLASSES[task]
