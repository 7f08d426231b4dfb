"""Prompt tuning (Lester et al.): the prompt in front of the inputs (mask, token types, labels), its count, its
initialisations, the data's room for it, the cross-check against Hugging Face PEFT's prompt tuning on HF models
(same count, same forward for the same prompt tensor), the PEFT export round trip, decoder classifiers and the
KV-cache refusal."""
import json

import pytest
import torch

from rankflow_runtime.build import build, count, resolve_info
from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods.base import SHARED_ATTR, adapt_model
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.testing import adapted_model, base_model, synthetic_batch, train_steps

transformers = pytest.importorskip("transformers")

ROBERTA = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=40, num_labels=3)
LLAMA = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
             intermediate_size=64, max_position_embeddings=64, pad_token_id=0)


def _hf(kind, seed=0, **over):
    torch.manual_seed(seed)
    if kind == "roberta":
        return transformers.AutoModelForSequenceClassification.from_config(transformers.RobertaConfig(**ROBERTA))
    if kind == "llama-cls":
        return transformers.AutoModelForSequenceClassification.from_config(
            transformers.LlamaConfig(**LLAMA, num_labels=3))
    return transformers.AutoModelForCausalLM.from_config(transformers.LlamaConfig(**LLAMA))


def _adapt(model, method, m=4, task="seq-cls", head="classifier", **opts):
    from rankflow_runtime.methods import get_method
    meth = get_method(method)(4 if method == "dept" else None, {"num_virtual_tokens": m, "init": "vocab", **opts})
    adapt_model(model, meth, [], head, False, task=task, max_length=12, pad_token_id=0)
    return meth


def _batch(n=3, t=9, vocab=100, causal=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[0, -3:] = 0
    ids[0, -3:] = 0
    if causal:
        labels = ids.clone()
        labels[mask == 0] = -100
    else:
        labels = torch.arange(n) % 3
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ---------------------------------------------------------------------------------------------------------
# The prompt in front of the inputs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny-encoder", "tiny-decoder"])
def test_forward_is_the_frozen_model_on_prompt_plus_inputs(model):
    """Our hook = the base model run by hand on [P; E] with the mask extended by ones and (causal LM) the labels
    by -100; causal-LM logits come back for the input positions only."""
    m, meth, info, _ = adapted_model(model, "prompt-tuning", options={"num_virtual_tokens": 3})
    base, _ = base_model(model)
    batch = synthetic_batch(model)
    P = getattr(m, SHARED_ATTR).prompt
    b = batch["input_ids"].shape[0]
    E = base.get_input_embeddings()(batch["input_ids"])
    want = base(inputs_embeds=torch.cat([P[None].expand(b, -1, -1), E], 1),
                attention_mask=torch.cat([torch.ones(b, 3, dtype=torch.long), batch["attention_mask"]], 1),
                labels=(torch.cat([torch.full((b, 3), -100), batch["labels"]], 1)
                        if batch["labels"].dim() == 2 else batch["labels"]))
    got = m(**batch)
    torch.testing.assert_close(got.loss, want.loss)
    if info.task == "causal-lm":
        assert got.logits.shape[:2] == batch["input_ids"].shape
        torch.testing.assert_close(got.logits, want.logits[:, 3:])
    else:
        torch.testing.assert_close(got.logits, want.logits)


def test_count_is_m_times_d_independent_of_depth_and_targets():
    def spec(layers, targets):
        return parse_spec(example_spec(**{"model.name": "tiny-encoder", "method.name": "prompt-tuning",
                                          "method.rank": None, "method.targets": targets,
                                          "method.options": {"num_virtual_tokens": 20},
                                          "model.config": {"num_layers": layers}, "dataset.max_length": 64}))
    a, b = count(spec(2, [])), count(spec(6, ["query", "value", "fc1"]))
    head = 64 * 2 + 2
    assert a["formula"] == a["trainable"] == b["trainable"] == 20 * 64 + head


def test_data_leaves_room_for_the_prompt():
    base = {"model.name": "tiny-encoder", "method.name": "prompt-tuning", "method.rank": None,
            "method.options": {"num_virtual_tokens": 28}, "model.config": {"max_position": 64}}
    assert resolve_info(parse_spec(example_spec(**base, **{"dataset.max_length": 36}))).max_length == 36
    with pytest.raises(ConfigError, match="dataset.max_length: 37 inputs plus prompt-tuning's 28 prompt"):
        resolve_info(parse_spec(example_spec(**base, **{"dataset.max_length": 37})))


def test_initialisations():
    emb = base_model("tiny-encoder")[0].get_input_embeddings().weight
    m, *_ = adapted_model("tiny-encoder", "prompt-tuning", options={"num_virtual_tokens": 5, "init": "vocab"})
    P = getattr(m, SHARED_ATTR).prompt
    for row in P:  # every row is the embedding of some vocabulary token
        assert (emb == row).all(-1).any()
    m2, *_ = adapted_model("tiny-encoder", "prompt-tuning", options={"num_virtual_tokens": 5, "init": "vocab"})
    assert torch.equal(getattr(m2, SHARED_ATTR).prompt, P)  # seeded
    r, *_ = adapted_model("tiny-encoder", "prompt-tuning", options={"num_virtual_tokens": 12, "init": "random"})
    R = getattr(r, SHARED_ATTR).prompt
    assert R.min() >= -0.5 and R.max() <= 0.5 and R.std() > 0.2


def test_text_init_repeats_the_tokens_of_the_run_tokenizer():
    spec = parse_spec(example_spec(**{"model.name": "tiny-encoder", "method.name": "prompt-tuning", "method.rank": None,
                                      "method.options": {"num_virtual_tokens": 7, "init": "text",
                                                         "init_text": "great movie"},
                                      "dataset.max_length": 32}))
    info = resolve_info(spec)
    built = build(spec, info, 2)
    from rankflow_runtime.data.tokenizer import WordHashTokenizer
    ids = WordHashTokenizer(info.vocab_size).encode("great movie")
    emb = built.model.get_input_embeddings().weight
    want = emb[torch.tensor((ids * 4)[:7])]
    torch.testing.assert_close(getattr(built.model, SHARED_ATTR).prompt, want)
    with pytest.raises(ConfigError, match="init_text: empty"):
        bad = parse_spec(example_spec(**{"model.name": "tiny-encoder", "method.name": "prompt-tuning",
                                         "method.rank": None, "method.options": {"init": "text"},
                                         "dataset.max_length": 16}))
        build(bad, resolve_info(bad), 2)


def test_image_models_are_refused():
    with pytest.raises(ConfigError, match="does not apply to img-cls models"):
        adapted_model("tiny-vit", "prompt-tuning")


# ---------------------------------------------------------------------------------------------------------
# Hugging Face models and PEFT
# ---------------------------------------------------------------------------------------------------------

peft = pytest.importorskip("peft")


@pytest.mark.parametrize("kind", ["roberta", "llama"])
def test_same_count_and_forward_as_peft(kind):
    """Same trainable count as PEFT's PromptTuningConfig and, for the same prompt tensor, the same loss and logits
    (PEFT returns causal-LM logits for prompt + input rows: we return the input rows)."""
    causal = kind == "llama"
    task, head = ("causal-lm", "lm_head") if causal else ("seq-cls", "classifier")
    ours = _hf(kind)
    meth = _adapt(ours, "prompt-tuning", task=task, head=head)
    pm = peft.get_peft_model(_hf(kind), peft.PromptTuningConfig(task_type="CAUSAL_LM" if causal else "SEQ_CLS",
                                                                num_virtual_tokens=4))
    with torch.no_grad():
        P = getattr(ours, SHARED_ATTR).prompt
        P.add_(torch.randn(P.shape) * 0.5)
        pm.prompt_encoder["default"].embedding.weight.copy_(P)
    assert pm.prompt_encoder["default"].embedding.weight.numel() == meth.formula(ours, [], None) == 4 * 32
    ours.eval()
    pm.eval()
    batch = _batch(causal=causal)
    with torch.no_grad():
        a, b = ours(**batch), pm(**batch)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.logits, b.logits[:, 4:] if causal else b.logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["roberta", "llama"])
def test_export_round_trip_through_peft(kind, tmp_path):
    from rankflow_runtime.export_peft import export_peft
    causal = kind == "llama"
    task, head = ("causal-lm", "lm_head") if causal else ("seq-cls", "classifier")
    ours = _hf(kind)
    meth = _adapt(ours, "prompt-tuning", task=task, head=head)
    if not causal:
        for p in ours.classifier.parameters():
            p.requires_grad_(True)
    batch = _batch(causal=causal)
    train_steps(ours, meth, batch, steps=3, lr=0.3)
    ours.eval()
    with torch.no_grad():
        want = ours(**batch)
    config = export_peft(ours, meth, str(tmp_path), head_name=head)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "PROMPT_TUNING"
    assert config["task_type"] == ("CAUSAL_LM" if causal else "SEQ_CLS") and "target_modules" not in config
    pm = peft.PeftModel.from_pretrained(_hf(kind), str(tmp_path))
    pm.eval()
    with torch.no_grad():
        got = pm(**batch)
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.logits[:, 4:] if causal else got.logits, want.logits, rtol=1e-5, atol=1e-6)


def test_hf_decoder_classifier_pools_the_last_real_token():
    """A decoder classifier pools the last position: padded rows are re-ordered so that each row gets the logits
    it has alone (PEFT pools the pad position here)."""
    m = _hf("llama-cls")
    _adapt(m, "prompt-tuning", task="seq-cls", head="score")
    m.eval()
    batch = _batch()
    with torch.no_grad():
        together = m(**{k: v for k, v in batch.items() if k != "labels"}).logits
        alone = m(input_ids=batch["input_ids"][:1, :-3], attention_mask=batch["attention_mask"][:1, :-3]).logits
    torch.testing.assert_close(together[:1], alone, rtol=1e-5, atol=1e-6)


def test_kv_cache_generation_is_refused():
    m = _hf("llama")
    _adapt(m, "prompt-tuning", task="causal-lm", head="lm_head")
    with pytest.raises(ConfigError, match="KV-cache"):
        m.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=2, do_sample=False, pad_token_id=0)


def test_runs_end_to_end_and_resumes_bit_for_bit(tmp_path):
    """The real training loop on a causal LM (loss, eval, greedy generation) and an exact resume."""
    from rankflow_runtime import events
    from rankflow_runtime.train import run_training
    spec = example_spec(**{"model.name": "tiny-decoder", "model.task": "causal-lm", "method.name": "prompt-tuning",
                           "method.rank": None, "method.options": {"num_virtual_tokens": 4},
                           "dataset.name": "synthetic/gsm8k-like", "dataset.metric": "exact_match",
                           "dataset.max_length": 64, "dataset.train_size": 32, "dataset.eval_size": 4,
                           "training.max_steps": 6, "training.batch_size": 4, "training.lr": 0.3,
                           "training.eval_every": None, "training.checkpoint_every": 3, "training.log_every": 1,
                           "training.train_head": False})
    spec["dataset"]["options"] = {"max_new_tokens": 4}
    with events.capture() as full:
        assert run_training(parse_spec(spec), str(tmp_path / "a")) == 0
    with events.capture():
        assert run_training(parse_spec(spec), str(tmp_path / "b"), stop_at_step=3) == 4
    ck = str(tmp_path / "b" / "checkpoints" / "step-00000003")
    with events.capture() as resumed:
        assert run_training(parse_spec(spec), str(tmp_path / "b"), resume=ck) == 0
    loss = lambda recs: [r["loss"] for r in recs if r["event"] == "progress"]  # noqa: E731
    assert loss(full)[3:] == loss(resumed)
    assert "exact_match" in full[-1]["metrics"]


def test_checkpoint_export_of_a_trained_hf_run_loads_in_peft(tmp_path):
    """The runtime's export command path (export_checkpoint) on a prompt-tuning run of a small HF RoBERTa:
    PEFT loads the adapter (prompt + trained head) on the same base and gives rankflow's logits."""
    from rankflow_runtime import events
    from rankflow_runtime.checkpoint import load_trained_state
    from rankflow_runtime.export_peft import export_checkpoint
    from rankflow_runtime.models import build_model
    from rankflow_runtime.train import run_training
    small = {k: v for k, v in ROBERTA.items() if k not in ("num_labels", "vocab_size", "max_position_embeddings")}
    spec_obj = example_spec(**{"model.name": "roberta-base", "model.source": "hf", "model.config": small,
                               "method.name": "prompt-tuning", "method.rank": None,
                               "method.options": {"num_virtual_tokens": 5}, "dataset.max_length": 16,
                               "dataset.train_size": 32, "dataset.eval_size": 8, "training.max_steps": 3,
                               "training.batch_size": 8, "training.lr": 0.3, "training.eval_every": None,
                               "seed": 3})
    with events.capture() as recs:
        assert run_training(parse_spec(spec_obj), str(tmp_path / "run")) == 0
    ckpt = [r for r in recs if r["event"] == "checkpoint"][-1]["path"]
    spec = parse_spec(spec_obj)
    ev = export_checkpoint(spec, ckpt, str(tmp_path / "adapter"))
    assert ev["peft_type"] == "PROMPT_TUNING" and ev["r"] is None and ev["method"] == "prompt-tuning"
    info = resolve_info(spec)
    ours = build(spec, info, 2)
    load_trained_state(ckpt, spec_identity=spec.identity(), model=ours.model, method=ours.method)
    torch.manual_seed(spec.seed)
    base = build_model(spec.model, info, 2)
    pm = peft.PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    batch = _batch(vocab=info.vocab_size)
    ours.model.eval()
    pm.eval()
    with torch.no_grad():
        want = ours.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = pm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
