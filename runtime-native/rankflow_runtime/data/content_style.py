"""`synthetic/content-style`: tiny images whose content (a shape) and style (a colour texture) are independent
factors, for conditional generation (Break-for-Make's content/style customisation at toy scale), and the two
frozen classifiers that score generated samples.

An image is 3×16×16 in [-1, 1]: a black background and one centred shape (content c ∈ 0..7) filled with a
canvas-anchored texture (style s ∈ 0..7, or the null style: plain white). Training renders shift the shape by up
to one pixel, scale the brightness by U(0.93, 1.07) and add N(0, 0.02²) noise; the reference of a prompt (c, s) is
the clean, centred render. A prompt is the condition pair `labels = (c, s)`; s = 8 is the null style ("no style
named"), which renders plain white.

Classifiers (frozen, no parameters learnt: nearest templates; exact on clean renders, tested):
* content: binarise the foreground (max channel above the background by half the range), then the shape whose
  mask has the largest IoU under shifts of up to 2 pixels;
* style: over the foreground pixels, the style whose texture is nearest in mean squared error.

Dataset options: `contents` and `styles` (lists of ids; a style `null` or 8 is the null style): the training
prompts are their product (cycled, in a seeded random order); `eval_contents` / `eval_styles` (default: the
same) give the evaluated prompts; `eval_samples` (8) samples per evaluated prompt, each from its own noise.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import DatasetConfigError

SIZE = 16
NUM_CONTENTS = 8
NUM_STYLES = 8
NULL_STYLE = NUM_STYLES  # the condition id of "no style named": plain white
CONTENT_NAMES = ("square", "disc", "triangle", "plus", "ring", "diamond", "x-cross", "bars")
STYLE_NAMES = ("red", "green-hstripes", "blue-vstripes", "yellow-checker", "magenta-dots", "cyan-diagonal",
               "orange-purple-checker", "white-grey-hstripes", "plain")
METRICS = ["joint", "content", "style", "mse"]


def _grid() -> Tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    return x - (SIZE - 1) / 2, y - (SIZE - 1) / 2


def shape_mask(c: int, dx: int = 0, dy: int = 0) -> np.ndarray:
    """Boolean SIZE×SIZE mask of content c, shifted by (dx, dy) pixels."""
    x, y = _grid()
    x, y = x - dx, y - dy
    r = np.sqrt(x * x + y * y)
    ax, ay = np.abs(x), np.abs(y)
    masks = {
        0: (ax <= 4.5) & (ay <= 4.5),
        1: r <= 5.2,
        2: (y >= -5) & (y <= 5) & (ax <= (y + 5.5) / 2),
        3: ((ax <= 1.5) & (ay <= 5.5)) | ((ay <= 1.5) & (ax <= 5.5)),
        4: (r >= 3.0) & (r <= 5.5),
        5: ax + ay <= 6.0,
        6: (np.abs(ax - ay) <= 1.5) & (np.maximum(ax, ay) <= 5.5),
        7: (ax <= 5.5) & (ay >= 1.5) & (ay <= 4.5),
    }
    return masks[int(c)]


def texture(s: int) -> np.ndarray:
    """SIZE×SIZE×3 colours in [0, 1] of style s (NULL_STYLE: plain white), anchored to the canvas."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    two = lambda a, b, sel: np.where(sel[..., None], np.array(a), np.array(b))  # noqa: E731
    styles = {
        0: two((0.92, 0.15, 0.12), (0.92, 0.15, 0.12), np.ones_like(x, dtype=bool)),
        1: two((0.15, 0.85, 0.2), (0.65, 1.0, 0.55), (y // 2) % 2 == 0),
        2: two((0.2, 0.3, 0.95), (0.65, 0.75, 1.0), (x // 2) % 2 == 0),
        3: two((0.95, 0.9, 0.1), (0.55, 0.45, 0.05), ((x // 2) + (y // 2)) % 2 == 0),
        4: two((0.95, 0.2, 0.9), (0.5, 0.1, 0.45), ((x % 3) == 1) & ((y % 3) == 1)),
        5: two((0.1, 0.9, 0.9), (0.05, 0.45, 0.5), ((x + y) // 2) % 2 == 0),
        6: two((1.0, 0.55, 0.1), (0.6, 0.2, 0.9), ((x // 4) + (y // 4)) % 2 == 0),
        7: two((0.9, 0.9, 0.9), (0.5, 0.5, 0.5), (y // 3) % 2 == 0),
        NULL_STYLE: two((0.95, 0.95, 0.95), (0.95, 0.95, 0.95), np.ones_like(x, dtype=bool)),
    }
    return styles[int(s)].astype(np.float64)


def render(c: int, s: int, dx: int = 0, dy: int = 0, gain: float = 1.0) -> np.ndarray:
    """3×SIZE×SIZE float32 image in [-1, 1]."""
    m = shape_mask(c, dx, dy)[..., None]
    img = np.where(m, np.clip(texture(s) * gain, 0.0, 1.0), 0.0)
    return (img.transpose(2, 0, 1) * 2.0 - 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# The frozen classifiers
# ---------------------------------------------------------------------------------------------------------

_SHIFTS = [(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)]
_MASKS = torch.tensor(np.stack([np.stack([shape_mask(c, dx, dy) for dx, dy in _SHIFTS])
                                for c in range(NUM_CONTENTS)]), dtype=torch.float32)  # (C, shifts, H, W)
_TEXTURES = torch.tensor(np.stack([texture(s).transpose(2, 0, 1) * 2.0 - 1.0 for s in range(NUM_STYLES + 1)]),
                         dtype=torch.float32)  # (S+1, 3, H, W), index NULL_STYLE = plain


def foreground(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) foreground indicator: the brightest channel above -0.5 (a quarter of the way up from black)."""
    return (images.float().amax(dim=1) > -0.5).float()


def classify_content(images: torch.Tensor) -> torch.Tensor:
    fg = foreground(images)  # (N, H, W)
    inter = torch.einsum("nhw,cshw->ncs", fg, _MASKS)
    union = fg.sum(dim=(1, 2))[:, None, None] + _MASKS.sum(dim=(2, 3))[None] - inter
    iou = inter / union.clamp(min=1.0)
    return iou.amax(dim=2).argmax(dim=1)


def classify_style(images: torch.Tensor) -> torch.Tensor:
    """Style ids 0..NUM_STYLES (NUM_STYLES = plain)."""
    x = images.float()
    fg = foreground(x)  # (N, H, W)
    d = ((x[:, None] - _TEXTURES[None]) ** 2).sum(dim=2)  # (N, S+1, H, W)
    err = (d * fg[:, None]).sum(dim=(2, 3)) / fg.sum(dim=(1, 2)).clamp(min=1.0)[:, None]
    return err.argmin(dim=1)


def scores(images: torch.Tensor, contents: torch.Tensor, styles: torch.Tensor) -> dict:
    """Fractions of samples whose content / style / both are classified as asked, and the MSE to the clean
    reference render of each prompt."""
    c_ok = classify_content(images) == contents
    s_ok = classify_style(images) == styles
    refs = torch.stack([torch.from_numpy(render(int(c), int(s))) for c, s in zip(contents, styles)])
    return {"content": float(c_ok.float().mean()), "style": float(s_ok.float().mean()),
            "joint": float((c_ok & s_ok).float().mean()), "mse": float(((images.float() - refs) ** 2).mean())}


# ---------------------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------------------


def _ids(opts: dict, key: str, default: Sequence[Optional[int]], limit: int, null_ok: bool) -> List[int]:
    raw = opts.get(key, default)
    if not isinstance(raw, (list, tuple)) or not raw:
        raise DatasetConfigError(f"dataset.options.{key}: expected a non-empty list of ids, got {raw!r}",
                                 f"e.g. {key}: [0, 1, 2]")
    out = []
    for v in raw:
        if v is None and null_ok:
            out.append(NULL_STYLE)
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= (limit if null_ok else limit - 1):
            rng = f"0..{limit - 1}" + (f" or null / {limit} (no style)" if null_ok else "")
            raise DatasetConfigError(f"dataset.options.{key}: {v!r} is not an id in {rng}", f"use ids in {rng}")
        out.append(int(v))
    return out


def prompts_of(opts: dict) -> Tuple[List[Tuple[int, int]], List[Tuple[int, int]]]:
    contents = _ids(opts, "contents", list(range(6)), NUM_CONTENTS, False)
    styles = _ids(opts, "styles", [None], NUM_STYLES, True)
    eval_c = _ids(opts, "eval_contents", contents, NUM_CONTENTS, False)
    eval_s = _ids(opts, "eval_styles", styles, NUM_STYLES, True)
    return [(c, s) for c in contents for s in styles], [(c, s) for c in eval_c for s in eval_s]


def _example(img: np.ndarray, c: int, s: int) -> dict:
    return {"pixel_values": torch.from_numpy(img), "labels": torch.tensor([c, s], dtype=torch.long)}


def generate(opts: dict, n_train: int, seed: int) -> Tuple[list, list]:
    """(train examples, eval prompts): train examples are jittered renders of the training prompts; the eval
    split holds one example per (prompt, sample), its pixel_values the clean reference."""
    train_prompts, eval_prompts = prompts_of(opts)
    samples = int(opts.get("eval_samples", 8))
    if samples < 1:
        raise DatasetConfigError("dataset.options.eval_samples: must be at least 1", "use e.g. 8")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC0DE]))
    order = rng.permutation(max(n_train, 1)) % len(train_prompts)
    train = []
    for i in range(n_train):
        c, s = train_prompts[int(order[i])]
        dx, dy = (int(v) for v in rng.integers(-1, 2, size=2))
        img = render(c, s, dx, dy, gain=float(rng.uniform(0.93, 1.07)))
        img = np.clip(img + rng.normal(0.0, 0.02, size=img.shape).astype(np.float32), -1.0, 1.0)
        train.append(_example(img, c, s))
    evals = [_example(render(c, s), c, s) for c, s in eval_prompts for _ in range(samples)]
    return train, evals
