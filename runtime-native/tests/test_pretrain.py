"""The `pretrain` procedure (SLTrain and its baselines) and the pretraining corpora."""
import gzip
import json

import pytest
import torch

from rankflow_runtime import events
from rankflow_runtime.artifacts import open_artifact
from rankflow_runtime.data import ModelInfo, load_task_data
from rankflow_runtime.errors import ConfigError, DataError
from rankflow_runtime.procedures import count_spec, run_procedure
from rankflow_runtime.spec import example_spec, parse_spec

RUN = "run-" + "1" * 32
DEC = {"vocab_size": 384, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1,
       "intermediate_size": 64, "max_position": 64}


def pretrain_spec(method="sltrain", rank=4, steps=12, options=None, **kw):
    s = example_spec(**{"model.name": "tiny-decoder", "model.task": "causal-lm", "model.config": DEC,
                        "dataset.name": "corpus/synthetic", "dataset.metric": "perplexity", "dataset.max_length": 32,
                        "dataset.train_size": 96, "dataset.eval_size": 16, "training.lr": 3e-3,
                        "training.schedule": "cosine", "training.warmup_ratio": 0.25, "training.max_steps": steps,
                        "training.batch_size": 8, "training.eval_every": None, "training.log_every": 1,
                        "training.max_grad_norm": None})
    s["method"] = {"name": method, "rank": rank if method != "full" else None, "options": options or {}, "targets": []}
    s["procedure"] = {"name": "pretrain", "options": {}}
    s["run_id"] = RUN
    s.update(kw)
    return s


def _run(spec, out, **kw):
    with events.capture() as recs:
        rc = run_procedure(parse_spec(json.loads(json.dumps(spec))), str(out), **kw)
    return rc, recs


def test_pretraining_sltrain_lowers_loss_decays_to_a_floor_and_writes_a_dense_model(tmp_path):
    spec = pretrain_spec()
    rc, recs = _run(spec, tmp_path / "a")
    assert rc == 0
    prog = [r for r in recs if r["event"] == "progress"]
    assert prog[-1]["loss"] < prog[0]["loss"] - 0.3
    assert all(r["tokens_per_s"] > 0 for r in prog)
    assert prog[-1]["lr"] == pytest.approx(0.1 * 3e-3)  # cosine to min_lr_ratio · lr at the last step
    assert max(r["lr"] for r in prog) == pytest.approx(3e-3, rel=1e-6)
    done = recs[-1]
    assert done["event"] == "done" and {"tokens_per_s", "peak_mem_mb", "state_mb", "params", "trainable"} <= set(
        done["stats"])
    art = [r for r in recs if r["event"] == "artifact"]
    assert [a["name"] for a in art] == ["model"]
    model = open_artifact(art[0]["path"], flag="t", kind="model", run_id=RUN)
    t = model.tensors()
    assert "layers.0.self_attn.q_proj.weight" in t and not any("lora_" in k or "sparse" in k for k in t)
    assert model.meta["pretrained_with"]["name"] == "sltrain" and done["stats"]["params"] == sum(
        v.numel() for v in t.values())
    # A downstream fine-tuning run starts from exactly the pretrained model.
    down = pretrain_spec(steps=1, run_id="run-" + "2" * 32, inputs={"model": {"run": RUN, "artifact": "model"}})
    down["procedure"] = {"name": "finetune", "options": {}}
    down["method"] = {"name": "lora", "rank": 4, "options": {}, "targets": []}
    down["training"]["lr"] = 1e-12
    rc, drecs = _run(down, tmp_path / "b", input_paths={"model": art[0]["path"]})
    assert rc == 0
    up_ppl = [r for r in recs if r["event"] == "eval"][-1]["metrics"]["perplexity"]
    assert [r for r in drecs if r["event"] == "eval"][-1]["metrics"]["perplexity"] == pytest.approx(up_ppl, rel=1e-5)


def test_pretraining_resumes_bit_for_bit(tmp_path):
    spec = pretrain_spec(steps=6)
    _, ref = _run(spec, tmp_path / "ref")
    rc, first = _run(spec, tmp_path / "a", stop_at_step=3)
    assert rc == 4
    path = [r for r in first if r["event"] == "preempted"][0]["path"]
    rc, second = _run(spec, tmp_path / "b", resume=path)
    losses = lambda recs: {r["step"]: r["loss"] for r in recs if r["event"] == "progress"}  # noqa: E731
    assert rc == 0 and {**losses(first), **losses(second)} == losses(ref)
    assert [r for r in second if r["event"] == "artifact"]


def test_matched_comparison_rows_report_memory(tmp_path):
    """full-rank vs low-rank (sltrain sparsity 0) vs SLTrain: the training state in memory orders as the paper's."""
    stats = {}
    for name, method, rank, opts in (("full", "full", None, {}), ("low-rank", "sltrain", 6, {"sparsity": 0.0}),
                                     ("sltrain", "sltrain", 4, {"sparsity": 0.05})):
        rc, recs = _run(pretrain_spec(method, rank, steps=3, options=opts), tmp_path / name)
        assert rc == 0
        stats[name] = recs[-1]["stats"]
    print({k: (v["trainable"], round(v["state_mb"], 3)) for k, v in stats.items()})
    assert stats["sltrain"]["state_mb"] < stats["full"]["state_mb"]
    assert stats["low-rank"]["state_mb"] < stats["full"]["state_mb"]
    # Every run's dense model has the same size (the architecture's).
    assert stats["full"]["params"] == stats["sltrain"]["params"] == stats["low-rank"]["params"]


def test_hf_llama_config_pretrains_with_every_attention_and_mlp_layer_replaced(tmp_path):
    pytest.importorskip("transformers")
    spec = pretrain_spec(steps=2)
    spec["model"] = {"name": "llama-3.2-3b", "source": "hf", "task": "causal-lm", "random_init": True,
                     "config": {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
                                "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
                                "max_position_embeddings": 64, "head_dim": 16, "tie_word_embeddings": False,
                                "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}}
    c = count_spec(parse_spec(spec))
    assert c["trainable"] == c["formula"]
    rc, recs = _run(spec, tmp_path / "hf")
    assert rc == 0
    art = open_artifact([r for r in recs if r["event"] == "artifact"][0]["path"], flag="t")
    assert "model.layers.1.mlp.down_proj.weight" in art.tensors()


def test_pretrain_refuses_what_it_cannot_do():
    with pytest.raises(ConfigError, match="procedure pretrain runs sltrain, full, not 'lora'"):
        count_spec(parse_spec(pretrain_spec("lora")))
    s = pretrain_spec()
    s["model"] = {"name": "tiny-encoder", "source": "builtin", "task": "seq-cls", "config": {}, "random_init": True}
    with pytest.raises(ConfigError, match="pretrain trains causal LMs"):
        count_spec(parse_spec(s))


INFO = ModelInfo(task="causal-lm", vocab_size=384, max_length=64)


def test_corpus_files_read_text_jsonl_and_gzip_and_hold_out(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("first document here.\n\nsecond one, longer than the first.\n\n\nthird.")
    with gzip.open(tmp_path / "c" / "b.jsonl.gz", "wt") as f:
        for i in range(7):
            f.write(json.dumps({"text": f"json document number {i}", "url": "x"}) + "\n")
    ds = {"name": "corpus/files", "data_root": str(tmp_path), "max_length": 16, "train_size": None, "eval_size": None,
          "options": {"train_files": ["c/*.txt", "c/*.jsonl.gz"], "held_out": 0.2}}
    td = load_task_data(ds, INFO, 0)
    assert len(td.train) + len(td.eval) == 10 and len(td.eval) == 2
    assert td.primary_metric == "perplexity" and td.kind == "lm"
    ex = td.train[0]
    assert ex["input_ids"].shape[0] <= 16 and torch.equal(ex["labels"], ex["input_ids"])
    packed = load_task_data({**ds, "options": {**ds["options"], "packing": True}}, INFO, 0)
    assert all(e["input_ids"].shape[0] == 16 for e in packed.train)
    with pytest.raises(DataError, match="no file matches"):
        load_task_data({**ds, "options": {"train_files": ["c/*.parquet"]}}, INFO, 0)
    (tmp_path / "c" / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: no string field 'text'"):
        load_task_data({**ds, "options": {"train_files": ["c/bad.jsonl"]}}, INFO, 0)


def test_synthetic_corpus_is_seeded():
    ds = {"name": "corpus/synthetic", "max_length": 24, "train_size": 8, "eval_size": 4, "options": {}}
    a, b, c = (load_task_data(ds, INFO, s) for s in (0, 0, 1))
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a.train, b.train))
    assert not all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a.train, c.train))
