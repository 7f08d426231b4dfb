"""The data formats a researcher already has: Hugging Face `datasets` (save_to_disk, hub-layout Parquet/Arrow, the
local HF cache) for GLUE, VTAB-1k and GSM8k, read offline; your own CSV / TSV / JSONL / Parquet files with a column
mapping; MNLI matched / mismatched named by the dataset."""
import io
import json
import os

import pytest
import torch

datasets = pytest.importorskip("datasets", reason="datasets is a pinned runtime dependency (requirements.lock)")

from rankflow_runtime.data import DataError, DatasetConfigError, ModelInfo, load_task_data, num_labels_for  # noqa
from rankflow_runtime.data.loader import describe_datasets  # noqa: E402
from rankflow_runtime.spec import example_spec, parse_spec  # noqa: E402

SEQ = ModelInfo(task="seq-cls", vocab_size=500, max_length=128)
LM = ModelInfo(task="causal-lm", vocab_size=300, max_length=128)
IMG = ModelInfo(task="img-cls", image_size=8, channels=3)


def spec(name, root, **kw):
    s = {"name": name, "data_root": str(root), "max_length": 64, "train_size": None, "eval_size": None,
         "eval_split": "validation", "metric": "default", "options": {}}
    s.update(kw)
    return s


def labels(ds):
    return [ds[i]["labels"].item() for i in range(len(ds))]


SST2 = datasets.Features({"sentence": datasets.Value("string"),
                          "label": datasets.ClassLabel(names=["negative", "positive"]), "idx": datasets.Value("int32")})


def sst2_dict():
    tr = datasets.Dataset.from_dict({"sentence": ["good film", "bad film", "great", "awful", "fine"],
                                     "label": [1, 0, 1, 0, 1], "idx": list(range(5))}, features=SST2)
    va = datasets.Dataset.from_dict({"sentence": ["good", "bad", "meh"], "label": [1, 0, 0], "idx": [0, 1, 2]},
                                    features=SST2)
    te = datasets.Dataset.from_dict({"sentence": ["x"], "label": [-1], "idx": [0]},
                                    features=datasets.Features({**SST2, "label": datasets.Value("int64")}))
    return datasets.DatasetDict(train=tr, validation=va, test=te)


# --- GLUE ------------------------------------------------------------------------------------------------

def test_glue_from_save_to_disk(tmp_path):
    sst2_dict().save_to_disk(str(tmp_path / "glue" / "sst2"))
    td = load_task_data(spec("glue/sst2", tmp_path), SEQ, 0)
    assert len(td.train) == 5 and labels(td.eval) == [1, 0, 0] and td.eval_split == "validation"


def test_glue_from_hub_layout_parquet(tmp_path):
    d = tmp_path / "glue" / "sst2"
    d.mkdir(parents=True)
    for split, ds in sst2_dict().items():
        ds.to_parquet(str(d / f"{split}-00000-of-00001.parquet"))
    td = load_task_data(spec("glue/sst2", tmp_path), SEQ, 0)
    assert len(td.train) == 5 and labels(td.eval) == [1, 0, 0]
    forced = load_task_data(spec("glue/sst2", tmp_path, format="hf"), SEQ, 0)
    assert labels(forced.eval) == [1, 0, 0]
    with pytest.raises(DataError, match="SST-2"):  # format tsv insists on the official files
        load_task_data(spec("glue/sst2", tmp_path, format="tsv"), SEQ, 0)


def test_glue_explicit_parquet_files_and_arrow(tmp_path):
    dd = sst2_dict()
    dd["train"].to_parquet(str(tmp_path / "tr.parquet"))
    dd["validation"].to_parquet(str(tmp_path / "va.parquet"))
    td = load_task_data(spec("glue/sst2", tmp_path, files={"train": "tr.parquet", "validation": "va.parquet"}), SEQ, 0)
    assert len(td.train) == 5 and labels(td.eval) == [1, 0, 0]
    arrow = tmp_path / "arrow" / "glue" / "sst2"
    dd.save_to_disk(str(tmp_path / "saved"))
    arrow.mkdir(parents=True)
    for split in ("train", "validation"):
        src = next(f for f in os.listdir(tmp_path / "saved" / split) if f.endswith(".arrow"))
        os.link(tmp_path / "saved" / split / src, arrow / f"{split}-00000-of-00001.arrow")
    assert labels(load_task_data(spec("glue/sst2", tmp_path / "arrow"), SEQ, 0).eval) == [1, 0, 0]


def _cache_entry(home, repo_id, config, splits: dict):
    """Write a dataset into the local HF datasets cache exactly where `load_dataset(repo_id, config)` put it."""
    from datasets.packaged_modules.parquet.parquet import Parquet
    src = home / "src" / config
    src.mkdir(parents=True)
    files = {}
    for split, ds in splits.items():
        ds.to_parquet(str(src / f"{split}.parquet"))
        files[split] = str(src / f"{split}.parquet")
    b = Parquet(dataset_name=repo_id.split("/")[-1], config_name=config, data_files=files, hash="0123456789abcdef",
                cache_dir=str(home / "datasets"))
    b.repo_id, b.config_id = repo_id, config
    b._cache_dir = b._build_cache_dir()
    b.download_and_prepare()


def test_glue_and_gsm8k_from_the_local_hf_cache(tmp_path, monkeypatch):
    import datasets.config
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    _cache_entry(tmp_path, "nyu-mll/glue", "sst2", {k: v for k, v in sst2_dict().items() if k != "test"})
    empty = tmp_path / "empty"
    empty.mkdir()
    td = load_task_data(spec("glue/sst2", empty), SEQ, 0)  # nothing under the data root: the cache
    assert len(td.train) == 5 and labels(td.eval) == [1, 0, 0]
    rec = {"question": ["What is 2+3?", "What is 1+1?"], "answer": ["2+3=5\n#### 5", "1+1=2\n#### 2"]}
    _cache_entry(tmp_path, "openai/gsm8k", "main", {"train": datasets.Dataset.from_dict(rec),
                                                    "test": datasets.Dataset.from_dict(rec)})
    g = load_task_data(spec("gsm8k", empty, eval_split="test", options={"tokenizer": "bytes"}), LM, 0)
    assert len(g.train) == 2 and g.generation["references"] == rec["answer"]


def test_glue_hf_errors_name_split_and_columns(tmp_path):
    dd = sst2_dict()
    dd["train"].rename_column("sentence", "text").to_parquet(str(tmp_path / "tr.parquet"))
    dd["validation"].to_parquet(str(tmp_path / "va.parquet"))
    with pytest.raises(DataError, match=r"no column 'sentence'.*columns: text, label, idx"):
        load_task_data(spec("glue/sst2", tmp_path, files={"train": "tr.parquet", "validation": "va.parquet"}), SEQ, 0)
    (tmp_path / "glue" / "sst2").mkdir(parents=True)
    dd["train"].to_parquet(str(tmp_path / "glue" / "sst2" / "train-00000-of-00001.parquet"))
    with pytest.raises(DataError, match=r"no split 'validation' \(splits: train\)"):
        load_task_data(spec("glue/sst2", tmp_path), SEQ, 0)
    with pytest.raises(DatasetConfigError, match="dataset.format 'csv' is not a format of glue/sst2"):
        load_task_data(spec("glue/sst2", tmp_path, format="csv"), SEQ, 0)


MNLI = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                          "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])})


def test_mnli_names_choose_the_evaluated_split(tmp_path):
    d = tmp_path / "glue" / "mnli"
    d.mkdir(parents=True)
    rows = lambda ys: datasets.Dataset.from_dict({"premise": ["p"] * len(ys), "hypothesis": ["h"] * len(ys),  # noqa
                                                  "label": ys}, features=MNLI)
    rows([0, 1, 2, 0]).to_parquet(str(d / "train-00000-of-00001.parquet"))
    rows([1]).to_parquet(str(d / "validation_matched-00000-of-00001.parquet"))
    rows([2, 2]).to_parquet(str(d / "validation_mismatched-00000-of-00001.parquet"))
    m = load_task_data(spec("glue/mnli", tmp_path), SEQ, 0)
    assert m.eval_split == "validation_matched" and labels(m.eval) == [1]
    mm = load_task_data(spec("glue/mnli-mm", tmp_path), SEQ, 0)
    assert mm.eval_split == "validation_mismatched" and labels(mm.eval) == [2, 2]
    assert load_task_data(spec("glue/mnli", tmp_path, eval_split="validation_mismatched"), SEQ, 0).eval_split \
        == "validation_mismatched"
    with pytest.raises(DatasetConfigError, match="contradicts dataset.name 'glue/mnli-mm'"):
        load_task_data(spec("glue/mnli-mm", tmp_path, eval_split="validation_matched"), SEQ, 0)
    # the official TSVs honour the alias too (the fixtures' dev_mismatched labels)
    fixtures = os.path.join(os.path.dirname(__file__), "data")
    tsv = load_task_data(spec("glue/mnli-mm", fixtures), SEQ, 0)
    assert tsv.eval_split == "validation_mismatched" and labels(tsv.eval) == [0, 2, 1]


# --- VTAB-1k with image columns --------------------------------------------------------------------------------

def _png(color, fmt="PNG"):
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format=fmt)
    return buf.getvalue()


def test_vtab_from_parquet_with_image_column(tmp_path):
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    d = tmp_path / "vtab-1k" / "dtd"
    d.mkdir(parents=True)
    imgs = [{"bytes": _png((255, 255, 255)), "path": None}, {"bytes": _png((0, 0, 0), "JPEG"), "path": None}]
    ds = datasets.Dataset.from_dict({"image": imgs * 2, "label": [0, 1, 2, 3]}, features=feats)
    ds.to_parquet(str(d / "train800val200-00000-of-00001.parquet"))
    ds.select([0, 1]).to_parquet(str(d / "test-00000-of-00001.parquet"))
    td = load_task_data(spec("vtab/dtd", tmp_path, eval_split="test", options={"normalize": "none"}), IMG, 0)
    assert len(td.train) == 4 and labels(td.eval) == [0, 1]
    x = td.eval[0]["pixel_values"]
    assert x.shape == (3, 8, 8) and torch.allclose(x, torch.ones_like(x))
    assert float(td.eval[1]["pixel_values"].abs().max()) < 0.05  # the black JPEG
    batch = td.collate([td.train[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 8, 8)


def test_vtab_from_save_to_disk_with_train_test_splits(tmp_path):
    feats = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=47)})
    ds = datasets.Dataset.from_dict({"img": [{"bytes": _png((255, 0, 0)), "path": None}] * 3, "label": [5, 6, 7]},
                                    features=feats)
    datasets.DatasetDict(train=ds, test=ds.select([2])).save_to_disk(str(tmp_path / "vtab-1k" / "dtd"))
    td = load_task_data(spec("vtab/dtd", tmp_path, eval_split="test"), IMG, 0)
    assert labels(td.train) == [5, 6, 7] and labels(td.eval) == [7]
    with pytest.raises(DataError, match=r"no split 'train800'"):
        load_task_data(spec("vtab/dtd", tmp_path, eval_split="validation"), IMG, 0)


# --- GSM8k ----------------------------------------------------------------------------------------------------------

def test_gsm8k_from_hub_layout_parquet(tmp_path):
    d = tmp_path / "gsm8k" / "main"
    d.mkdir(parents=True)
    rec = {"question": ["What is 2+3?"] * 3, "answer": ["2+3=<<2+3=5>>5\n#### 5"] * 3}
    datasets.Dataset.from_dict(rec).to_parquet(str(d / "train-00000-of-00001.parquet"))
    datasets.Dataset.from_dict(rec).select([0]).to_parquet(str(d / "test-00000-of-00001.parquet"))
    td = load_task_data(spec("gsm8k", tmp_path, eval_split="test", options={"tokenizer": "bytes"}), LM, 0)
    assert len(td.train) == 3 and len(td.eval) == 1 and td.kind == "generation"


# --- your own data ------------------------------------------------------------------------------------------------

def own(root, files, **kw):
    return spec("my-data", root, files=files, **kw)


def test_own_csv_classification_with_a_pair_and_inferred_labels(tmp_path):
    (tmp_path / "train.csv").write_text('premise,hypothesis,label\r\n"A man, eating",Someone eats,yes\r\n'
                                        "A dog runs,A cat sleeps,no\r\nBirds fly,Animals move,yes\r\n")
    (tmp_path / "dev.csv").write_text("premise,hypothesis,label\nx,y,no\nz,w,yes\n")
    s = own(tmp_path, {"train": "train.csv", "validation": "dev.csv"},
            columns={"text": ["premise", "hypothesis"], "label": "label"})
    td = load_task_data(s, SEQ, 0)
    assert td.num_labels == 2 and td.info["labels"] == ["no", "yes"] and labels(td.train) == [1, 0, 1]
    assert labels(td.eval) == [0, 1] and td.primary_metric == "accuracy" and num_labels_for(s) == 2
    (tmp_path / "dev.csv").write_text("premise,hypothesis,label\nx,y,no\nz,w,maybe\n")
    with pytest.raises(DataError, match=r"dev.csv:3: label 'maybe' in column 'label' is not one of the training "
                                        r"labels \(no, yes\)"):
        load_task_data(s, SEQ, 0)
    s["labels"] = ["no", "yes", "maybe"]  # an explicit label set fixes order and membership
    td = load_task_data(s, SEQ, 0)
    assert td.num_labels == 3 and labels(td.eval) == [0, 2] and num_labels_for(s) == 3


def test_own_tsv_jsonl_and_parquet_regression(tmp_path):
    (tmp_path / "train.tsv").write_text("text\tscore\nvery good\t4.5\nbad\t0.5\nok\t2\n")
    (tmp_path / "dev.jsonl").write_text('{"text": "good", "score": 4}\n{"text": "meh", "score": 2.5}\n')
    s = own(tmp_path, {"train": "train.tsv", "validation": "dev.jsonl"}, columns={"text": "text", "label": "score"},
            problem_type="regression")
    td = load_task_data(s, SEQ, 0)
    assert td.num_labels == 1 and td.kind == "regression" and td.primary_metric == "pearson"
    assert labels(td.eval) == [4.0, 2.5]
    datasets.Dataset.from_dict({"text": ["a", "b"], "score": [1.0, 3.0]}).to_parquet(str(tmp_path / "tr.parquet"))
    s["files"] = {"train": "tr.parquet", "validation": "dev.jsonl"}
    assert labels(load_task_data(s, SEQ, 0).train) == [1.0, 3.0]
    (tmp_path / "dev.jsonl").write_text('{"text": "good", "score": "high"}\n')
    with pytest.raises(DataError, match=r"dev.jsonl:1: column 'score' holds 'high', not a number"):
        load_task_data(s, SEQ, 0)


def test_own_jsonl_causal_lm_prompt_target(tmp_path):
    rows = [{"q": f"{a} plus {a}?", "a": f"{2 * a}"} for a in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = own(tmp_path, {"train": "train.jsonl", "test": "train.jsonl"}, eval_split="test",
            columns={"prompt": "q", "target": "a"}, options={"tokenizer": "bytes"})
    td = load_task_data(s, LM, 0)
    assert td.task == "causal-lm" and td.kind == "lm" and td.primary_metric == "perplexity"
    ex = td.train[0]
    target = (ex["labels"] != -100).sum().item()
    assert target == len("0") + 1  # the target's bytes and EOS
    assert num_labels_for(s) is None


def test_own_data_errors_name_file_column_and_fix(tmp_path):
    (tmp_path / "train.csv").write_text("sentence,label\nfine,1\n")
    s = own(tmp_path, {"train": "train.csv", "validation": "missing.csv"}, columns={"text": "review", "label": "label"})
    with pytest.raises(DataError) as e:
        load_task_data(s, SEQ, 0)
    assert "train.csv: no column 'review' (dataset.text; the file has: sentence, label)" in e.value.message
    assert e.value.hint == "set dataset.text to one of the file's columns"
    s["columns"]["text"] = "sentence"
    with pytest.raises(DataError, match=r"dataset.files.validation: '.*missing.csv' does not exist"):
        load_task_data(s, SEQ, 0)
    (tmp_path / "dev.csv").write_text("sentence,label\nx,\n")
    s["files"]["validation"] = "dev.csv"
    with pytest.raises(DataError, match="only one distinct value"):
        load_task_data(s, SEQ, 0)
    (tmp_path / "train.csv").write_text("sentence,label\nfine,1\nbad,0\n")
    with pytest.raises(DataError, match=r"dev.csv:2: column 'label' \(dataset.label\) is empty"):
        load_task_data(s, SEQ, 0)
    with pytest.raises(DatasetConfigError, match="needs a seq-cls model"):
        load_task_data(s, LM, 0)


def test_run_spec_accepts_the_data_fields():
    s = example_spec(**{"dataset.name": "my-data", "dataset.files": {"train": "a.csv", "validation": "b.csv"},
                        "dataset.columns": {"text": ["p", "h"], "label": "y"}, "dataset.format": "csv",
                        "dataset.problem_type": "classification", "dataset.labels": ["a", "b"]})
    assert parse_spec(s).dataset["columns"]["text"] == ["p", "h"]
    s["dataset"]["format"] = "xlsx"
    with pytest.raises(Exception, match="dataset.format"):
        parse_spec(s)


def test_describe_lists_every_format():
    d = describe_datasets()
    assert set(d["glue"]["formats"]) == {"tsv", "hf"} and set(d["gsm8k"]["formats"]) == {"jsonl", "hf"}
    assert set(d["vtab"]["formats"]) == {"official", "hf"}
    assert set(d["custom"]["formats"]) == {"csv", "tsv", "jsonl", "parquet", "arrow"}
