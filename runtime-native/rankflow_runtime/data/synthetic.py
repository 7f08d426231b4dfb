"""Synthetic generators with a planted, learnable signal: for tests, the quickstart and benchmarks.

All are deterministic functions of the data seed (``dataset.options.data_seed``, else the run seed); train and
eval draw from independent streams of it (``eval_split: test`` has a stream of its own, so a run evaluating
``[validation, test]`` reports two disjoint samples). Sizes: ``dataset.train_size`` / ``eval_size`` (defaults 512 / 128).

* ``seq-cls``: random token sequences; class ``c`` plants its keyword token (id ``NUM_SPECIAL + c``) one to
  three times at random positions. Options: ``num_classes`` (2).
* ``regression``: random sequences with ``k`` in 0..4 copies of one keyword token; label ``1.25 k`` (an STS-B-like
  0..5 score with ties).
* ``img-cls``: Gaussian noise images with a bright square in the grid cell of the class. Options:
  ``num_classes`` (4, at most 16), ``domains`` (1: a feature shift per domain, see ``domain_shifts``).
* ``causal-lm``: arithmetic progressions ``a, a+s, a+2s, ...`` (mod the alphabet) with step ``s`` in 1..3; the
  first three tokens are the prompt, the rest (and EOS) the target. Options: ``seq_len`` (<= 24), ``alphabet`` (64).
* ``gsm8k-like``: one-step arithmetic questions over small integers in GSM8k's format (``Question: ...\\nAnswer:``,
  answer ending in ``#### N``), evaluated by greedy generation and exact match like GSM8k.
"""
from __future__ import annotations

import numpy as np
import torch

from .common import classification_example, lm_example, options_of, spec_get
from .errors import DatasetConfigError
from .tokenizer import NUM_SPECIAL, Tokenizer

KINDS = ("seq-cls", "regression", "img-cls", "causal-lm", "gsm8k-like")
DEFAULT_TRAIN, DEFAULT_EVAL = 512, 128


def sizes(spec: dict) -> tuple[int, int]:
    return int(spec_get(spec, "train_size", DEFAULT_TRAIN)), int(spec_get(spec, "eval_size", DEFAULT_EVAL))


def _rngs(seed: int, spec: dict) -> tuple[np.random.Generator, np.random.Generator]:
    """The training stream and the evaluated split's: ``test`` draws from a third stream, independent of the
    ``validation`` one (any other split name, as before the test split existed, reads the validation stream)."""
    train_ss, val_ss, test_ss = np.random.SeedSequence([int(seed), 0x5EED]).spawn(3)
    eval_ss = test_ss if str(spec_get(spec, "eval_split", "validation")) == "test" else val_ss
    return np.random.default_rng(train_ss), np.random.default_rng(eval_ss)


def _wrap(tok: Tokenizer, body: list[int]) -> list[int]:
    head = [tok.cls_id] if tok.cls_id is not None else []
    tail = [tok.sep_id] if tok.sep_id is not None else []
    return head + body + tail


def seq_cls(spec: dict, vocab_size: int, max_length: int, tok: Tokenizer, seed: int, regression: bool = False):
    opts = options_of(spec)
    num_classes = 1 if regression else int(opts.get("num_classes", 2))
    n_keywords = 1 if regression else num_classes
    if not regression and not 2 <= num_classes <= 64:
        raise DatasetConfigError(f"dataset.options.num_classes={num_classes} is out of range", "use 2..64")
    low = NUM_SPECIAL + n_keywords  # filler tokens never collide with keywords
    if vocab_size <= low + 4:
        raise DatasetConfigError(f"vocab_size={vocab_size} is too small for synthetic/{'regression' if regression else 'seq-cls'}",
                                 "use a model with vocab_size >= 64")
    if max_length < 8:
        raise DatasetConfigError(f"dataset.max_length={max_length} is too small", "use max_length >= 8")
    body_max = max_length - 2
    body_min = max(4, body_max // 2)

    def make(rng: np.random.Generator, n: int) -> list[dict]:
        out = []
        for _ in range(n):
            length = int(rng.integers(body_min, body_max + 1))
            body = rng.integers(low, vocab_size, size=length).tolist()
            if regression:
                k = int(rng.integers(0, 5))
                label = 1.25 * k
                keyword = NUM_SPECIAL
            else:
                k = int(rng.integers(1, 4))
                label = int(rng.integers(0, num_classes))
                keyword = NUM_SPECIAL + label
            for pos in rng.choice(length, size=min(k, length), replace=False).tolist():
                body[pos] = keyword
            out.append(classification_example(_wrap(tok, body), label, regression))
        return out

    r_train, r_eval = _rngs(seed, spec)
    n_train, n_eval = sizes(spec)
    return make(r_train, n_train), make(r_eval, n_eval), num_classes


def img_cls(spec: dict, image_size: int, channels: int, seed: int):
    opts = options_of(spec)
    num_classes = int(opts.get("num_classes", 4))
    if not 2 <= num_classes <= 16:
        raise DatasetConfigError(f"dataset.options.num_classes={num_classes} is out of range for synthetic/img-cls",
                                 "use 2..16")
    if image_size < 8:
        raise DatasetConfigError(f"image_size={image_size} is too small for synthetic/img-cls", "use >= 8")
    cell = image_size // 4
    shifts = domain_shifts(int(opts.get("domains", 1)), channels, image_size, seed)

    def make(rng: np.random.Generator, n: int) -> list[dict]:
        out = []
        for i in range(n):
            label = int(rng.integers(0, num_classes))
            img = rng.normal(0.0, 0.5, size=(channels, image_size, image_size)).astype(np.float32)
            r, c = divmod(label, 4)
            img[:, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] += 2.0
            ex = {"pixel_values": torch.from_numpy(img), "labels": torch.tensor(label, dtype=torch.long)}
            if shifts:
                d = i % len(shifts)
                mix, offset = shifts[d]
                ex["pixel_values"] = torch.from_numpy(np.einsum("ij,jhw->ihw", mix, img) + offset).float()
                ex["domain"] = torch.tensor(d, dtype=torch.long)
            out.append(ex)
        return out

    r_train, r_eval = _rngs(seed, spec)
    n_train, n_eval = sizes(spec)
    return make(r_train, n_train), make(r_eval, n_eval), num_classes


def domain_shifts(domains: int, channels: int, size: int, seed: int) -> list:
    """Feature shift for federated splits: domain d mixes the channels by its own I + 0.8·G_d and adds its own
    smooth background field (a 4×4 random grid upsampled, amplitude 0.8); one domain means no shift at all."""
    if domains < 1 or domains > 64:
        raise DatasetConfigError(f"dataset.options.domains={domains} is out of range", "use 1..64")
    if domains == 1:
        return []
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xD0]))
    out = []
    for _ in range(domains):
        mix = (np.eye(channels) + 0.8 * rng.normal(0.0, 1.0, size=(channels, channels)) / np.sqrt(channels))
        coarse = rng.normal(0.0, 0.8, size=(channels, 4, 4))
        field = np.kron(coarse, np.ones((1, -(-size // 4), -(-size // 4))))[:, :size, :size]
        out.append((mix.astype(np.float32), field.astype(np.float32)))
    return out


def causal_lm(spec: dict, vocab_size: int, max_length: int, tok: Tokenizer, seed: int):
    opts = options_of(spec)
    seq_len = int(opts.get("seq_len", min(max_length - 2, 24)))
    alphabet = int(opts.get("alphabet", min(64, vocab_size - NUM_SPECIAL)))
    if seq_len < 5 or seq_len + 2 > max_length:
        raise DatasetConfigError(f"synthetic/causal-lm seq_len={seq_len} does not fit max_length={max_length}",
                                 "use dataset.max_length >= 8 and options.seq_len <= max_length - 2")
    if alphabet < 8 or NUM_SPECIAL + alphabet > vocab_size:
        raise DatasetConfigError(f"synthetic/causal-lm alphabet={alphabet} does not fit vocab_size={vocab_size}",
                                 "use options.alphabet between 8 and vocab_size - 7")
    bos = [tok.bos_id] if tok.bos_id is not None else []
    eos = [tok.eos_id] if tok.eos_id is not None else []

    def make(rng: np.random.Generator, n: int) -> list[dict]:
        out = []
        for _ in range(n):
            start, step = int(rng.integers(0, alphabet)), int(rng.integers(1, 4))
            seq = [NUM_SPECIAL + (start + i * step) % alphabet for i in range(seq_len)]
            out.append(lm_example(bos + seq[:3], seq[3:] + eos, max_length))
        return out

    r_train, r_eval = _rngs(seed, spec)
    n_train, n_eval = sizes(spec)
    return make(r_train, n_train), make(r_eval, n_eval)


def gsm8k_like_records(rng: np.random.Generator, n: int) -> list[dict]:
    """GSM8k-format records ``{"question", "answer"}``: one-step additions and subtractions of small integers,
    with GSM8k's calculator annotation and ``#### N`` ending, short enough for ``max_length`` 64 with the byte
    tokenizer (about 60 tokens with BOS and EOS)."""
    out = []
    for _ in range(n):
        a, b = int(rng.integers(2, 20)), int(rng.integers(1, 10))
        if rng.random() < 0.5:
            op, c = "+", a + b
        else:
            a, op, c = a + b, "-", a
        out.append({"question": f"What is {a} {op} {b}?",
                    "answer": f"{a} {op} {b} = <<{a}{op}{b}={c}>>{c}.\n#### {c}"})
    return out


def gsm8k_like(spec: dict, seed: int) -> tuple[list[dict], list[dict]]:
    r_train, r_eval = _rngs(seed, spec)
    n_train, n_eval = sizes(spec)
    return gsm8k_like_records(r_train, n_train), gsm8k_like_records(r_eval, n_eval)
