"""Hugging Face models: bundled architectures on the meta device, random init, local weights, no downloads."""

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is a test-only dependency of the runtime")

from rankflow_runtime import events  # noqa: E402
from rankflow_runtime.build import build, count, resolve_info  # noqa: E402
from rankflow_runtime.errors import ConfigError  # noqa: E402
from rankflow_runtime.spec import example_spec, parse_spec  # noqa: E402
from rankflow_runtime.train import run_training  # noqa: E402

TINY_LLAMA = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 64}


def llama_spec(**over):
    s = example_spec(**{"model.name": "llama-2-7b", "model.source": "hf", "model.task": "causal-lm",
                        "dataset.name": "synthetic/causal-lm", "dataset.metric": "perplexity",
                        "training.train_head": False})
    for k, v in over.items():
        a, _, b = k.partition(".")
        s[a][b] = v
    return s


def test_count_7b_on_meta_device():
    got = count(parse_spec(llama_spec()))
    lora = 32 * 2 * 8 * (4096 + 4096)  # LoRA r=8 on q_proj and v_proj of 32 layers
    # exact: LoRA's ranks come from the spec; head 0: the LM head is frozen (train_head false)
    assert got == {"trainable": lora, "formula": lora, "final": lora, "total": 6_738_415_616 + lora,
                   "exact": True, "head": 0}


def test_roberta_and_vit_bundled_counts():
    r = count(parse_spec(example_spec(**{"model.name": "FacebookAI/roberta-base", "model.source": "hf"})))
    head = 768 * 768 + 768 + 768 * 2 + 2  # RobertaClassificationHead (dense + out_proj), 2 labels
    assert r["formula"] == r["trainable"] == 12 * 2 * 8 * (768 + 768) + head
    info = resolve_info(parse_spec(example_spec(**{"model.name": "vit-base-patch16-224", "model.source": "hf",
                                                   "model.task": "img-cls", "dataset.name": "synthetic/img-cls"})))
    assert info.image_size == 224 and info.channels == 3


def test_no_weights_and_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="no local weights"):
        count(parse_spec(llama_spec(**{"model.random_init": False})))
    with pytest.raises(ConfigError, match="not a bundled architecture"):
        count(parse_spec(llama_spec(**{"model.name": "someone/unknown-model-xyz"})))
    with pytest.raises(ConfigError, match="model.config.num_layerz"):
        count(parse_spec(llama_spec(**{"model.config": {"num_layerz": 2}})))


def test_tiny_hf_llama_trains(tmp_path):
    spec = llama_spec(**{"model.config": TINY_LLAMA, "dataset.max_length": 24, "dataset.train_size": 64,
                         "dataset.eval_size": 16, "training.max_steps": 8, "training.eval_every": None,
                         "training.log_every": 1, "training.lr": 5e-3})
    with events.capture() as recs:
        assert run_training(parse_spec(spec), str(tmp_path)) == 0
    losses = [r["loss"] for r in recs if r["event"] == "progress"]
    assert len(losses) == 8 and losses[-1] < losses[0]
    done = recs[-1]
    assert done["event"] == "done" and "perplexity" in done["metrics"]


def test_local_weights_are_loaded(tmp_path):
    spec = parse_spec(llama_spec(**{"model.config": TINY_LLAMA}))
    info = resolve_info(spec)
    b = build(spec, info, None)
    base = b.model.get_submodule("model.layers.0.self_attn.q_proj").base.weight.detach().clone()
    cfg = transformers.LlamaConfig(**TINY_LLAMA)
    torch.manual_seed(123)
    saved = transformers.AutoModelForCausalLM.from_config(cfg)
    saved.save_pretrained(str(tmp_path))
    local = parse_spec(llama_spec(**{"model.name": str(tmp_path), "model.random_init": False}))
    b2 = build(local, resolve_info(local), None)
    w = b2.model.get_submodule("model.layers.0.self_attn.q_proj").base.weight
    assert torch.equal(w, saved.model.layers[0].self_attn.q_proj.weight)
    assert not torch.equal(w, base)
