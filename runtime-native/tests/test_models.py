"""Built-in models: outputs, padding behaviour, generation."""
import pytest
import torch

from rankflow_runtime.data import greedy_generate as data_greedy_generate
from rankflow_runtime.errors import ConfigError
from rankflow_runtime.models import model_info
from rankflow_runtime.testing import base_model, synthetic_batch


def test_outputs_and_losses():
    for name, shape in [("tiny-encoder", (8, 3)), ("tiny-vit", (8, 4)), ("tiny-decoder", (8, 12, 64))]:
        m, info = base_model(name)
        out = m(**synthetic_batch(name))
        assert tuple(out.logits.shape) == shape and out.loss.ndim == 0 and torch.isfinite(out.loss)


def test_encoder_ignores_padding():
    m, _ = base_model("tiny-encoder")
    m.eval()
    ids = torch.randint(7, 64, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], dim=1).long()
    a = m(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    b = m(input_ids=padded, attention_mask=mask).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_decoder_left_and_right_padding_match_unpadded():
    m, _ = base_model("tiny-decoder")
    m.eval()
    ids = torch.randint(7, 64, (1, 5))
    ref = m(input_ids=ids).logits[0]
    left = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    lmask = torch.cat([torch.zeros(1, 3), torch.ones(1, 5)], dim=1).long()
    torch.testing.assert_close(m(input_ids=left, attention_mask=lmask).logits[0, 3:], ref, rtol=1e-5, atol=1e-5)
    right = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    rmask = torch.cat([torch.ones(1, 5), torch.zeros(1, 3)], dim=1).long()
    torch.testing.assert_close(m(input_ids=right, attention_mask=rmask).logits[0, :5], ref, rtol=1e-5, atol=1e-5)


def test_decoder_is_causal():
    m, _ = base_model("tiny-decoder")
    m.eval()
    ids = torch.randint(7, 64, (1, 8))
    changed = ids.clone()
    changed[0, 5] = (changed[0, 5] + 1) % 64
    a, b = m(input_ids=ids).logits, m(input_ids=changed).logits
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_generate_matches_the_data_package_greedy_decoder():
    m, _ = base_model("tiny-decoder")
    m.eval()
    prompts = [[9, 10, 11], [12, 13, 14, 15, 16]]
    want = data_greedy_generate(m, prompts, max_new_tokens=6, eos_id=None, pad_id=0)
    width = 5
    ids = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    out = m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, eos_token_id=None)
    assert out[:, width:].tolist() == want


def test_config_errors():
    with pytest.raises(ConfigError, match='model.config.hiden_size: unknown setting .*did you mean "hidden_size"'):
        model_info({"name": "tiny-encoder", "source": "builtin", "task": "seq-cls", "config": {"hiden_size": 8}})
    with pytest.raises(ConfigError, match="model.task: tiny-vit is a img-cls model"):
        model_info({"name": "tiny-vit", "source": "builtin", "task": "seq-cls", "config": {}})
    with pytest.raises(ConfigError, match='did you mean "tiny-decoder"'):
        model_info({"name": "tiny-decodr", "source": "builtin", "task": "causal-lm", "config": {}})
