"""Files for the first-day end-to-end test (tests/first-day.e2e.test.ts), written the way a researcher has them:

    python tests/first_day_fixtures.py data --out DIR     # DIR/{models,tsv,parquet,own,vtab,gsm8k}; prints paths
    python tests/first_day_fixtures.py check-export --adapter DIR --spec SPEC.json
        # loads the exported adapter with PEFT onto the base model and recomputes the run's metric on its
        # evaluation split; prints {"metric": name, "value": v}
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_fixtures  # noqa: E402

POS = ["a charming , funny film", "the best movie of the year", "funny and charming", "a charming film"]
NEG = ["dull and lifeless", "a waste of time", "lifeless and dull film", "a dull waste"]


def _sst2_rows():
    return [(t, 1) for t in POS] + [(t, 0) for t in NEG]


def write_data(out: str) -> dict:
    import datasets
    models = os.path.join(out, "models")
    paths = {"models": {"roberta": hf_fixtures.save_roberta(os.path.join(models, "roberta")),
                        "vit": hf_fixtures.save_vit(os.path.join(models, "vit")),
                        "llama": hf_fixtures.save_llama(os.path.join(models, "llama"))}}
    rows = _sst2_rows()
    # GLUE SST-2, the official TSV (header, CRLF endings, a BOM)
    d = os.path.join(out, "tsv", "glue", "SST-2")
    os.makedirs(d, exist_ok=True)
    for name, rs in (("train.tsv", rows * 3), ("dev.tsv", rows)):
        with open(os.path.join(d, name), "w", encoding="utf-8-sig", newline="") as f:
            f.write("sentence\tlabel\r\n" + "".join(f"{t} \t{y}\r\n" for t, y in rs))
    # GLUE SST-2 as the hub's Parquet files (nyu-mll/glue layout: glue/sst2/<split>-00000-of-00001.parquet)
    feats = datasets.Features({"sentence": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["negative", "positive"]), "idx": datasets.Value("int32")})
    d = os.path.join(out, "parquet", "glue", "sst2")
    os.makedirs(d, exist_ok=True)
    for split, rs in (("train", rows * 3), ("validation", rows)):
        datasets.Dataset.from_dict({"sentence": [t for t, _ in rs], "label": [y for _, y in rs],
                                    "idx": list(range(len(rs)))}, features=feats).to_parquet(
            os.path.join(d, f"{split}-00000-of-00001.parquet"))
    # your own CSV: premise/hypothesis pairs with text labels
    d = os.path.join(out, "own", "nli")
    os.makedirs(d, exist_ok=True)
    pairs = [("A man eats", "Someone eats", "yes"), ("A dog runs", "A cat sleeps", "no"),
             ("Birds fly , high", "Animals move", "yes"), ("It rains", "It is dry", "no")]
    for name, rs in (("train.csv", pairs * 3), ("dev.csv", pairs)):
        with open(os.path.join(d, name), "w", encoding="utf-8", newline="") as f:
            f.write("premise,hypothesis,label\n" + "".join(f'"{a}","{b}",{y}\n' for a, b, y in rs))
    # VTAB-1k dtd in the VPT/NOAH folder layout (PNG and JPEG images)
    from PIL import Image
    d = os.path.join(out, "vtab", "vtab-1k", "dtd")
    os.makedirs(os.path.join(d, "images"), exist_ok=True)
    lines = []
    for i in range(8):
        ext = "png" if i % 2 else "jpg"
        color = (255, 255, 255) if i % 2 else (0, 0, 0)
        Image.new("RGB", (40, 40), color).save(os.path.join(d, "images", f"{i:04d}.{ext}"))
        lines.append(f"images/{i:04d}.{ext} {i % 2}")
    for name in ("train800val200.txt", "test.txt", "train800.txt", "val200.txt"):
        with open(os.path.join(d, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    # GSM8k JSONL (openai/grade-school-math)
    d = os.path.join(out, "gsm8k", "gsm8k")
    os.makedirs(d, exist_ok=True)
    recs = [{"question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
             "answer": f"Tom has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}"}
            for a, b in ((3, 4), (2, 5), (1, 1), (6, 2))]
    for name in ("train.jsonl", "test.jsonl"):
        with open(os.path.join(d, name), "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in recs))
    paths.update({k: os.path.join(out, k) for k in ("tsv", "parquet", "own", "vtab", "gsm8k")})
    return paths


def check_export(adapter: str, spec_path: str) -> dict:
    """The exported adapter on the original base model, through PEFT, on the run's evaluation split."""
    import torch
    import transformers as tf
    from peft import PeftModel

    from rankflow_runtime.build import data_model_info, resolve_info
    from rankflow_runtime.data import evaluate, load_task_data
    from rankflow_runtime.spec import load_spec
    spec = load_spec(spec_path)
    info = resolve_info(spec)
    td = load_task_data(dict(spec.dataset), data_model_info(info), spec.seed)
    cfg = tf.AutoConfig.from_pretrained(spec.model["name"], local_files_only=True)
    cfg.num_labels = td.num_labels
    torch.manual_seed(0)
    base = tf.AutoModelForSequenceClassification.from_pretrained(spec.model["name"], config=cfg,
                                                                 local_files_only=True)
    model = PeftModel.from_pretrained(base, adapter).eval()
    metrics = evaluate(model, td, 16, "cpu")
    return {"metric": td.primary_metric, "value": metrics[td.primary_metric], "metrics": metrics}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("--out", required=True)
    c = sub.add_parser("check-export")
    c.add_argument("--adapter", required=True)
    c.add_argument("--spec", required=True)
    a = p.parse_args()
    np.random.seed(0)
    out = write_data(a.out) if a.cmd == "data" else check_export(a.adapter, a.spec)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
