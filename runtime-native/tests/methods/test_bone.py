"""Bone / MiSS-specific properties (the conformance suite covers the generic contract, default variant)."""
import pytest
import torch
from torch import nn

from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods.base import adapt_model
from rankflow_runtime.methods.bone import Bone, bat_delta


class _Net(nn.Module):
    def __init__(self, d_in=12, d_hid=16, d_out=8):
        super().__init__()
        self.a = nn.Linear(d_in, d_hid)
        self.b = nn.Linear(d_hid, d_out)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _adapted(r=4, options=None, dims=(12, 16, 8), dtype=torch.float64):
    torch.manual_seed(0)
    net = _Net(*dims).to(dtype)
    _, formula = adapt_model(net, Bone(r, options or {}), ["a", "b"], None, False)
    return net, formula


def _randomize(net, scale=0.1):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


@pytest.mark.parametrize("variant,want", [("balance", 4 * 16 + 4 * 8), ("bat", 4 * 16 + 4 * 8), ("mini", 4 * 2 * 2)])
def test_counts(variant, want):
    net, formula = _adapted(options={"variant": variant, "mini_r": 2})
    assert formula == want == sum(p.numel() for p in net.parameters() if p.requires_grad)
    # PEFT's logged Llama-3.2-3B q/v count at r = 64: 7,340,032
    assert Bone(64, {}).count([(3072, 3072), (1024, 3072)] * 28) == 7_340_032


@pytest.mark.parametrize("d_in", [12, 10])  # 10: the input is zero-padded to a multiple of r
def test_balance_update_is_block_shared(d_in):
    net, _ = _adapted(dims=(d_in, 16, 8))
    _randomize(net)
    layer = net.a
    dw = layer.delta_weight()
    d = layer.bone_block  # (r, d_out)
    for j in range(d_in):
        torch.testing.assert_close(dw[:, j], d[j % 4])
    assert torch.linalg.matrix_rank(dw) <= 4
    x = torch.randn(3, 5, d_in, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ (layer.base.weight + dw).t() + layer.base.bias)


def test_mini_shares_along_output_too():
    net, _ = _adapted(options={"variant": "mini", "mini_r": 2})
    _randomize(net)
    dw = net.a.delta_weight()
    assert dw.shape == (16, 12)
    for i in range(16):
        torch.testing.assert_close(dw[i], dw[i % 2])
    x = torch.randn(4, 12, dtype=torch.float64)
    torch.testing.assert_close(net.a(x), x @ (net.a.base.weight + dw).t() + net.a.base.bias)


def test_bat_is_block_affine_in_w0_and_unmerges_exactly():
    net, _ = _adapted(options={"variant": "bat"})
    _randomize(net)
    layer = net.a
    w0 = layer.base.weight.detach().clone()
    d = layer.bone_block
    dw = layer.delta_weight()
    # block (p, q) of ΔW equals W0_{p,q} D_p + D_p
    for p in range(16 // 4):
        for q in range(12 // 4):
            blk = w0[p * 4:(p + 1) * 4, q * 4:(q + 1) * 4]
            torch.testing.assert_close(dw[p * 4:(p + 1) * 4, q * 4:(q + 1) * 4], blk @ d[p] + d[p])
    # the update depends on the frozen weight (weight guide)
    assert not torch.allclose(bat_delta(2 * w0, d), dw)
    x = torch.randn(6, 12, dtype=torch.float64)
    y = layer(x)
    torch.testing.assert_close(y, x @ (w0 + dw).t() + layer.base.bias)
    layer.merge()
    torch.testing.assert_close(layer(x), y)
    layer.unmerge()
    torch.testing.assert_close(layer.base.weight, w0, rtol=0, atol=1e-12)


def test_gradients_reach_the_block():
    net, _ = _adapted(options={"variant": "bat"}, dtype=torch.float32)
    net(torch.randn(3, 12)).square().sum().backward()
    assert net.a.bone_block.grad.abs().sum() > 0  # ΔW = W·D + D: non-zero gradient although D = 0
    net, _ = _adapted(dtype=torch.float32)
    net(torch.randn(3, 12)).square().sum().backward()
    assert net.b.bone_block.grad.abs().sum() > 0


def test_shape_errors_are_clear():
    with pytest.raises(ConfigError, match="Bone bat needs the weight of a .* 5x5 blocks"):
        _adapted(r=5, options={"variant": "bat"}, dims=(12, 16, 8))
    with pytest.raises(ConfigError, match="mini_r: 3 does not divide d_out = 16 of a"):
        _adapted(options={"variant": "mini", "mini_r": 3})


def test_meta_device_setup():
    with torch.device("meta"):
        net = _Net()
    _, formula = adapt_model(net, Bone(4, {"variant": "bat"}), ["a", "b"], None, False)
    assert formula == 4 * 16 + 4 * 8 and net.a.bone_block.is_meta


def test_resume_through_the_training_loop_is_bit_identical(assert_resume_is_bit_identical):
    """Stop after 3 of 6 steps, resume from the checkpoint: the losses equal an uninterrupted run bit for bit
    (the frozen state is rebuilt from the spec, not stored)."""
    assert_resume_is_bit_identical("bone", {"variant": "bat"})
