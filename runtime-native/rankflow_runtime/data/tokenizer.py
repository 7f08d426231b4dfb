"""Deterministic, dependency-free tokenizers for the built-in models, and a Hugging Face adapter.

Every built-in tokenizer reserves the first ids for special tokens (see ``SPECIALS``) and maps text to the
remaining ``vocab_size - NUM_SPECIAL`` ids:

* ``WordHashTokenizer`` (``words``): lower-cased words and punctuation marks, each hashed with a fixed hash
  (BLAKE2b, not Python's salted ``hash``) into a bucket. Short sequences, any vocabulary size, not invertible.
  The default for sequence classification.
* ``CharTokenizer`` (``bytes`` / ``ascii``): invertible. ``bytes`` maps each UTF-8 byte to one id (needs
  ``vocab_size >= NUM_SPECIAL + 256``); ``ascii`` maps the 95 printable ASCII characters plus newline and tab
  (needs ``vocab_size >= NUM_SPECIAL + 97``), anything else to ``[UNK]``. The default for causal LMs, whose
  generations must be decoded back to text.

``HFTokenizer`` wraps a ``transformers`` tokenizer loaded from local files only (never downloaded).
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Optional, Sequence

from .errors import DatasetConfigError, DataError

#: The reserved ids of the built-in tokenizers (PAD/BOS/EOS = 0/1/2, as the built-in models' configs).
SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")
PAD_ID, BOS_ID, EOS_ID, CLS_ID, SEP_ID, UNK_ID, MASK_ID = range(len(SPECIALS))
NUM_SPECIAL = len(SPECIALS)

_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_ASCII = "".join(chr(c) for c in range(32, 127)) + "\n\t"


class Tokenizer:
    """Common interface: ``encode`` (text -> ids, no specials), ``decode`` and the special ids."""

    name = "base"
    pad_id = PAD_ID
    unk_id = UNK_ID
    cls_id: Optional[int] = CLS_ID
    sep_id: Optional[int] = SEP_ID
    bos_id: Optional[int] = BOS_ID
    eos_id: Optional[int] = EOS_ID
    invertible = False

    def encode(self, text: str) -> list[int]:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    # --- helpers shared by all tokenizers -------------------------------------------------------
    def encode_for_classification(self, text_a: str, text_b: Optional[str], max_length: int) -> list[int]:
        """``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, truncating the longer text first to fit."""
        a = self.encode(text_a)
        b = self.encode(text_b) if text_b is not None else None
        return self.build_classification_input(a, b, max_length)

    def build_classification_input(self, a: list[int], b: Optional[list[int]], max_length: int) -> list[int]:
        head = [self.cls_id] if self.cls_id is not None else []
        sep = [self.sep_id] if self.sep_id is not None else []
        budget = max_length - len(head) - len(sep) * (2 if b is not None else 1)
        if budget < 2:
            raise DatasetConfigError(
                f"dataset.max_length={max_length} is too small to hold any text",
                "use a max_length of at least 8")
        a, b = list(a), (list(b) if b is not None else None)
        if b is None:
            a = a[:budget]
            return head + a + sep
        while len(a) + len(b) > budget:  # "longest_first" truncation, as in BERT / HF tokenizers
            if len(a) >= len(b):
                a.pop()
            else:
                b.pop()
        return head + a + sep + b + sep


class WordHashTokenizer(Tokenizer):
    name = "words"

    def __init__(self, vocab_size: int) -> None:
        if vocab_size <= NUM_SPECIAL + 1:
            raise DatasetConfigError(
                f"vocab_size={vocab_size} leaves no room for words after {NUM_SPECIAL} special tokens",
                "use a model with a vocab_size of at least 64")
        self.vocab_size = vocab_size
        self.buckets = vocab_size - NUM_SPECIAL
        self._cache: dict[str, int] = {}

    def token_id(self, word: str) -> int:
        tid = self._cache.get(word)
        if tid is None:
            digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
            tid = self._cache[word] = NUM_SPECIAL + int.from_bytes(digest, "little") % self.buckets
        return tid

    def encode(self, text: str) -> list[int]:
        return [self.token_id(w) for w in _WORD_RE.findall(text.lower())]

    def decode(self, ids: Sequence[int]) -> str:
        raise DataError("the hashed word tokenizer cannot decode ids back to text",
                        "use dataset.options.tokenizer='bytes' or 'ascii' for tasks that generate text")


class CharTokenizer(Tokenizer):
    invertible = True

    def __init__(self, vocab_size: int, mode: str = "bytes") -> None:
        need = NUM_SPECIAL + (256 if mode == "bytes" else len(_ASCII))
        if vocab_size < need:
            raise DatasetConfigError(
                f"the '{mode}' tokenizer needs vocab_size >= {need}, the model has {vocab_size}",
                "raise the model's vocab_size or set dataset.options.tokenizer to 'ascii' or 'words'")
        self.name = mode
        self.mode = mode
        self.vocab_size = vocab_size
        self._char_to_id = {c: NUM_SPECIAL + i for i, c in enumerate(_ASCII)}

    def encode(self, text: str) -> list[int]:
        if self.mode == "bytes":
            return [NUM_SPECIAL + b for b in text.encode("utf-8")]
        return [self._char_to_id.get(c, UNK_ID) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        if self.mode == "bytes":
            data = bytes(int(i) - NUM_SPECIAL for i in ids if NUM_SPECIAL <= int(i) < NUM_SPECIAL + 256)
            return data.decode("utf-8", errors="replace")
        out = []
        for i in ids:
            i = int(i)
            if NUM_SPECIAL <= i < NUM_SPECIAL + len(_ASCII):
                out.append(_ASCII[i - NUM_SPECIAL])
        return "".join(out)


class HFTokenizer(Tokenizer):
    """A ``transformers`` tokenizer from a local directory (``local_files_only``: never downloads)."""

    name = "hf"
    invertible = True

    def __init__(self, path: str, trust_remote_code: bool = False) -> None:
        try:
            from transformers import AutoTokenizer  # type: ignore
        except Exception as exc:  # pragma: no cover - depends on the environment
            raise DataError(f"tokenizer '{path}' needs the 'transformers' package, which is not installed ({exc})",
                            "install transformers in the runtime venv or use a built-in tokenizer") from None
        if not os.path.isdir(path):
            raise DataError(f"tokenizer folder '{path}' does not exist",
                            "point the model at a local folder with tokenizer files (the runtime never downloads)")
        try:
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
        except Exception as exc:
            raise DataError(f"cannot load a tokenizer from '{path}' without downloading: {str(exc).splitlines()[0]}",
                            "put the tokenizer files (tokenizer.json / vocab files) in that folder") from None
        self.tok = tok
        self.vocab_size = len(tok)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self.unk_id = tok.unk_token_id if tok.unk_token_id is not None else self.pad_id
        self.cls_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        self.sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        self.bos_id = tok.bos_token_id
        self.eos_id = tok.eos_token_id

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    @property
    def uses_token_types(self) -> bool:
        """Whether the model family expects segment ids (BERT-style ``token_type_ids``)."""
        return "token_type_ids" in getattr(self.tok, "model_input_names", ())

    def encode_for_classification(self, text_a: str, text_b: Optional[str], max_length: int) -> list[int]:
        return self.encode_pair(text_a, text_b, max_length)[0]

    def encode_pair(self, text_a: str, text_b: Optional[str], max_length: int):
        """``(input_ids, token_type_ids or None)`` with the tokenizer's own special tokens and truncation."""
        enc = self.tok(text_a, text_b, truncation=True, max_length=max_length, add_special_tokens=True)
        types = enc.get("token_type_ids") if self.uses_token_types else None
        return list(enc["input_ids"]), (list(types) if types is not None else None)


def make_tokenizer(kind: Optional[str], vocab_size: int, task: str, hf_path: Optional[str] = None,
                   specials: Optional[dict] = None, trust_remote_code: bool = False) -> Tokenizer:
    """Pick the tokenizer: an explicit ``kind`` wins; otherwise an HF tokenizer when ``hf_path`` is a local
    folder, else ``words`` for classification and ``bytes``/``ascii`` (by vocabulary size) for causal LMs.
    ``specials`` (``pad_id`` / ``bos_id`` / ``eos_id`` of the model) override a built-in tokenizer's defaults,
    so that e.g. generation stops at the model's own EOS id."""
    tok = _make(kind, vocab_size, task, hf_path, trust_remote_code)
    if not isinstance(tok, HFTokenizer):
        for key, value in (specials or {}).items():
            if value is not None:
                if not 0 <= int(value) < max(vocab_size, 1):
                    raise DatasetConfigError(f"the model's {key}={value} is outside its vocabulary of {vocab_size}",
                                             "fix the model's special token ids")
                setattr(tok, key, int(value))
    return tok


def _make(kind: Optional[str], vocab_size: int, task: str, hf_path: Optional[str], trust: bool = False) -> Tokenizer:
    if kind in (None, "", "auto"):
        if hf_path and os.path.isdir(hf_path):
            return HFTokenizer(hf_path, trust)
        if task == "causal-lm":
            kind = "bytes" if vocab_size >= NUM_SPECIAL + 256 else "ascii"
        else:
            kind = "words"
    if kind == "words":
        return WordHashTokenizer(vocab_size)
    if kind in ("bytes", "ascii"):
        return CharTokenizer(vocab_size, kind)
    if kind == "hf":
        if not hf_path:
            raise DatasetConfigError("dataset.options.tokenizer='hf' but the model names no local tokenizer folder",
                                     "use a local model folder with tokenizer files, or a built-in tokenizer")
        return HFTokenizer(hf_path, trust)
    raise DatasetConfigError(f"unknown dataset.options.tokenizer '{kind}'",
                             "use one of: auto, words, bytes, ascii, hf")
