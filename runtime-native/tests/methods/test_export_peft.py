"""Export to the Hugging Face PEFT adapter format, and the round trip: PEFT loads the exported adapter onto a
fresh copy of the original base model and reproduces our adapted model's outputs."""
import json

import pytest
import torch
from safetensors.torch import load_file

from rankflow_runtime.errors import ConfigError
from rankflow_runtime.export_peft import export_peft
from rankflow_runtime.testing import adapted_model, base_model, synthetic_batch, train_steps

peft = pytest.importorskip("peft")

CASES = [
    ("lora", {"alpha": 16.0}),
    ("dora", {}),
    ("pissa", {}),
    ("vera", {}),
    ("randlora", {"seed": 5}),  # a non-default seed: the exported bases must be the ones used
    ("bone", {"variant": "balance"}),
    ("bone", {"variant": "bat"}),
    ("bone", {"variant": "mini", "mini_r": 4}),
]


def _logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _trained(model, method, options):
    m, meth, info, _ = adapted_model(model, method, rank=4, options=options, train_head=True)
    batch = synthetic_batch(model)
    train_steps(m, meth, batch, steps=3, lr=1e-2)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():  # make sure every adapter tensor is far from its init
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.01)
    return m, meth, info, batch


# PEFT warns that the per-layer copies of the shared RandLoRA bases are missing (see export_peft's docstring).
MISSING_SHARED = "ignore:Found missing adapter keys while loading the checkpoint"


@pytest.mark.filterwarnings(MISSING_SHARED)
@pytest.mark.parametrize("model", ["tiny-encoder", "tiny-decoder"])
@pytest.mark.parametrize("method,options", CASES, ids=[f"{m}-{o.get('variant', '')}" for m, o in CASES])
def test_round_trip_through_peft(model, method, options, tmp_path):
    m, meth, info, batch = _trained(model, method, options)
    want = _logits(m, batch)
    config = export_peft(m, meth, str(tmp_path), head_name=info.head_name, base_model_name_or_path=model)
    on_disk = json.loads((tmp_path / "adapter_config.json").read_text())
    assert on_disk == json.loads(json.dumps(config))
    assert on_disk["target_modules"] == meth.targets and on_disk["modules_to_save"] == [info.head_name]
    fresh, _ = base_model(model)  # the original base weights (for PiSSA: not the residual)
    assert not torch.allclose(_logits(fresh, batch), want)
    pm = peft.PeftModel.from_pretrained(fresh, str(tmp_path))
    torch.testing.assert_close(_logits(pm.base_model.model, batch), want, rtol=1e-5, atol=1e-5)


def test_pissa_export_is_rank_2r_lora_on_original_weights(tmp_path):
    m, meth, info, batch = _trained("tiny-encoder", "pissa", {"alpha": 8.0})
    config = export_peft(m, meth, str(tmp_path))
    assert config["r"] == 8 and config["lora_alpha"] == 16.0 and config["peft_type"] == "LORA"
    t = meth.targets[0]
    sd = load_file(str(tmp_path / "adapter_model.safetensors"))
    a, b = sd[f"base_model.model.{t}.lora_A.weight"], sd[f"base_model.model.{t}.lora_B.weight"]
    layer = m.get_submodule(t)
    s = layer.scaling
    torch.testing.assert_close(s * b @ a, s * (layer.lora_B @ layer.lora_A - layer.init_B @ layer.init_A))


def test_pissa_residual_mode(tmp_path):
    m, meth, info, batch = _trained("tiny-decoder", "pissa", {})
    want = _logits(m, batch)
    config = export_peft(m, meth, str(tmp_path), head_name=info.head_name, pissa_mode="residual")
    assert config["r"] == 4
    fresh, _ = base_model("tiny-decoder")
    residual = load_file(str(tmp_path / "residual_weights.safetensors"))
    assert set(residual) == {f"{t}.weight" for t in meth.targets}
    missing, unexpected = fresh.load_state_dict(residual, strict=False)
    assert not unexpected
    pm = peft.PeftModel.from_pretrained(fresh, str(tmp_path))
    torch.testing.assert_close(_logits(pm.base_model.model, batch), want, rtol=1e-5, atol=1e-5)


def test_unsupported_and_merged_are_clear_errors(tmp_path):
    m, meth, _, _ = adapted_model("tiny-encoder", "nola")
    with pytest.raises(ConfigError, match="method 'nola' has no Hugging Face PEFT implementation"):
        export_peft(m, meth, str(tmp_path))
    m, meth, _, _ = adapted_model("tiny-encoder", "lora")
    meth.merge(m)
    with pytest.raises(ConfigError, match="is merged into the base weights"):
        export_peft(m, meth, str(tmp_path))
    m, meth, _, _ = adapted_model("tiny-encoder", "pissa")
    with pytest.raises(ConfigError, match="pissa_mode 'x'"):
        export_peft(m, meth, str(tmp_path), pissa_mode="x")


@pytest.mark.filterwarnings(MISSING_SHARED)
@pytest.mark.parametrize("method", ["vera", "randlora"])
def test_shared_bases_come_from_the_file(method, tmp_path):
    """Change the seed in the exported config: PEFT regenerates other bases, then loads ours from the file."""
    m, meth, info, batch = _trained("tiny-encoder", method, {"seed": 3})
    want = _logits(m, batch)
    export_peft(m, meth, str(tmp_path), head_name=info.head_name)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    cfg["projection_prng_key"] = 11
    (tmp_path / "adapter_config.json").write_text(json.dumps(cfg))
    fresh, _ = base_model("tiny-encoder")
    pm = peft.PeftModel.from_pretrained(fresh, str(tmp_path))
    torch.testing.assert_close(_logits(pm.base_model.model, batch), want, rtol=1e-5, atol=1e-5)
