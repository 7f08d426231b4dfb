"""PiSSA-specific properties (the conformance suite covers the generic contract)."""
import pytest
import torch
from torch import nn

from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods.base import adapt_model, adapter_state_dict
from rankflow_runtime.methods.pissa import PiSSA


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(12, 20)
        self.b = nn.Linear(20, 8)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _decaying(net):
    """Weights with a fast-decaying spectrum, like pretrained ones (random inits have a flat spectrum)."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for lin in (net.a, net.b):
            o, i = lin.weight.shape
            q1, _ = torch.linalg.qr(torch.randn(o, o, generator=g, dtype=torch.float64))
            q2, _ = torch.linalg.qr(torch.randn(i, i, generator=g, dtype=torch.float64))
            k = min(o, i)
            lin.weight.copy_(q1[:, :k] @ torch.diag(0.5 ** torch.arange(k, dtype=torch.float64)) @ q2[:, :k].t())
    return net


def _pair(r=4, options=None, dtype=torch.float64):
    torch.manual_seed(0)
    ref = _decaying(_Net().to(dtype))
    torch.manual_seed(0)
    net = _decaying(_Net().to(dtype))
    meth = PiSSA(r, options or {})
    _, formula = adapt_model(net, meth, ["a", "b"], None, False)
    return ref, net, formula


def test_residual_plus_ba_equals_w0_and_model_equals_base():
    ref, net, formula = _pair()
    assert formula == 4 * (12 + 20) + 4 * (20 + 8)
    for name in ("a", "b"):
        layer, w0 = getattr(net, name), getattr(ref, name).weight
        torch.testing.assert_close(layer.base.weight + layer.scaling * layer.lora_B @ layer.lora_A, w0)
        assert not torch.allclose(layer.base.weight, w0)  # the base really holds the residual
    x = torch.randn(5, 12, dtype=torch.float64)
    torch.testing.assert_close(net(x), ref(x))


@pytest.mark.parametrize("alpha", [None, 8.0])
def test_factors_are_the_principal_part(alpha):
    ref, net, _ = _pair(r=3, options={"alpha": alpha} if alpha else {})
    layer, w0 = net.a, ref.a.weight
    s_all = torch.linalg.svdvals(w0)
    top = layer.scaling * layer.lora_B @ layer.lora_A
    # s·BA is the best rank-r approximation: the residual's spectral norm is σ_{r+1}
    assert torch.linalg.matrix_rank(top) == 3
    torch.testing.assert_close(torch.linalg.matrix_norm(w0 - top, ord=2), s_all[3])
    torch.testing.assert_close(torch.linalg.svdvals(top)[:3], s_all[:3])
    # A = diag(√(S_r/s)) V_rᵀ and B = U_r diag(√(S_r/s)): orthogonal rows / columns with norms² = S_r/s
    gram_a = layer.lora_A @ layer.lora_A.t()
    gram_b = layer.lora_B.t() @ layer.lora_B
    torch.testing.assert_close(gram_a, torch.diag(s_all[:3] / layer.scaling))
    torch.testing.assert_close(gram_b, torch.diag(s_all[:3] / layer.scaling))
    assert layer.scaling == pytest.approx((alpha or 3.0) / 3)


def test_fast_svd_is_close_and_deterministic():
    ref, full, _ = _pair(r=3)
    _, fast1, _ = _pair(r=3, options={"svd_niter": 8})
    _, fast2, _ = _pair(r=3, options={"svd_niter": 8})
    assert torch.equal(fast1.a.base.weight, fast2.a.base.weight)  # seeded: a resume recomputes the same residual
    torch.testing.assert_close(fast1.a.base.weight, full.a.base.weight, rtol=0, atol=1e-4)
    x = torch.randn(4, 12, dtype=torch.float64)
    torch.testing.assert_close(fast1(x), ref(x))


def test_init_factors_kept_out_of_checkpoints():
    _, net, _ = _pair()
    assert torch.equal(net.a.init_A, net.a.lora_A) and torch.equal(net.a.init_B, net.a.lora_B)
    keys = adapter_state_dict(net)
    assert not any("init_A" in k or "init_B" in k for k in keys)
    assert {"a.lora_A", "a.lora_B", "b.lora_A", "b.lora_B"} <= set(keys)


def test_rank_above_layer_size_is_a_clear_error():
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="PiSSA rank 9 exceeds min\\(d_out, d_in\\) = 8 of layer b"):
        adapt_model(_Net(), PiSSA(9, {}), ["a", "b"], None, False)


def test_meta_device_setup_skips_svd():
    with torch.device("meta"):
        net = _Net()
    _, formula = adapt_model(net, PiSSA(4, {}), ["a", "b"], None, False)
    assert formula == 4 * 32 + 4 * 28 and net.a.lora_A.is_meta


def test_resume_through_the_training_loop_is_bit_identical(assert_resume_is_bit_identical):
    """Stop after 3 of 6 steps, resume from the checkpoint: the losses equal an uninterrupted run bit for bit
    (the frozen state (the SVD residual and the initial factors) is rebuilt from the spec, not stored)."""
    assert_resume_is_bit_identical("pissa", {"dropout": 0.1})
