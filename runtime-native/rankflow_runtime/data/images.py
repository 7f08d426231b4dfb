"""Image files and decoded images as float32 ``[H, W, C]`` arrays in [0, 1]: what VTAB-1k's folder layout
(`vtab.py`) and the image columns of Hugging Face datasets (`hf_data.HFImage`) both decode with."""
from __future__ import annotations

import numpy as np

from .errors import DataError


def pixels_of(im) -> np.ndarray:
    """A PIL image as a float32 ``[H, W, C]`` array in [0, 1] (grey stays one channel; others become RGB)."""
    return as_float_image(np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im), "an image")


def decode_image(path: str) -> np.ndarray:
    """An image file as a float32 ``[H, W, C]`` array in [0, 1]."""
    if path.lower().endswith(".npy"):
        return as_float_image(np.load(path), path)
    try:
        from PIL import Image  # type: ignore
    except ImportError:
        raise DataError(f"reading '{path}' needs Pillow, which is not installed",
                        "pip install pillow in the runtime venv, or convert the images to .npy") from None
    try:
        with Image.open(path) as im:
            return pixels_of(im)
    except OSError as exc:
        raise DataError(f"cannot decode image '{path}': {exc}", "re-create the VTAB-1k images") from None


def as_float_image(arr: np.ndarray, path: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise DataError(f"image '{path}' has shape {arr.shape}, expected H x W (x C)", "store images as H x W x C")
    if arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):  # a C x H x W array
        arr = np.transpose(arr, (1, 2, 0))
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / 255.0
    return np.ascontiguousarray(arr[:, :, :3], dtype=np.float32)
