"""VTAB-1k (Zhai et al., 2019) in the folder layout the PEFT literature shares (VPT, NOAH, SSF, FacT, ...):

    <root>/vtab-1k/<task>/train800val200.txt   the 1000 training images of the final protocol
    <root>/vtab-1k/<task>/train800.txt          / val200.txt: the split used to tune hyperparameters
    <root>/vtab-1k/<task>/test.txt              the test images
    <root>/vtab-1k/<task>/images/...            image files (PNG / JPEG, or .npy arrays)

Each list line is ``<path relative to the task folder> <integer label>``. ``eval_split`` ``test`` trains on
``train800val200.txt`` and evaluates on ``test.txt`` (the reported protocol); ``validation`` (or ``val200``)
trains on ``train800.txt`` and evaluates on ``val200.txt``.

Images are read lazily (PIL for PNG/JPEG, a clear error when Pillow is missing; ``.npy`` with numpy), converted
to RGB (or the model's channel count), resized to the model's ``image_size`` with antialiased bicubic
interpolation (the papers resize to 224x224 with PIL's bicubic filter, no crop) and normalised
(``options.normalize``): ``auto`` (default) uses the model's own image processor settings (the ``image_mean`` /
``image_std`` of its ``preprocessor_config.json``, local folder or HF cache; identity when it has
``do_normalize: false``), else the ImageNet mean/std; ``imagenet``, ``half`` (mean = std = 0.5) and ``none``
override it. No augmentation, as in the VTAB-1k protocol of these papers.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from . import hf_data
from .common import data_root, dataset_format, optional_root, options_of, resolve_files, spec_get, subset_indices
from .errors import DatasetConfigError, DataError
from .images import decode_image
from .. import metrics as M

NUM_CLASSES = {
    "cifar": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37, "svhn": 10,
    "sun397": 397, "patch_camelyon": 2, "eurosat": 10, "resisc45": 45, "diabetic_retinopathy": 5,
    "clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4, "dsprites_loc": 16, "dsprites_ori": 16,
    "smallnorb_azi": 18, "smallnorb_ele": 9,
}
GROUPS = M.VTAB_GROUPS
GROUP_OF = {t: g for g, ts in GROUPS.items() for t in ts}
ALIASES = {"cifar100": "cifar", "cifar_100": "cifar", "flowers102": "oxford_flowers102", "pets": "oxford_iiit_pet",
           "camelyon": "patch_camelyon", "retinopathy": "diabetic_retinopathy"}
TASKS_META = {t: ("img-cls", ["top1", "accuracy", "loss"], "top1") for t in NUM_CLASSES}
SPLITS = {"test": ("train800val200.txt", "test.txt"), "validation": ("train800.txt", "val200.txt"),
          "val200": ("train800.txt", "val200.txt")}
NORMALIZE = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "half": ((0.5,) * 3, (0.5,) * 3),
             "none": None}
NORMALIZE_CHOICES = ["auto", *NORMALIZE]


def normalization(option: str, model_info) -> tuple:
    """The (mean, std) pair that ``options.normalize`` means for this model, or None for no normalisation."""
    if option == "auto":
        mean, std = getattr(model_info, "image_mean", None), getattr(model_info, "image_std", None)
        if mean is not None and std is not None:
            return tuple(float(x) for x in mean), tuple(float(x) for x in std)
        option = "imagenet"
    if option not in NORMALIZE:
        raise DatasetConfigError(f"unknown dataset.options.normalize '{option}'",
                                 f"use one of: {', '.join(NORMALIZE_CHOICES)}")
    return NORMALIZE[option]
HOW_TO_GET = ("prepare VTAB-1k as in the VPT/NOAH repositories (NOAH's data preparation writes "
              "<task>/train800val200.txt, test.txt and images/) under <data_root>/vtab-1k/")


def task_dir(root: str, task: str) -> str:
    candidates = [os.path.join(root, "vtab-1k", task), os.path.join(root, "vtab", task), os.path.join(root, task)]
    for c in candidates:
        if os.path.isdir(c):
            return c
    raise DataError(f"VTAB-1k task '{task}' not found: none of {', '.join(candidates)} exists", HOW_TO_GET)


def read_list(path: str, folder: str, num_classes: int) -> list[tuple[str, int]]:
    if not os.path.isfile(path):
        raise DataError(f"VTAB-1k list '{path}' is missing", HOW_TO_GET)
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            rel, _, label_s = line.rpartition(" ")
            try:
                label = int(label_s)
            except ValueError:
                label = -1
            if not rel or not 0 <= label < num_classes:
                raise DataError(f"{path}:{lineno}: expected '<image path> <label in 0..{num_classes - 1}>', "
                                f"got {line[:80]!r}", "re-create the list files (" + HOW_TO_GET + ")")
            image = os.path.join(folder, rel.strip())
            if not os.path.isfile(image):
                raise DataError(f"{path}:{lineno}: image '{image}' is missing",
                                "re-create the VTAB-1k images (" + HOW_TO_GET + ")")
            out.append((image, label))
    if not out:
        raise DataError(f"VTAB-1k list '{path}' holds no images", HOW_TO_GET)
    return out


class ImageLoader:
    """Turns a ``(path, label)`` record into ``{"pixel_values": [C, S, S], "labels"}``. Picklable."""

    def __init__(self, image_size: int, channels: int, normalize="imagenet") -> None:
        """``normalize``: a name of ``NORMALIZE`` or an explicit ``(mean, std)`` pair (None: no normalisation)."""
        if isinstance(normalize, str):
            normalize = normalization(normalize, None)
        if normalize is not None and len(normalize[0]) != len(normalize[1]):
            raise DatasetConfigError("the image mean and std have different lengths", "fix the image processor")
        self.image_size, self.channels, self.stats = int(image_size), int(channels), normalize

    def pixels(self, arr: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(arr).permute(2, 0, 1)  # C, H, W
        c = x.shape[0]
        if c != self.channels:
            if self.channels == 1:
                x = x.mean(0, keepdim=True)
            elif c == 1:
                x = x.expand(self.channels, -1, -1)
            elif c > self.channels:
                x = x[: self.channels]
            else:
                raise DataError(f"an image has {c} channels, the model expects {self.channels}",
                                "set the model's channels to match the images")
        if tuple(x.shape[1:]) != (self.image_size, self.image_size):
            x = F.interpolate(x[None].contiguous(), size=(self.image_size, self.image_size), mode="bicubic",
                              align_corners=False, antialias=True)[0].clamp(0.0, 1.0)
        stats = self.stats
        if stats is not None:
            mean, std = torch.tensor(stats[0]), torch.tensor(stats[1])
            if len(mean) != self.channels:  # one shared statistic per channel
                mean, std = mean.mean().repeat(self.channels), std.mean().repeat(self.channels)
            x = (x - mean[:, None, None]) / std[:, None, None]
        return x.contiguous()

    def __call__(self, record: tuple) -> dict:
        image, label = record  # a file path, or an image stored in a dataset row (hf_data.HFImage)
        arr = decode_image(image) if isinstance(image, str) else image.array()
        return {"pixel_values": self.pixels(arr), "labels": torch.tensor(label, dtype=torch.long)}


# Split names of a Hugging Face form of a task, per protocol: (train candidates, eval candidates).
HF_SPLITS = {"test": (("train800val200", "train"), ("test",)),
             "validation": (("train800",), ("val200", "validation")), "val200": (("train800",), ("val200",))}
IMAGE_COLUMNS = ("image", "img", "pixel_values", "image_path")


def _hf_folder(root: str, task: str):
    for c in (os.path.join(root, "vtab-1k", task), os.path.join(root, "vtab", task), os.path.join(root, task)):
        if os.path.isdir(c) and hf_data.has_hf_layout(c):
            return c
    return None


def read_hf_records(task: str, spec: dict, root, split: str) -> tuple[list, list]:
    """(train, eval) ``(HFImage, label)`` records from a save_to_disk / Parquet / Arrow form of the task."""
    files = resolve_files(spec)
    folder = _hf_folder(root, task) if root and not files else None
    splits, where = hf_data.open_dataset(folder, (), None, files)
    if not splits:
        raise DataError(f"VTAB-1k task '{task}' in a Hugging Face form not found under "
                        f"{os.path.join(root or '<data_root>', 'vtab-1k', task)}",
                        "save it there with DatasetDict.save_to_disk (splits train800val200 / test, or train / "
                        "test) or copy Parquet files named <split>-*.parquet, or " + HOW_TO_GET)
    n = NUM_CLASSES[task]
    out = []
    for candidates in HF_SPLITS[split]:
        name = next((c for c in candidates if c in splits), None)
        if name is None:
            raise DataError(f"{where}: no split {' or '.join(repr(c) for c in candidates)} "
                            f"(splits: {', '.join(sorted(splits))})", "name the splits as the VTAB-1k lists are")
        ds = splits[name]
        image_col = next((c for c in IMAGE_COLUMNS if c in hf_data.columns(ds)), None)
        if image_col is None:
            raise DataError(f"{where} [{name}]: no image column (columns: {', '.join(hf_data.columns(ds))})",
                            f"name the image column one of: {', '.join(IMAGE_COLUMNS)}")
        hf_data.require_columns(ds, ["label"], f"{where} [{name}]", "name the class column 'label'")
        records = []
        for i, r in enumerate(hf_data.rows(ds, [image_col, "label"])):
            y = r["label"]
            if not isinstance(y, int) or not 0 <= y < n:
                raise DataError(f"{where} [{name}] row {i}: label {y!r} is not in 0..{n - 1}",
                                f"vtab/{task} has {n} classes")
            records.append((hf_data.HFImage(r[image_col]), y))
        out.append(records)
    return out[0], out[1]


def read_records(task: str, spec: dict, split: str) -> tuple[list, list]:
    fmt = dataset_format(spec, ("official", "hf", "parquet", "arrow"), f"vtab/{task}")
    root = optional_root(spec)
    if fmt != "official" and (resolve_files(spec) or (root and _hf_folder(root, task)) or fmt != "auto"):
        return read_hf_records(task, spec, root, split)
    folder = task_dir(data_root(spec, "vtab-1k"), task)
    train_file, eval_file = SPLITS[split]
    n = NUM_CLASSES[task]
    return read_list(os.path.join(folder, train_file), folder, n), read_list(os.path.join(folder, eval_file), folder, n)


def load(task: str, spec: dict, model_info, seed: int):
    split = str(spec_get(spec, "eval_split", "test"))
    if split not in SPLITS:
        raise DatasetConfigError(f"dataset.eval_split '{split}' does not exist for vtab/{task}",
                                 "use 'test' (train800val200 -> test) or 'validation' (train800 -> val200)")
    n = NUM_CLASSES[task]
    train, evals = read_records(task, spec, split)
    opts = options_of(spec)
    sub_seed = int(opts.get("subset_seed", 0))
    train = [train[i] for i in subset_indices(len(train), spec_get(spec, "train_size"), sub_seed)]
    evals = [evals[i] for i in subset_indices(len(evals), spec_get(spec, "eval_size"), sub_seed + 1)]
    loader = ImageLoader(model_info.image_size, model_info.channels,
                         normalization(str(opts.get("normalize", "auto")), model_info))
    return train, evals, n, split, loader
