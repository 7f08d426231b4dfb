"""The data interface the training loop codes against: ``ModelInfo`` in, ``TaskData`` out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer


IGNORE_INDEX = -100


@dataclass
class ModelInfo:
    """What the data side needs to know about the model.

    ``task`` is ``seq-cls`` | ``img-cls`` | ``causal-lm``. ``vocab_size`` / ``max_length`` bound the token ids
    and the sequence length (the dataset's ``max_length`` is capped by it); ``image_size`` / ``channels`` shape
    ``pixel_values`` (``image_mean`` / ``image_std``: the model's own normalisation, when it has one). The default
    special ids are those of the built-in tokenizers (``data.tokenizer.SPECIALS``):
    built-in models should use them. ``tokenizer`` is an optional local folder with Hugging Face tokenizer
    files (used when ``transformers`` is importable; never downloaded).
    """

    task: str
    vocab_size: int = 0
    max_length: int = 512
    image_size: int = 32
    channels: int = 3
    pad_id: Optional[int] = PAD_ID
    bos_id: Optional[int] = BOS_ID
    eos_id: Optional[int] = EOS_ID
    tokenizer: Optional[str] = None
    image_mean: Optional[list] = None  # the model's own image normalisation (preprocessor_config.json)
    image_std: Optional[list] = None
    trust_remote_code: bool = False  # the recipe allows the model folder's own (tokenizer) code

    @classmethod
    def of(cls, obj) -> ModelInfo:
        """Accept this class or any object with the same attributes, including the models package's
        ``ModelInfo`` (``pad_token_id`` / ``bos_token_id`` / ``eos_token_id`` / ``tokenizer_path``)."""
        if isinstance(obj, cls):
            return obj

        def pick(*names, default=None):
            for n in names:
                v = obj.get(n) if isinstance(obj, dict) else getattr(obj, n, None)
                if v is not None:
                    return v
            return default

        return cls(task=pick("task"), vocab_size=int(pick("vocab_size", default=0)),
                   max_length=int(pick("max_length", default=512)), image_size=int(pick("image_size", default=32)),
                   channels=int(pick("channels", default=3)),
                   pad_id=pick("pad_id", "pad_token_id", default=PAD_ID),
                   bos_id=pick("bos_id", "bos_token_id", default=BOS_ID),
                   eos_id=pick("eos_id", "eos_token_id", default=EOS_ID),
                   tokenizer=pick("tokenizer", "tokenizer_path"), image_mean=pick("image_mean"),
                   image_std=pick("image_std"), trust_remote_code=bool(pick("trust_remote_code", default=False)))


class ExampleDataset(torch.utils.data.Dataset):
    """An indexable list of examples; each example is a dict of tensors (1-D token tensors are unpadded).

    ``loader`` (optional) turns a stored record into the example lazily (used for images on disk).
    """

    def __init__(self, examples: Sequence[Any], loader: Optional[Callable[[Any], dict]] = None) -> None:
        self.examples = list(examples)
        self.loader = loader

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        item = self.examples[index]
        return self.loader(item) if self.loader is not None else item


class Collator:
    """Stack examples into a batch. Token tensors are right-padded to the longest in the batch (or to
    ``pad_to`` when set, for static shapes): ``input_ids`` with ``pad_id``, ``attention_mask`` with 0, token
    ``labels`` with -100. Everything else is stacked. Picklable, so DataLoader workers can use it."""

    TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, pad_id: int = PAD_ID, pad_to: Optional[int] = None) -> None:
        self.pad_id = int(pad_id)
        self.pad_to = pad_to

    def __call__(self, examples: Sequence[dict]) -> dict:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        batch: dict[str, torch.Tensor] = {}
        keys = examples[0].keys()
        token_labels = "labels" in keys and "input_ids" in keys and examples[0]["labels"].dim() == 1
        length = None
        if "input_ids" in keys:
            length = max(int(e["input_ids"].shape[0]) for e in examples)
            if self.pad_to is not None:
                length = max(length, int(self.pad_to))
        for key in keys:
            values = [e[key] for e in examples]
            if key in self.TOKEN_KEYS or (key == "labels" and token_labels):
                fill = {"input_ids": self.pad_id, "labels": IGNORE_INDEX}.get(key, 0)
                out = torch.full((len(values), length), fill, dtype=values[0].dtype)
                for row, v in enumerate(values):
                    out[row, : v.shape[0]] = v
                batch[key] = out
            else:
                batch[key] = torch.stack(values)
        return batch


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """The training loss the datasets are built for (the Hugging Face conventions):

    * ``[B, L, V]`` logits (causal LM): next-token cross-entropy, ``logits[:, :-1]`` predicting
      ``labels[:, 1:]``, positions labelled -100 ignored, mean over target tokens;
    * ``num_labels == 1`` (regression): mean squared error of ``logits[:, 0]`` against float labels;
    * otherwise cross-entropy over classes.
    """
    logits = logits.float()
    if logits.dim() == 3:
        shift_logits = logits[:, :-1, :].reshape(-1, logits.shape[-1])
        shift_labels = labels[:, 1:].reshape(-1)
        return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX)
    if num_labels == 1:
        return F.mse_loss(logits.reshape(-1), labels.float().reshape(-1))
    return F.cross_entropy(logits, labels.long())


@dataclass
class TaskData:
    """Everything the loop needs about one dataset.

    ``train`` / ``eval``: ``ExampleDataset`` s; ``collate``: a ``Collator``; ``num_labels``: classes (1 means
    regression, 0 for causal LMs); ``primary_metric``: the metric for best-checkpoint selection (from
    ``dataset.metric``); ``metric_names``: every key ``evaluate`` returns; ``greater_is_better``: direction of the
    primary metric. ``generation`` holds the greedy-decoding settings of generative tasks (GSM8k), else None.
    """

    name: str
    task: str
    train: ExampleDataset
    eval: ExampleDataset
    collate: Collator
    num_labels: int
    primary_metric: str
    metric_names: list[str]
    greater_is_better: bool
    eval_split: str
    tokenizer: Optional[Tokenizer] = None
    kind: str = "classification"  # classification | regression | lm | generation
    generation: Optional[dict] = None
    info: dict = field(default_factory=dict)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return compute_loss(logits, labels, self.num_labels)
