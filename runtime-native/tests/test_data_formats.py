"""Readers of the official on-disk formats, on the tiny fixtures in tests/data (see make_fixtures.py)."""
import os
import shutil

import pytest
import torch

from rankflow_runtime.data import DataError, DatasetConfigError, ModelInfo, load_task_data
from rankflow_runtime.data import glue, vtab
from rankflow_runtime.data.tokenizer import CharTokenizer

ROOT = os.path.join(os.path.dirname(__file__), "data")
SEQ = ModelInfo(task="seq-cls", vocab_size=500, max_length=128)
IMG = ModelInfo(task="img-cls", image_size=16, channels=3)


def spec(name, **kw):
    s = {"name": name, "data_root": ROOT, "max_length": 64, "train_size": None, "eval_size": None,
         "eval_split": "validation", "metric": "default", "options": {}}
    s.update(kw)
    return s


def labels(ds):
    return [ds[i]["labels"].item() for i in range(len(ds))]


# --- GLUE -----------------------------------------------------------------------------------------------
# task -> (train size, eval labels, num_labels, default metric)
GLUE = {
    "cola": (5, [1, 0, 1], 2, "mcc"),
    "sst2": (4, [1, 0], 2, "accuracy"),
    "mrpc": (3, [1, 0], 2, "accuracy"),
    "qqp": (3, [1, 0], 2, "accuracy"),  # the broken train row is skipped
    "stsb": (3, [4.25, 0.0], 1, "pearson"),
    "mnli": (3, [1, 2], 3, "accuracy"),  # validation_matched: neutral, contradiction
    "qnli": (2, [0, 1], 2, "accuracy"),
    "rte": (2, [0, 1], 2, "accuracy"),
    "wnli": (2, [1], 2, "accuracy"),
}


@pytest.mark.parametrize("task", sorted(GLUE))
def test_glue_tasks_load(task):
    n_train, eval_labels, num_labels, metric = GLUE[task]
    td = load_task_data(spec(f"glue/{task}"), SEQ, seed=0)
    assert len(td.train) == n_train and labels(td.eval) == pytest.approx(eval_labels)
    assert td.num_labels == num_labels and td.primary_metric == metric
    if num_labels == 1:
        assert td.train[0]["labels"].dtype == torch.float32
    batch = td.collate([td.train[i] for i in range(len(td.train))])
    assert batch["input_ids"].shape[1] <= 64


def test_glue_aliases_and_mnli_splits():
    mm = load_task_data(spec("glue/MNLI", eval_split="validation_mismatched"), SEQ, seed=0)
    assert mm.eval_split == "validation_mismatched" and labels(mm.eval) == [0, 2, 1]
    m = load_task_data(spec("glue/mnli"), SEQ, seed=0)
    assert m.eval_split == "validation_matched"
    assert load_task_data(spec("glue/SST-2"), SEQ, seed=0).name == "glue/SST-2"
    assert len(load_task_data(spec("glue/sts-b"), SEQ, seed=0).eval) == 2


def test_glue_text_columns_and_quotes():
    # read with no quoting: quotes stay text, fields never merge across tabs
    rows = glue.read_split("sst2", os.path.join(ROOT, "glue/SST-2/dev.tsv"))
    assert rows[0] == ("it 's a \"masterpiece", None, 1)
    rows = glue.read_split("mrpc", os.path.join(ROOT, "glue/MRPC/train.tsv"))  # BOM before "Quality"
    assert rows[1] == ("\"We are done,\" he said .", "He said the plan would continue .", 0)
    rows = glue.read_split("cola", os.path.join(ROOT, "glue/CoLA/train.tsv"))  # headerless
    assert rows[3] == ("Him went to the \"store yesterday.", None, 0)
    rows = glue.read_split("stsb", os.path.join(ROOT, "glue/STS-B/train.tsv"))
    assert rows[2] == ("Markets rally on \"good news\".", "Stocks rise after news.", 3.6)
    rows = glue.read_split("mnli", os.path.join(ROOT, "glue/MNLI/dev_matched.tsv"))  # gold_label is last
    assert rows[0] == ("She smiled.", "She was happy.", 1)
    rows = glue.read_split("qnli", os.path.join(ROOT, "glue/QNLI/train.tsv"))
    assert rows[0] == ("Where is Paris?", "Paris is in France.", 0)


def test_glue_pair_encoding_uses_both_sentences():
    info = ModelInfo(task="seq-cls", vocab_size=300, max_length=256)
    td = load_task_data(spec("glue/rte", max_length=256, options={"tokenizer": "bytes"}), info, seed=0)
    tok = td.tokenizer
    ids = td.eval[0]["input_ids"].tolist()
    assert ids == tok.encode_for_classification("What is water made of?", "Water is made of hydrogen and oxygen.", 256)
    assert ids.count(tok.sep_id) == 2


def test_glue_subsets_are_seeded_by_subset_seed_not_run_seed():
    a = load_task_data(spec("glue/cola", train_size=3), SEQ, seed=0)
    b = load_task_data(spec("glue/cola", train_size=3), SEQ, seed=7)
    assert len(a.train) == 3 and all(torch.equal(a.train[i]["input_ids"], b.train[i]["input_ids"]) for i in range(3))


def test_glue_errors(tmp_path):
    with pytest.raises(DatasetConfigError, match="no labels"):
        load_task_data(spec("glue/sst2", eval_split="test"), SEQ, seed=0)
    with pytest.raises(DatasetConfigError, match="eval_split"):
        load_task_data(spec("glue/sst2", eval_split="validation_matched"), SEQ, seed=0)
    with pytest.raises(DatasetConfigError, match="no task"):
        load_task_data(spec("glue/squad"), SEQ, seed=0)
    with pytest.raises(DataError, match="glue/RTE"):
        load_task_data(spec("glue/rte", data_root=str(tmp_path)), SEQ, seed=0)
    # a missing split file is named
    shutil.copytree(os.path.join(ROOT, "glue/RTE"), tmp_path / "glue" / "RTE")
    os.remove(tmp_path / "glue" / "RTE" / "dev.tsv")
    with pytest.raises(DataError, match="dev.tsv") as e:
        load_task_data(spec("glue/rte", data_root=str(tmp_path)), SEQ, seed=0)
    assert "download_glue_data" in e.value.hint
    # a malformed row names file and line
    (tmp_path / "glue" / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tonly two\n")
    with pytest.raises(DataError, match=r"dev.tsv:2: expected 4"):
        load_task_data(spec("glue/rte", data_root=str(tmp_path)), SEQ, seed=0)
    (tmp_path / "glue" / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(DataError, match="unknown label 'maybe'"):
        load_task_data(spec("glue/rte", data_root=str(tmp_path)), SEQ, seed=0)


def test_data_root_from_environment(monkeypatch):
    monkeypatch.setenv("RANKFLOW_DATA", ROOT)
    td = load_task_data(spec("glue/wnli", data_root=None), SEQ, seed=0)
    assert len(td.eval) == 1
    monkeypatch.setenv("RANKFLOW_DATA", os.path.join(ROOT, "does-not-exist"))
    with pytest.raises(DataError, match="does not exist"):
        load_task_data(spec("glue/wnli", data_root=None), SEQ, seed=0)


# --- VTAB-1k --------------------------------------------------------------------------------------------
def test_vtab_protocol_splits_and_pixels():
    td = load_task_data(spec("vtab/dtd", eval_split="test"), IMG, seed=0)
    assert (len(td.train), len(td.eval)) == (6, 4) and td.num_labels == 47 and td.primary_metric == "top1"
    val = load_task_data(spec("vtab/dtd", eval_split="validation"), IMG, seed=0)
    assert (len(val.train), len(val.eval)) == (4, 2)
    batch = td.collate([td.train[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 16, 16) and batch["pixel_values"].dtype == torch.float32
    # the first training image, normalised by hand (no resize: pass image_size 8, the stored size)
    raw = torch.from_numpy(__import__("numpy").load(os.path.join(ROOT, "vtab-1k/dtd/images/0000.npy")))
    exact = load_task_data(spec("vtab/dtd", eval_split="test"), ModelInfo(task="img-cls", image_size=8), seed=0)
    x = exact.train[0]["pixel_values"]
    want = (raw.permute(2, 0, 1).float() / 255.0 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert torch.allclose(x, want, atol=1e-6)


def test_vtab_grayscale_becomes_rgb_and_normalize_option():
    td = load_task_data(spec("vtab/smallnorb_ele", eval_split="test", options={"normalize": "none"}),
                        ModelInfo(task="img-cls", image_size=8), seed=0)
    x = td.train[0]["pixel_values"]
    assert x.shape == (3, 8, 8) and torch.equal(x[0], x[1]) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert td.num_labels == 9


def test_vtab_png_needs_pillow():
    loader = vtab.ImageLoader(4, 3, "none")
    path = os.path.join(ROOT, "vtab-1k/dtd/images/red.png")
    try:
        import PIL  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="Pillow"):
            loader((path, 0))
        return
    x = loader((path, 0))["pixel_values"]
    assert torch.allclose(x[:, 1, 1], torch.tensor([1.0, 0.0, 0.0])) and torch.allclose(x[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_vtab_errors(tmp_path):
    with pytest.raises(DataError, match="vtab-1k/cifar"):
        load_task_data(spec("vtab/cifar", eval_split="test"), IMG, seed=0)
    with pytest.raises(DatasetConfigError):
        load_task_data(spec("vtab/dtd", eval_split="train"), IMG, seed=0)
    d = tmp_path / "vtab-1k" / "dtd"
    shutil.copytree(os.path.join(ROOT, "vtab-1k/dtd"), d)
    (d / "test.txt").write_text("images/0006.npy 3\nimages/gone.npy 1\n")
    with pytest.raises(DataError, match=r"test.txt:2: image .*gone.npy' is missing"):
        load_task_data(spec("vtab/dtd", data_root=str(tmp_path), eval_split="test"), IMG, seed=0)
    (d / "test.txt").write_text("images/0006.npy 47\n")
    with pytest.raises(DataError, match="label in 0..46"):
        load_task_data(spec("vtab/dtd", data_root=str(tmp_path), eval_split="test"), IMG, seed=0)


def test_vtab_task_table():
    assert len(vtab.NUM_CLASSES) == 19 and set(vtab.NUM_CLASSES) == set(vtab.GROUP_OF)
    assert vtab.NUM_CLASSES["sun397"] == 397 and vtab.GROUP_OF["kitti"] == "structured"


# --- GSM8k ----------------------------------------------------------------------------------------------
LM = ModelInfo(task="causal-lm", vocab_size=300, max_length=512)


def test_gsm8k_jsonl():
    td = load_task_data(spec("gsm8k", eval_split="test", max_length=512), LM, seed=0)
    tok = td.tokenizer
    assert (len(td.train), len(td.eval)) == (3, 2) and td.primary_metric == "exact_match"
    ex = td.train[0]
    prompt_len = int((ex["labels"] == -100).sum())
    assert tok.decode(ex["input_ids"][:prompt_len].tolist()) == \
        "Question: Sam has 12 marbles and buys 8 more. How many marbles does he have?\nAnswer:"
    assert tok.decode(ex["input_ids"][prompt_len:].tolist()) == " Sam has 12+8=20 marbles.\n#### 20"
    assert int(ex["input_ids"][-1]) == tok.eos_id
    assert td.generation["references"][0].endswith("#### 15") and td.generation["max_new_tokens"] == 256
    keep = load_task_data(spec("gsm8k", eval_split="test", max_length=512, options={"keep_calculator": True}), LM, 0)
    assert "<<12+8=20>>" in keep.tokenizer.decode(keep.train[0]["input_ids"].tolist())


def test_gsm8k_errors(tmp_path):
    with pytest.raises(DatasetConfigError, match="does not exist for gsm8k") as e:
        load_task_data(spec("gsm8k", eval_split="validation"), LM, seed=0)
    assert "no validation split" in e.value.hint
    with pytest.raises(DataError, match="gsm8k/train.jsonl' is missing"):
        load_task_data(spec("gsm8k", eval_split="test", data_root=str(tmp_path)), LM, seed=0)
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text('{"question": "q", "answer": "a\\n#### 1"}\nnot json\n')
    with pytest.raises(DataError, match="train.jsonl:2: not valid JSON"):
        load_task_data(spec("gsm8k", eval_split="test", data_root=str(tmp_path)), LM, seed=0)
    (tmp_path / "gsm8k" / "train.jsonl").write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(DataError, match="does not end with"):
        load_task_data(spec("gsm8k", eval_split="test", data_root=str(tmp_path)), LM, seed=0)


def test_long_prompts_are_cut_from_the_left():
    info = ModelInfo(task="causal-lm", vocab_size=300, max_length=40)
    td = load_task_data(spec("gsm8k", eval_split="test", max_length=40), info, seed=0)
    ex = td.eval[0]
    n = int(ex["prompt_length"])
    assert len(ex["input_ids"]) <= 40 and n >= 20
    assert CharTokenizer(300).decode(ex["input_ids"][:n].tolist()).endswith("\nAnswer:")


def test_vtab_evaluate_with_worker_processes_matches_in_process():
    from rankflow_runtime.data import evaluate

    class Mean(torch.nn.Module):
        def forward(self, pixel_values):
            m = pixel_values.mean(dim=(2, 3))  # B, 3
            return torch.cat([m, torch.zeros(m.shape[0], 44)], dim=1)

    td = load_task_data(spec("vtab/dtd", eval_split="test"), IMG, seed=0)
    a = evaluate(Mean(), td, batch_size=3)
    b = evaluate(Mean(), td, batch_size=3, num_workers=1)
    assert a == b and set(a) == {"top1", "accuracy", "loss"}


def test_hf_tokenizer_from_a_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is a test-only dependency")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "is", "water", "made", "of", "?", "."]
    transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(str(tmp_path))
    info = ModelInfo(task="seq-cls", vocab_size=len(words), max_length=64, tokenizer=str(tmp_path))
    td = load_task_data(spec("glue/rte"), info, seed=0)
    assert td.tokenizer.name == "hf"
    # [CLS] what is water made of ? [SEP] water is made of [UNK] [UNK] [UNK] . [SEP]
    assert td.eval[0]["input_ids"].tolist() == [2, 5, 6, 7, 8, 9, 10, 3, 7, 6, 8, 9, 1, 1, 1, 11, 3]
    # BERT-style models get segment ids: 0 for [CLS] a [SEP], 1 for b [SEP]; padded with 0 by the collator
    assert td.eval[0]["token_type_ids"].tolist() == [0] * 8 + [1] * 9
    batch = td.collate([td.eval[0], td.eval[1]])
    assert batch["token_type_ids"].shape == batch["input_ids"].shape

    class SegmentsSeen(torch.nn.Module):  # evaluate passes token_type_ids through to the model
        def forward(self, input_ids, attention_mask, token_type_ids):
            return torch.stack([token_type_ids.sum(1).float(), torch.zeros(len(input_ids))], dim=1)

    from rankflow_runtime.data import evaluate
    assert evaluate(SegmentsSeen(), td, batch_size=2)["accuracy"] == 0.5  # predicts 0; labels are [0, 1]
    with pytest.raises(DataError, match="does not exist"):
        load_task_data(spec("glue/rte", options={"tokenizer": "hf"}),
                       ModelInfo(task="seq-cls", vocab_size=12, tokenizer=str(tmp_path / "missing")), seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot load a tokenizer from"):
        load_task_data(spec("glue/rte", options={"tokenizer": "hf"}),
                       ModelInfo(task="seq-cls", vocab_size=12, tokenizer=str(tmp_path / "empty")), seed=0)
