"""SVFit property tests: exactly r singular values train, and they ARE the top singular values of the adapted
weight (U_r, V_r and the residual W_e stay fixed)."""
import torch
from torch import nn

from rankflow_runtime.methods.base import adapted_layers, trainable_numel
from rankflow_runtime.methods.svfit import SVFit
from rankflow_runtime.testing import adapted_model, synthetic_batch, train_steps


def test_trains_exactly_r_numbers_per_layer():
    m, meth, _, formula = adapted_model("tiny-vit", "svfit", rank=3)
    layers = adapted_layers(m)
    for lay in layers:
        assert [n for n, p in lay.named_parameters() if p.requires_grad] == ["sigma"]
        assert lay.sigma.numel() == 3
    assert trainable_numel(m) == formula == 3 * len(layers)


def test_rank_is_clamped_per_layer():
    m, _, _, formula = adapted_model("tiny-decoder", "svfit", rank=64, targets=["v_proj"])  # 16 x 32
    assert [lay.sigma.numel() for lay in adapted_layers(m)] == [16, 16] and formula == 32


def test_initial_sigma_are_the_top_singular_values():
    torch.manual_seed(0)
    base = nn.Linear(12, 9)
    lay = SVFit(rank=4).wrap("x", base, None)
    torch.testing.assert_close(lay.sigma.detach(), torch.linalg.svdvals(base.weight.detach())[:4])
    assert torch.count_nonzero(lay.delta_weight()) == 0


def test_trained_values_are_the_singular_values_of_the_adapted_weight():
    torch.manual_seed(0)
    base = nn.Linear(12, 9)
    w0 = base.weight.detach().clone()
    lay = SVFit(rank=3).wrap("x", base, None)
    with torch.no_grad():
        lay.sigma.mul_(torch.tensor([2.0, 1.7, 1.5]))  # stays above the frozen tail
    w = w0 + lay.delta_weight()
    sv = torch.linalg.svdvals(w)
    torch.testing.assert_close(sv[:3], lay.sigma.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sv[3:], torch.linalg.svdvals(w0)[3:], atol=1e-5, rtol=1e-5)  # W_e untouched
    # the update lives in span(U_r) x span(V_r) and is diagonal there
    U, Vh = lay.U, lay.Vh
    torch.testing.assert_close(w - w0 - U @ (U.t() @ (w - w0) @ Vh.t()) @ Vh, torch.zeros_like(w), atol=1e-5, rtol=0)
    core = U.t() @ (w - w0) @ Vh.t()
    torch.testing.assert_close(core - torch.diag(torch.diagonal(core)), torch.zeros(3, 3), atol=1e-5, rtol=0)


def test_training_moves_only_sigma():
    m, meth, _, _ = adapted_model("tiny-encoder", "svfit", rank=2)
    bufs = {n: b.clone() for n, b in m.named_buffers()}
    s0 = [lay.sigma.detach().clone() for lay in adapted_layers(m)]
    train_steps(m, meth, synthetic_batch("tiny-encoder"), steps=3, lr=0.05)
    assert all(torch.equal(b, bufs[n]) for n, b in m.named_buffers())
    assert any(not torch.equal(a, lay.sigma) for a, lay in zip(s0, adapted_layers(m)))
