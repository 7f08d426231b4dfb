"""Synthetic generators, tokenizers, collation and spec errors of the data package."""
import hashlib

import pytest
import torch

from rankflow_runtime.data import (BOS_ID, CLS_ID, EOS_ID, IGNORE_INDEX, NUM_SPECIAL, PAD_ID, SEP_ID, CharTokenizer,
                                   Collator, DataError, DatasetConfigError, ModelInfo, WordHashTokenizer,
                                   compute_loss, describe_datasets, load_task_data, make_tokenizer)


def spec(name, **kw):
    s = {"name": name, "data_root": None, "max_length": 32, "train_size": 24, "eval_size": 8,
         "eval_split": "validation", "metric": "default", "options": {}}
    s.update(kw)
    return s


SEQ = ModelInfo(task="seq-cls", vocab_size=200, max_length=64)
LM = ModelInfo(task="causal-lm", vocab_size=300, max_length=256)
IMG = ModelInfo(task="img-cls", image_size=16, channels=3)


def same(a, b):
    return all(torch.equal(a[i][k], b[i][k]) for i in range(len(a)) for k in a[i])


# --- synthetic generators -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,info", [("synthetic/seq-cls", SEQ), ("synthetic/regression", SEQ),
                                       ("synthetic/img-cls", IMG), ("synthetic/causal-lm", LM),
                                       ("synthetic/gsm8k-like", LM)])
def test_synthetic_is_deterministic_and_sized(name, info):
    a = load_task_data(spec(name, max_length=160), info, seed=3)
    b = load_task_data(spec(name, max_length=160), info, seed=3)
    c = load_task_data(spec(name, max_length=160), info, seed=4)
    assert len(a.train) == 24 and len(a.eval) == 8
    assert same(a.train, b.train) and same(a.eval, b.eval)
    assert not same(a.train, c.train)
    assert not same([a.train[i] for i in range(8)], [a.eval[i] for i in range(8)])  # independent streams
    batch = a.collate([a.train[i] for i in range(5)])
    assert batch["labels"].shape[0] == 5


def test_data_seed_option_decouples_data_from_run_seed():
    a = load_task_data(spec("synthetic/seq-cls", options={"data_seed": 9}), SEQ, seed=1)
    b = load_task_data(spec("synthetic/seq-cls", options={"data_seed": 9}), SEQ, seed=2)
    assert same(a.train, b.train)


def test_seq_cls_plants_the_keyword_of_its_class():
    td = load_task_data(spec("synthetic/seq-cls", options={"num_classes": 3}), SEQ, seed=0)
    assert td.num_labels == 3 and td.primary_metric == "accuracy" and td.greater_is_better
    assert "f1" not in td.metric_names  # positive-class F1 only for binary tasks
    for i in range(len(td.train)):
        ex = td.train[i]
        ids, y = ex["input_ids"].tolist(), int(ex["labels"])
        assert ids[0] == CLS_ID and ids[-1] == SEP_ID and len(ids) <= 32
        keywords = {t - NUM_SPECIAL for t in ids if NUM_SPECIAL <= t < NUM_SPECIAL + 3}
        assert keywords == {y}


def test_regression_labels_count_the_keyword():
    td = load_task_data(spec("synthetic/regression"), SEQ, seed=0)
    assert td.num_labels == 1 and td.kind == "regression" and td.primary_metric == "pearson"
    for i in range(len(td.train)):
        ex = td.train[i]
        assert ex["labels"].dtype == torch.float32
        assert float(ex["labels"]) == pytest.approx(1.25 * ex["input_ids"].tolist().count(NUM_SPECIAL))


def test_img_cls_planted_square():
    td = load_task_data(spec("synthetic/img-cls", options={"num_classes": 4}), IMG, seed=0)
    for i in range(len(td.train)):
        ex = td.train[i]
        x, y = ex["pixel_values"], int(ex["labels"])
        assert x.shape == (3, 16, 16)
        cell_means = x.mean(0).reshape(4, 4, 4, 4).mean(dim=(1, 3))  # 4x4 grid of 4x4 cells
        assert int(cell_means.argmax()) == y


def test_causal_lm_progressions_and_prompt_mask():
    td = load_task_data(spec("synthetic/causal-lm", max_length=16), LM, seed=0)
    assert td.num_labels == 0 and td.primary_metric == "perplexity" and not td.greater_is_better
    ex = td.train[0]
    ids, labels = ex["input_ids"].tolist(), ex["labels"].tolist()
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == 16
    assert labels[:4] == [IGNORE_INDEX] * 4 and labels[4:] == ids[4:]
    seq = [t - NUM_SPECIAL for t in ids[1:-1]]
    steps = {(b - a) % 64 for a, b in zip(seq, seq[1:])}
    assert len(steps) == 1 and steps.pop() in (1, 2, 3)


def test_gsm8k_like_format():
    td = load_task_data(spec("synthetic/gsm8k-like", max_length=200), LM, seed=0)
    tok = td.tokenizer
    ex = td.eval[0]
    n = int(ex["prompt_length"])
    prompt = tok.decode(ex["input_ids"][:n].tolist())
    target = tok.decode([t for t in ex["labels"].tolist() if t != IGNORE_INDEX])
    assert prompt.startswith("Question: ") and prompt.endswith("\nAnswer:")
    assert "<<" not in target and target.rstrip().split("#### ")[-1] == td.generation["references"][0].split("#### ")[-1]
    assert "prompt_length" not in td.train[0]


# --- collation and loss ---------------------------------------------------------------------------------------
def test_collate_pads_right():
    col = Collator(pad_id=PAD_ID)
    ex = [{"input_ids": torch.tensor([5, 6, 7]), "attention_mask": torch.ones(3, dtype=torch.long),
           "labels": torch.tensor([-100, 6, 7])},
          {"input_ids": torch.tensor([8]), "attention_mask": torch.ones(1, dtype=torch.long),
           "labels": torch.tensor([8])}]
    b = col(ex)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert Collator(pad_id=0, pad_to=6)(ex)["input_ids"].shape == (2, 6)
    cls = Collator()([{"input_ids": torch.tensor([1, 2]), "attention_mask": torch.ones(2, dtype=torch.long),
                       "labels": torch.tensor(1)}])
    assert cls["labels"].tolist() == [1]


def test_compute_loss_shifts_lm_labels():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 10.0  # position 0 predicts token 2 (label at position 1)
    labels = torch.tensor([[IGNORE_INDEX, 2, IGNORE_INDEX]])
    assert float(compute_loss(logits, labels, 0)) < 1e-3
    labels_bad = torch.tensor([[IGNORE_INDEX, 1, IGNORE_INDEX]])
    assert float(compute_loss(logits, labels_bad, 0)) > 5.0
    assert float(compute_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 2.0]), 1)) == pytest.approx(1.0)


# --- tokenizers -------------------------------------------------------------------------------------------
def test_word_hash_tokenizer_is_stable():
    tok = WordHashTokenizer(100)
    expected = NUM_SPECIAL + int.from_bytes(hashlib.blake2b(b"hello", digest_size=8).digest(), "little") % 93
    assert tok.encode("Hello, hello!") == [expected, tok.token_id(","), expected, tok.token_id("!")]
    assert all(NUM_SPECIAL <= t < 100 for t in tok.encode("any text at all 123"))


def test_char_tokenizers_round_trip():
    b = CharTokenizer(300, "bytes")
    assert b.decode(b.encode("12 + 3 = 15\n#### 15 é")) == "12 + 3 = 15\n#### 15 é"
    a = CharTokenizer(110, "ascii")
    assert a.decode(a.encode("x = 7\n")) == "x = 7\n"
    with pytest.raises(DatasetConfigError):
        CharTokenizer(100, "bytes")


def test_pair_encoding_truncates_longest_first():
    tok = CharTokenizer(300, "bytes")
    ids = tok.encode_for_classification("abcdefghij", "xyz", max_length=10)  # budget 10 - 3 specials = 7
    assert ids == [CLS_ID] + tok.encode("abcd") + [SEP_ID] + tok.encode("xyz") + [SEP_ID]
    single = tok.encode_for_classification("abcdefghij", None, max_length=6)
    assert single == [CLS_ID] + tok.encode("abcd") + [SEP_ID]


def test_make_tokenizer_defaults_and_model_specials():
    assert make_tokenizer(None, 200, "seq-cls").name == "words"
    assert make_tokenizer(None, 300, "causal-lm").name == "bytes"
    assert make_tokenizer(None, 120, "causal-lm").name == "ascii"
    tok = make_tokenizer(None, 300, "causal-lm", specials={"eos_id": 3})
    assert tok.eos_id == 3
    with pytest.raises(DatasetConfigError):
        make_tokenizer("hf", 300, "causal-lm")  # no local tokenizer folder
    with pytest.raises(DatasetConfigError):
        make_tokenizer("sentencepiece", 300, "causal-lm")


# --- spec errors ----------------------------------------------------------------------------------------
def test_spec_errors_are_one_line_with_hints():
    cases = [
        (spec("synthetic/nope"), SEQ, DatasetConfigError),
        (spec("imagenet/x"), SEQ, DatasetConfigError),
        (spec("synthetic/seq-cls"), LM, DatasetConfigError),  # task mismatch
        (spec("synthetic/seq-cls", metric="bleu"), SEQ, DatasetConfigError),
        (spec("synthetic/gsm8k-like", options={"tokenizer": "words"}), LM, DatasetConfigError),
        (spec("glue/rte"), SEQ, DataError),  # no data root anywhere
    ]
    for s, info, exc in cases:
        with pytest.raises(exc) as e:
            load_task_data(s, info, seed=0)
        assert "\n" not in e.value.message and e.value.hint


def test_metric_choice_sets_direction():
    td = load_task_data(spec("synthetic/causal-lm", metric="token_accuracy", max_length=16), LM, seed=0)
    assert td.primary_metric == "token_accuracy" and td.greater_is_better
    td = load_task_data(spec("synthetic/seq-cls", metric="loss"), SEQ, seed=0)
    assert td.primary_metric == "loss" and not td.greater_is_better


def test_accepts_the_models_package_model_info():
    from rankflow_runtime.models import model_info
    info = model_info({"name": "tiny-decoder", "source": "builtin", "task": "causal-lm", "config": {},
                       "random_init": True}, 64)
    td = load_task_data(spec("synthetic/causal-lm", max_length=64), info, seed=0)
    assert td.tokenizer.eos_id == info.eos_token_id and td.tokenizer.bos_id == info.bos_token_id
    assert int(td.train[0]["input_ids"][-1]) == info.eos_token_id


def test_describe_datasets_lists_every_family():
    d = describe_datasets()
    assert set(d) == {"synthetic", "glue", "vtab", "gsm8k", "custom", "corpus"}
    assert len(d["glue"]["tasks"]) == 9 and len(d["vtab"]["tasks"]) == 19
    assert d["vtab"]["default_metric"] == "top1" and d["glue"]["default_metric"]["cola"] == "mcc"
    assert d["glue"]["per_task"]["stsb"]["metrics"][:2] == ["pearson", "spearman"]
    assert sum(len(v) for v in d["vtab"]["groups"].values()) == 19


def test_dataset_options_are_validated():
    with pytest.raises(DatasetConfigError, match=r"dataset.options.num_clases: unknown option .*did you mean") as e:
        load_task_data(spec("synthetic/seq-cls", options={"num_clases": 3}), SEQ, seed=0)
    assert "num_classes" in e.value.hint
    with pytest.raises(DatasetConfigError, match="expected an integer"):
        load_task_data(spec("synthetic/seq-cls", options={"num_classes": "3"}), SEQ, seed=0)
    with pytest.raises(DatasetConfigError, match="expected one of"):
        load_task_data(spec("synthetic/causal-lm", options={"tokenizer": "bpe"}), LM, seed=0)
    with pytest.raises(DatasetConfigError, match="unknown option for glue"):
        load_task_data(spec("glue/rte", options={"data_seed": 1}), SEQ, seed=0)
    # null means "the default"
    td = load_task_data(spec("synthetic/seq-cls", options={"num_classes": None, "data_seed": None}), SEQ, seed=0)
    assert td.num_labels == 2
    assert describe_datasets()["vtab"]["options"]["normalize"]["default"] == "auto"


def test_num_labels_without_loading():
    from rankflow_runtime.data import num_labels_for
    cases = {"glue/stsb": 1, "glue/mnli": 3, "glue/SST-2": 2, "vtab/sun397": 397, "synthetic/seq-cls": 2,
             "synthetic/img-cls": 4, "synthetic/regression": 1, "synthetic/causal-lm": None, "gsm8k": None}
    for name, n in cases.items():
        assert num_labels_for(spec(name, data_root="/nonexistent")) == n, name
    assert num_labels_for(spec("synthetic/seq-cls", options={"num_classes": 5})) == 5
    # and it agrees with what loading gives
    assert load_task_data(spec("synthetic/img-cls"), ModelInfo(task="img-cls", image_size=8), 0).num_labels == 4
    with pytest.raises(DatasetConfigError):
        num_labels_for(spec("glue/nope"))
