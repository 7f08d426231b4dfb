"""NOLA-specific properties (the conformance suite covers the generic contract)."""
import math

import pytest
import torch
from torch import nn

from rankflow_runtime.methods.base import adapt_model, adapter_state_dict
from rankflow_runtime.methods.nola import NOLA, _Combine, _keys, basis_chunk, hash_uniform


class _Net(nn.Module):
    def __init__(self, d_in=12, d_hid=20, d_out=6):
        super().__init__()
        self.a = nn.Linear(d_in, d_hid)
        self.b = nn.Linear(d_hid, d_out)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _adapted(r=4, options=None, dims=(12, 20, 6), seed=0, dtype=torch.float32):
    torch.manual_seed(0)
    net = _Net(*dims).to(dtype)
    opts = {"num_basis_a": 32, "num_basis_b": 24}
    opts.update(options or {})
    _, formula = adapt_model(net, NOLA(r, opts, seed), ["a", "b"], None, False)
    return net, formula


def test_count_does_not_depend_on_rank_or_width():
    counts = set()
    for r in (1, 4, 8):
        for dims in [(12, 20, 6), (40, 64, 9)]:
            net, formula = _adapted(r=r, dims=dims)
            assert formula == sum(p.numel() for p in net.parameters() if p.requires_grad)
            counts.add(formula)
    assert counts == {2 * (32 + 24)}
    assert NOLA(8, {}).count([(4096, 4096)] * 3) == 3 * 1024  # default k_A = k_B = 512


def test_only_coefficients_in_checkpoint_and_bases_regenerate():
    net, _ = _adapted()
    keys = set(adapter_state_dict(net))
    assert keys == {"a.nola_alpha", "a.nola_beta", "b.nola_alpha", "b.nola_beta"}
    # A fresh build with the same seed regenerates the same A0 and bases; another seed different ones.
    net2, _ = _adapted()
    assert torch.equal(net.a.lora_A0, net2.a.lora_A0)
    net3, _ = _adapted(seed=1)
    assert not torch.equal(net.a.lora_A0, net3.a.lora_A0)
    assert not torch.equal(net.a.lora_A0, net.b.lora_A0[:, :12])  # per-module seeds
    bound = 1 / math.sqrt(12)
    assert net.a.lora_A0.abs().max() <= bound and net.a.lora_A0.abs().max() > 0.8 * bound


def test_frozen_offset_gives_beta_a_gradient_at_start():
    net, _ = _adapted()
    x = torch.randn(5, 12)
    torch.testing.assert_close(net.a.delta_weight(), torch.zeros(20, 12))
    net(x).square().sum().backward()
    for layer in (net.a, net.b):
        assert layer.nola_beta.grad.abs().sum() > 0  # ∂L/∂B ∝ A0 x ≠ 0
        assert layer.nola_alpha.grad.abs().sum() == 0  # B = 0 at the start


def test_regenerating_backward_matches_cached_autograd():
    net_regen, _ = _adapted(dtype=torch.float64, options={"cache_mb": 0.0})
    net_cache, _ = _adapted(dtype=torch.float64, options={"cache_mb": 1.0})
    assert not net_regen.a.cache_bases and net_cache.a.cache_bases
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for (n1, p1), (n2, p2) in zip(net_regen.named_parameters(), net_cache.named_parameters()):
            if p1.requires_grad:
                p1.copy_(torch.randn(p1.shape, generator=g, dtype=p1.dtype) * 0.1)
                p2.copy_(p1)
    x = torch.randn(7, 12, dtype=torch.float64)
    y1, y2 = net_regen(x), net_cache(x)
    torch.testing.assert_close(y1, y2)
    y1.square().sum().backward()
    y2.square().sum().backward()
    for p1, p2 in zip(net_regen.parameters(), net_cache.parameters()):
        if p1.requires_grad:
            torch.testing.assert_close(p1.grad, p2.grad)


def test_combine_gradcheck_and_chunking():
    c = torch.randn(10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: _Combine.apply(v, 77, (3, 5), 4), (c,))
    whole = _Combine.apply(c, 77, (3, 5), 10)
    for chunk in (1, 3, 7):
        torch.testing.assert_close(_Combine.apply(c, 77, (3, 5), chunk), whole)
    want = (c[:, None] * basis_chunk(77, 10, 15, 0, 10, "cpu", torch.float64)).sum(0).view(3, 5)
    torch.testing.assert_close(whole, want)


def test_delta_weight_is_scaled_product_of_factors():
    net, _ = _adapted(r=3, options={"alpha": 6.0})
    with torch.no_grad():
        net.a.nola_alpha.normal_()
        net.a.nola_beta.normal_()
    a, b = net.a.factors()
    assert a.shape == (3, 12) and b.shape == (20, 3)
    torch.testing.assert_close(net.a.delta_weight(), 2.0 * b @ a)
    x = torch.randn(4, 12)
    torch.testing.assert_close(net.a(x), x @ (net.a.base.weight + 2.0 * b @ a).t() + net.a.base.bias)


def _fmix_ref(h):
    m = 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    return h ^ (h >> 16)


@pytest.mark.parametrize("start", [0, (1 << 31) - 3, (1 << 32) - 2])
def test_hash_generator_equals_pure_integer_reference(start):
    """The generator is integer arithmetic only (so it is the same on every device): compare it with a
    pure-Python evaluation, including across the int32 sign boundary and the 2^32 segment boundary."""
    seed = 123456789012345
    got = hash_uniform(seed, start, 5, "cpu")
    for j in range(5):
        idx = start + j
        k1, k2 = _keys(seed, idx >> 32)
        h = _fmix_ref((idx & 0xFFFFFFFF) ^ (k1 & 0xFFFFFFFF))
        h = _fmix_ref((h + (k2 & 0xFFFFFFFF)) & 0xFFFFFFFF)
        assert got[j].item() == ((h >> 8) & 0xFFFFFF) * (2.0 / 16777216.0) - 1.0


def test_hash_generator_distribution():
    u = hash_uniform(5, 0, 200_000, "cpu")
    assert -1.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item()) < 0.01 and u.var().item() == pytest.approx(1 / 3, rel=0.02)
    v = hash_uniform(6, 0, 200_000, "cpu")
    assert abs(torch.corrcoef(torch.stack([u, v]))[0, 1].item()) < 0.01


def test_meta_device_setup():
    with torch.device("meta"):
        net = _Net()
    _, formula = adapt_model(net, NOLA(4, {"num_basis_a": 10, "num_basis_b": 20}), ["a", "b"], None, False)
    assert formula == 60 and net.a.nola_alpha.is_meta


def test_cache_only_for_small_layers():
    # (32·4·12 + 24·20·4) floats = 13,824 B for layer a
    net, _ = _adapted(options={"cache_mb": 13_824 / 2 ** 20})
    assert net.a.cache_bases
    net, _ = _adapted(options={"cache_mb": 13_000 / 2 ** 20})
    assert not net.a.cache_bases
    assert NOLA(8, {}).options.cache_mb == 16.0


def test_resume_through_the_training_loop_is_bit_identical(assert_resume_is_bit_identical):
    """Stop after 3 of 6 steps, resume from the checkpoint: the losses equal an uninterrupted run bit for bit
    (the frozen state (A0 and the bases regenerated from the per-module seeds) is rebuilt from the spec, not stored)."""
    assert_resume_is_bit_identical("nola", {"dropout": 0.1, "cache_mb": 0.0})
