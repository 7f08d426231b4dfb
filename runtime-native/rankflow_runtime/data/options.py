"""The ``dataset.options`` each dataset family accepts, declared like method options (``..options``: one
mechanism): what ``describe`` exposes and what is validated before anything is loaded (an unknown or mistyped
option is a one-line config error naming the field). A null value means the option's default."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from ..options import option, options_schema, parse_options
from .errors import DatasetConfigError

_TOKENIZER_HELP = ("tokenizer for built-in models: auto (an HF tokenizer when the model has local tokenizer files, "
                   "else 'words' for classification and 'bytes'/'ascii' for causal LMs), words (hashed words), bytes "
                   "(UTF-8 bytes), ascii (printable ASCII), hf")


def _tokenizer() -> Any:
    return option("auto", _TOKENIZER_HELP, choices=["auto", "words", "bytes", "ascii", "hf"])


def _pad() -> Any:
    return option(False, "pad every batch to max_length (static shapes) instead of the longest example")


@dataclass
class _Text:
    """Options of every text family."""
    tokenizer: str = _tokenizer()
    pad_to_max_length: bool = _pad()


_SUBSET_SEED_HELP = ("seed of the random train_size / eval_size subsets (independent of the run seed, so all seeds "
                     "of a sweep see the same examples)")
_MAX_NEW_HELP = "greedy decoding budget per answer (gsm8k 256, gsm8k-like 32)"
_GENERATION_HELP = ("decoder for generative evaluation: greedy (the runtime's own, any model) or hf (the "
                    "transformers model's generate() with a KV cache: faster, same greedy tokens)")
_KEEP_CALC_HELP = "keep GSM8k's <<a*b=c>> calculator annotations in training targets"


@dataclass
class SyntheticOptions:
    data_seed: Optional[int] = option(None, "seed of the generated data (default: the run seed)", min=0)
    num_classes: Optional[int] = option(None, "classes of seq-cls (default 2, 2..64) or img-cls (default 4, 2..16)",
                                        min=2, max=64)
    seq_len: Optional[int] = option(None, "causal-lm sequence length (default min(max_length - 2, 24))", min=5)
    alphabet: Optional[int] = option(None, "causal-lm alphabet size (default min(64, vocab_size - 7))", min=8)
    tokenizer: str = _tokenizer()
    pad_to_max_length: bool = _pad()
    max_new_tokens: Optional[int] = option(None, _MAX_NEW_HELP, min=1)
    keep_calculator: bool = option(False, _KEEP_CALC_HELP)
    generation: str = option("greedy", _GENERATION_HELP, choices=["greedy", "hf"])
    contents: Optional[List[Any]] = option(None, "content-style: content ids 0..7 of the training prompts "
                                                 "(default 0..5)")
    styles: Optional[List[Any]] = option(None, "content-style: style ids 0..7 or null (plain: no style named) of the "
                                               "training prompts, combined with every content (default [null])")
    eval_contents: Optional[List[Any]] = option(None, "content-style: content ids of the evaluated prompts (default: "
                                                      "contents)")
    eval_styles: Optional[List[Any]] = option(None, "content-style: style ids of the evaluated prompts (default: "
                                                    "styles)")
    eval_samples: Optional[int] = option(None, "content-style: generated samples per evaluated prompt (default 8)",
                                         min=1)
    domains: Optional[int] = option(None, "img-cls: input domains (default 1: none); example i has domain i mod D, "
                                          "each domain mixes the channels and adds a background field of its own "
                                          "(feature shift for federated domain partitions)", min=1, max=64)


@dataclass
class GlueOptions(_Text):
    subset_seed: int = option(0, _SUBSET_SEED_HELP, min=0)


@dataclass
class VtabOptions:
    subset_seed: int = option(0, _SUBSET_SEED_HELP, min=0)
    normalize: str = option("auto", "pixel normalisation: auto (the model's preprocessor_config.json image_mean/"
                                    "image_std, else ImageNet's), imagenet mean/std, half (0.5/0.5) or none",
                            choices=["auto", "imagenet", "half", "none"])


@dataclass
class CustomOptions(_Text):
    subset_seed: int = option(0, _SUBSET_SEED_HELP, min=0)


@dataclass
class Gsm8kOptions(_Text):
    subset_seed: int = option(0, _SUBSET_SEED_HELP, min=0)
    max_new_tokens: Optional[int] = option(None, _MAX_NEW_HELP, min=1)
    keep_calculator: bool = option(False, _KEEP_CALC_HELP)
    generation: str = option("greedy", _GENERATION_HELP, choices=["greedy", "hf"])


@dataclass
class CorpusOptions:  # corpus.py: pretraining text
    train_files: Optional[Union[str, List[str]]] = option(
        None, "corpus/files: glob patterns of .txt / .jsonl / .parquet files (.gz too), relative to the data root")
    eval_files: Optional[Union[str, List[str]]] = option(
        None, "corpus/files: held-out files (default: hold out `held_out` of the documents)")
    text_field: str = option("text", "the JSON field / parquet column holding each document")
    held_out: float = option(0.05, "fraction of the documents held out when no eval_files are given")
    packing: bool = option(False, "join documents with EOS and cut max_length blocks (default: one document per "
                                  "sequence, truncated, as the official SLTrain loader)")
    data_seed: Optional[int] = option(None, "seed of the held-out split / the synthetic corpus (default: the run "
                                            "seed)", min=0)
    tokenizer: str = _tokenizer()
    pad_to_max_length: bool = _pad()


#: Family -> options class.
OPTION_CLASSES: Dict[str, type] = {"synthetic": SyntheticOptions, "glue": GlueOptions, "vtab": VtabOptions,
                                   "custom": CustomOptions, "gsm8k": Gsm8kOptions, "corpus": CorpusOptions}
#: Family -> the option schema `describe` publishes.
OPTIONS: Dict[str, Dict[str, Dict[str, Any]]] = {fam: options_schema(c) for fam, c in OPTION_CLASSES.items()}


def validate(family: str, options: dict) -> None:
    parse_options(OPTION_CLASSES[family], options, "dataset.options", scope=f" for {family} datasets",
                  null_is_default=True, error=DatasetConfigError)
