"""Hugging Face ``datasets`` formats, read offline (``HF_DATASETS_OFFLINE=1``; nothing is downloaded).

A dataset is found in one of three forms:

* a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (it holds ``dataset_dict.json``,
  or ``state.json`` for a single split);
* Parquet or Arrow files in the hub layout: ``<split>-*.parquet`` (``train-00000-of-00001.parquet``), also under
  ``data/`` or in one folder per split (``<split>/*.parquet``); ``.arrow`` files the same way;
* a hub id already in the local Hugging Face cache (``datasets.load_dataset(id, config)`` offline).

``find_splits(folder)`` returns the split name -> files mapping of a hub-layout folder; ``open_dataset`` opens any
of the three forms and returns ``{split: datasets.Dataset}``. Rows come out as dicts (``rows``); image columns
(the ``Image`` feature, or ``{"bytes", "path"}`` structs) are kept undecoded and decoded lazily by ``HFImage``.
"""
from __future__ import annotations

import glob
import io
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from .errors import DataError
from .images import decode_image, pixels_of

EXTS = {"parquet": ".parquet", "arrow": ".arrow"}
INSTALL = "pip install the pinned runtime requirements (runtime-native/requirements.lock), which include datasets"


def _datasets():
    try:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        import datasets  # noqa: F401
        import datasets.config
    except ImportError:
        raise DataError("reading Hugging Face datasets needs the 'datasets' package, which is not installed",
                        INSTALL) from None
    datasets.config.HF_DATASETS_OFFLINE = True  # even when imported before the variable was set: never download
    datasets.config.HF_HUB_OFFLINE = True
    if not os.environ.get("RANKFLOW_LOG_LEVEL", "").upper() == "DEBUG":
        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    return datasets


def is_saved_dataset(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "dataset_dict.json")) or (
        os.path.isfile(os.path.join(folder, "state.json")) and os.path.isfile(os.path.join(folder, "dataset_info.json")))


def _split_of(path: str, folder: str) -> Optional[str]:
    """The split a hub-layout file belongs to: ``<split>-NNNNN-of-NNNNN.ext``, ``<split>.ext`` or ``<split>/x.ext``."""
    rel = os.path.relpath(path, folder).replace(os.sep, "/")
    parts = rel.split("/")
    if parts[0] == "data":
        parts = parts[1:]
    if len(parts) == 2:
        return parts[0]
    if len(parts) != 1:
        return None
    stem = parts[0].rsplit(".", 1)[0]
    head, sep, _ = stem.partition("-")
    return head if sep or head else None


def find_splits(folder: str) -> dict[str, list[str]]:
    """``{split: [files]}`` of the Parquet (else Arrow) files of a hub-layout folder; {} when there are none."""
    if not os.path.isdir(folder):
        return {}
    for ext in EXTS.values():
        files = sorted(glob.glob(os.path.join(folder, "*" + ext)) + glob.glob(os.path.join(folder, "data", "*" + ext))
                       + glob.glob(os.path.join(folder, "*", "*" + ext)))
        out: dict[str, list[str]] = {}
        for f in files:
            if "/cache-" in f.replace(os.sep, "/") or os.path.basename(f).startswith("cache-"):
                continue  # datasets' own processing caches
            split = _split_of(f, folder)
            if split and split != "data":
                out.setdefault(split, []).append(f)
        if out:
            return out
    return {}


def has_hf_layout(folder: str) -> bool:
    return is_saved_dataset(folder) or bool(find_splits(folder))


def open_dataset(folder: Optional[str] = None, hub_ids: Sequence[str] = (), config: Optional[str] = None,
                 files: Optional[dict] = None) -> tuple[dict, str]:
    """``({split: Dataset}, where)`` from a save_to_disk folder, a hub-layout folder, explicit ``files``
    (``{split: path or [paths]}``, Parquet / Arrow) or the first of ``hub_ids`` in the local HF cache."""
    ds = _datasets()
    if files:
        ext = {os.path.splitext(p)[1] for v in files.values() for p in ([v] if isinstance(v, str) else v)}
        kind = "arrow" if ext == {".arrow"} else "parquet"
        return _load_files(ds, kind, {k: [v] if isinstance(v, str) else list(v) for k, v in files.items()}), \
            ", ".join(sorted({str(v) for v in files.values()}))
    if folder and is_saved_dataset(folder):
        try:
            loaded = ds.load_from_disk(folder)
        except Exception as exc:
            raise DataError(f"cannot read the saved dataset '{folder}': {str(exc).splitlines()[0][:200]}",
                            "re-create it with Dataset.save_to_disk / DatasetDict.save_to_disk") from None
        if isinstance(loaded, ds.Dataset):
            return {"train": loaded}, folder
        return dict(loaded), folder
    if folder:
        splits = find_splits(folder)
        if splits:
            kind = "parquet" if splits[next(iter(splits))][0].endswith(".parquet") else "arrow"
            return _load_files(ds, kind, splits), folder
    for hub_id in hub_ids:
        got = _from_cache(ds, hub_id, config)
        if got is not None:
            return got, f"{hub_id} ({config}) in the local Hugging Face cache" if config else hub_id
    return {}, ""


def _load_files(ds, kind: str, splits: dict[str, list[str]]) -> dict:
    for split, paths in splits.items():
        for p in paths:
            if not os.path.isfile(p):
                raise DataError(f"{kind} file '{p}' of split '{split}' is missing",
                                "point dataset.files at existing files")
    try:
        if kind == "arrow":
            return {s: ds.concatenate_datasets([ds.Dataset.from_file(p) for p in paths]) if len(paths) > 1
                    else ds.Dataset.from_file(paths[0]) for s, paths in splits.items()}
        return {s: ds.Dataset.from_parquet(paths if len(paths) > 1 else paths[0], keep_in_memory=False)
                for s, paths in splits.items()}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read the {kind} files of {', '.join(sorted(splits))}: "
                        f"{str(exc).splitlines()[0][:200]}", f"check that they are valid {kind} files") from None


def _from_cache(ds, hub_id: str, config: Optional[str]) -> Optional[dict]:
    try:
        loaded = ds.load_dataset(hub_id, config) if config else ds.load_dataset(hub_id)
    except Exception:
        return None
    return dict(loaded)


def columns(dataset) -> list[str]:
    return list(dataset.column_names)


def require_columns(dataset, needed: Iterable[str], where: str, fix: str) -> None:
    have = columns(dataset)
    missing = [c for c in needed if c not in have]
    if missing:
        raise DataError(f"{where}: no column {', '.join(repr(m) for m in missing)} (columns: {', '.join(have)})",
                        fix)


def rows(dataset, cols: Sequence[str]) -> list[dict]:
    """The given columns of every row, as plain Python values (image columns stay undecoded)."""
    data = dataset.select_columns(list(cols))
    for c in cols:
        feat = data.features.get(c)
        if type(feat).__name__ == "Image" and getattr(feat, "decode", True):
            data = data.cast_column(c, type(feat)(decode=False))
    table = data.to_dict()
    n = len(data)
    return [{c: table[c][i] for c in cols} for i in range(n)]


class HFImage:
    """An image stored in a dataset row (``{"bytes", "path"}``), decoded on demand; picklable."""

    def __init__(self, value) -> None:
        if isinstance(value, dict):
            self.data, self.path = value.get("bytes"), value.get("path")
        elif isinstance(value, (bytes, bytearray)):
            self.data, self.path = bytes(value), None
        elif isinstance(value, str):
            self.data, self.path = None, value
        else:
            raise DataError(f"an image column holds a {type(value).__name__}, not an image",
                            "store images as the datasets Image feature (or bytes / file paths)")

    def array(self) -> np.ndarray:
        if self.data is None:
            return decode_image(self.path)
        try:
            from PIL import Image  # type: ignore
            with Image.open(io.BytesIO(self.data)) as im:
                return pixels_of(im)
        except OSError as exc:
            raise DataError(f"cannot decode an image of the dataset ({self.path or 'bytes'}): {exc}",
                            "re-create the dataset's image column") from None
