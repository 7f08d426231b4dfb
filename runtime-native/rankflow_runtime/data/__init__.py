"""Datasets, tokenization and evaluation of the native runtime.

The interface the training loop codes against::

    info = ModelInfo(task="seq-cls", vocab_size=1000, max_length=64)
    td = load_task_data(spec["dataset"], info, seed=spec["seed"])
    loader = DataLoader(td.train, batch_size=8, shuffle=True, collate_fn=td.collate)
    loss = td.loss(logits, batch["labels"])        # CE / MSE / shifted LM cross-entropy
    metrics = evaluate(model, td, batch_size=32, device="cpu")   # {name: float} for td.metric_names

Families: ``synthetic/<seq-cls|regression|img-cls|causal-lm|gsm8k-like>``, ``glue/<task>``, ``vtab/<task>``,
``gsm8k``. Errors are ``DataError`` (kind ``data``) or ``DatasetConfigError`` (kind ``config``), each with a
one-line ``message`` and a ``hint``.
"""
from .errors import DataError, DatasetConfigError
from .evaluate import evaluate, greedy_generate, hf_generate, logits_of
from .loader import describe_datasets, load_task_data, num_labels_for
from .tokenizer import (BOS_ID, CLS_ID, EOS_ID, NUM_SPECIAL, PAD_ID, SEP_ID, SPECIALS, UNK_ID, CharTokenizer,
                        HFTokenizer, Tokenizer, WordHashTokenizer, make_tokenizer)
from .types import IGNORE_INDEX, Collator, ExampleDataset, ModelInfo, TaskData, compute_loss

__all__ = [
    "ModelInfo", "TaskData", "ExampleDataset", "Collator", "load_task_data", "evaluate", "greedy_generate", "hf_generate",
    "compute_loss", "describe_datasets", "num_labels_for", "logits_of", "DataError", "DatasetConfigError", "IGNORE_INDEX",
    "Tokenizer", "WordHashTokenizer", "CharTokenizer", "HFTokenizer", "make_tokenizer", "SPECIALS",
    "NUM_SPECIAL", "PAD_ID", "UNK_ID", "CLS_ID", "SEP_ID", "BOS_ID", "EOS_ID",
]
