"""The ``dataset.options`` each dataset family accepts: what ``describe`` exposes and what is validated before
anything is loaded (an unknown or mistyped option is a one-line config error naming the field)."""
from __future__ import annotations

from typing import Any

from ..errors import did_you_mean
from .errors import DatasetConfigError


def _opt(type_: str, default: Any, help_: str, **extra) -> dict:
    return {"type": type_, "default": default, "help": help_, **extra}


TOKENIZER = _opt("enum", "auto", "tokenizer for built-in models: auto (an HF tokenizer when the model has local "
                 "tokenizer files, else 'words' for classification and 'bytes'/'ascii' for causal LMs), words "
                 "(hashed words), bytes (UTF-8 bytes), ascii (printable ASCII), hf", choices=["auto", "words", "bytes",
                                                                                              "ascii", "hf"])
PAD = _opt("boolean", False, "pad every batch to max_length (static shapes) instead of the longest example")
SUBSET_SEED = _opt("integer", 0, "seed of the random train_size / eval_size subsets (independent of the run "
                   "seed, so all seeds of a sweep see the same examples)", min=0)
MAX_NEW = _opt("integer", None, "greedy decoding budget per answer (gsm8k 256, gsm8k-like 32)", min=1)
GENERATION = _opt("enum", "greedy", "decoder for generative evaluation: greedy (the runtime's own, any model) or hf "
                  "(the transformers model's generate() with a KV cache: faster, same greedy tokens)",
                  choices=["greedy", "hf"])
KEEP_CALC = _opt("boolean", False, "keep GSM8k's <<a*b=c>> calculator annotations in training targets")

OPTIONS: dict[str, dict[str, dict]] = {
    "synthetic": {
        "data_seed": _opt("integer", None, "seed of the generated data (default: the run seed)", min=0),
        "num_classes": _opt("integer", None, "classes of seq-cls (default 2, 2..64) or img-cls (default 4, 2..16)",
                            min=2, max=64),
        "seq_len": _opt("integer", None, "causal-lm sequence length (default min(max_length - 2, 24))", min=5),
        "alphabet": _opt("integer", None, "causal-lm alphabet size (default min(64, vocab_size - 7))", min=8),
        "tokenizer": TOKENIZER, "pad_to_max_length": PAD, "max_new_tokens": MAX_NEW, "keep_calculator": KEEP_CALC,
        "generation": GENERATION,
        "contents": _opt("list", None, "content-style: content ids 0..7 of the training prompts (default 0..5)"),
        "styles": _opt("list", None, "content-style: style ids 0..7 or null (plain: no style named) of the training "
                       "prompts, combined with every content (default [null])"),
        "eval_contents": _opt("list", None, "content-style: content ids of the evaluated prompts (default: contents)"),
        "eval_styles": _opt("list", None, "content-style: style ids of the evaluated prompts (default: styles)"),
        "eval_samples": _opt("integer", None, "content-style: generated samples per evaluated prompt (default 8)",
                             min=1),
        "domains": _opt("integer", None, "img-cls: input domains (default 1: none); example i has domain i mod D, "
                        "each domain mixes the channels and adds a background field of its own (feature shift for "
                        "federated domain partitions)", min=1, max=64),
    },
    "glue": {"tokenizer": TOKENIZER, "pad_to_max_length": PAD, "subset_seed": SUBSET_SEED},
    "vtab": {"subset_seed": SUBSET_SEED,
             "normalize": _opt("enum", "auto", "pixel normalisation: auto (the model's preprocessor_config.json "
                               "image_mean/image_std, else ImageNet's), imagenet mean/std, half (0.5/0.5) or none",
                               choices=["auto", "imagenet", "half", "none"])},
    "custom": {"tokenizer": TOKENIZER, "pad_to_max_length": PAD, "subset_seed": SUBSET_SEED},
    "gsm8k": {"tokenizer": TOKENIZER, "pad_to_max_length": PAD, "subset_seed": SUBSET_SEED,
              "max_new_tokens": MAX_NEW, "keep_calculator": KEEP_CALC, "generation": GENERATION},
    "corpus": {  # corpus.py: pretraining text
        "train_files": _opt("list", None, "corpus/files: glob patterns of .txt / .jsonl / .parquet files (.gz too), "
                            "relative to the data root"),
        "eval_files": _opt("list", None, "corpus/files: held-out files (default: hold out `held_out` of the documents)"),
        "text_field": _opt("string", "text", "the JSON field / parquet column holding each document"),
        "held_out": _opt("number", 0.05, "fraction of the documents held out when no eval_files are given"),
        "packing": _opt("boolean", False, "join documents with EOS and cut max_length blocks (default: one "
                        "document per sequence, truncated, as the official SLTrain loader)"),
        "data_seed": _opt("integer", None, "seed of the held-out split / the synthetic corpus (default: the run "
                          "seed)", min=0),
        "tokenizer": TOKENIZER, "pad_to_max_length": PAD,
    },
}


def validate(family: str, options: dict) -> None:
    table = OPTIONS[family]
    for key, value in options.items():
        if key not in table:
            raise DatasetConfigError(f"dataset.options.{key}: unknown option for {family} datasets"
                                     f"{did_you_mean(key, table)}", f"options: {', '.join(sorted(table))}")
        o = table[key]
        if value is None:
            continue
        t = o["type"]
        ok = {"integer": isinstance(value, int) and not isinstance(value, bool),
              "boolean": isinstance(value, bool),
              "enum": value in o.get("choices", ()),
              "number": isinstance(value, (int, float)) and not isinstance(value, bool),
              "string": isinstance(value, str),
              "list": isinstance(value, (list, str))}.get(t, True)
        if not ok:
            want = f"one of {', '.join(map(str, o['choices']))}" if t == "enum" else f"{'an' if t[0] in 'aeiou' else 'a'} {t}"
            raise DatasetConfigError(f"dataset.options.{key}: expected {want}, got {value!r}", o["help"])
        if t == "integer" and ("min" in o and value < o["min"] or "max" in o and value > o["max"]):
            raise DatasetConfigError(f"dataset.options.{key}: {value} is out of range",
                                     f"use {o.get('min', '')}..{o.get('max', '')}".replace("..}", ""))
