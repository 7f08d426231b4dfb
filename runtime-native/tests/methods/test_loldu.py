"""LoLDU property tests: only the LDU diagonal trains, the factors are an exact pivoted LDU of W0, and the
low-rank branch equals the official dense formulation W_res + s·P L_r diag(z) U_r."""
import pytest
import torch
from torch import nn

from rankflow_runtime.methods.base import adapted_layers, trainable_numel
from rankflow_runtime.methods.loldu import ldu_factors
from rankflow_runtime.testing import adapted_model, synthetic_batch, train_steps


def _layers(m):
    return list(adapted_layers(m))


@pytest.mark.parametrize("train_scale", [False, True])
def test_trains_exactly_r_or_r_plus_one_numbers_per_layer(train_scale):
    m, meth, _, formula = adapted_model("tiny-decoder", "loldu", rank=3, options={"train_scale": train_scale})
    layers = _layers(m)
    assert layers
    per_layer = 3 + (1 if train_scale else 0)
    for lay in layers:
        names = sorted(n for n, p in lay.named_parameters() if p.requires_grad)
        assert names == (["scaling", "vector_z"] if train_scale else ["vector_z"])
        assert sum(p.numel() for p in lay.parameters() if p.requires_grad) == per_layer
    assert trainable_numel(m) == formula == per_layer * len(layers)


def test_rank_is_clamped_to_the_smaller_dimension():
    # tiny-decoder v_proj is 16 x 32: r = 100 trains 16 numbers there, 32 in the 32 x 32 q_proj.
    m, meth, _, formula = adapted_model("tiny-decoder", "loldu", rank=100, targets=["q_proj", "v_proj"])
    counts = sorted(lay.vector_z.numel() for lay in _layers(m))
    assert counts == [16, 16, 32, 32] and formula == 96


@pytest.mark.parametrize("shape", [(12, 12), (7, 12), (12, 7)])
def test_factors_are_an_exact_pivoted_ldu(shape):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(*shape, generator=g, dtype=torch.float64)
    k = min(shape)
    PL, D, U = ldu_factors(w, k)
    torch.testing.assert_close((PL @ torch.diag(D) @ U).double(), w, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.diagonal(U), torch.ones(k))  # unit upper triangular
    assert torch.equal(torch.triu(U), U)
    # P L_r: a row permutation of a unit lower-triangular matrix (partial pivoting: |L| <= 1).
    assert PL.abs().max() <= 1 + 1e-6


def test_zero_pivot_keeps_the_decomposition_exact():
    w = torch.randn(6, 6)
    w[:, 2] = w[:, 0] * 2.0  # rank-deficient: a zero pivot appears
    PL, D, U = ldu_factors(w, 6)
    assert torch.isfinite(PL).all() and torch.isfinite(U).all() and torch.isfinite(D).all()
    torch.testing.assert_close(PL @ torch.diag(D) @ U, w, atol=1e-5, rtol=1e-5)


def test_branch_equals_official_dense_formulation():
    torch.manual_seed(0)
    base = nn.Linear(10, 8)
    w0 = base.weight.detach().clone()
    from rankflow_runtime.methods.loldu import LoLDU
    meth = LoLDU(rank=3, options={"train_scale": True, "alpha": 2.0})
    lay = meth.wrap("x", base, None)
    with torch.no_grad():
        lay.vector_z.add_(torch.randn(3))
        lay.scaling.mul_(1.7)
    # Official: dense P from LU, residual with the initial z = D_r and s0, then W_res + s·P L_r diag(z) U_r.
    P, L, Ufull = torch.linalg.lu(w0)
    D = torch.diagonal(Ufull)
    Un = Ufull / D.unsqueeze(-1)
    s0 = 2.0 / 3
    w_res = w0 - s0 * P @ L[:, :3] @ torch.diag(D[:3]) @ Un[:3]
    w_official = w_res + lay.scaling.detach() * P @ L[:, :3] @ torch.diag(lay.vector_z.detach()) @ Un[:3]
    x = torch.randn(5, 10)
    with torch.no_grad():
        torch.testing.assert_close(lay(x), x @ w_official.t() + base.bias, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(w0 + lay.delta_weight(), w_official, atol=1e-5, rtol=1e-5)


def test_training_changes_only_z_and_the_update_stays_rank_r():
    m, meth, _, _ = adapted_model("tiny-encoder", "loldu", rank=2)
    before = {n: b.clone() for n, b in m.named_buffers()}
    train_steps(m, meth, synthetic_batch("tiny-encoder"), steps=3, lr=0.05)
    for n, b in m.named_buffers():
        assert torch.equal(b, before[n]), n
    for lay in _layers(m):
        dw = lay.delta_weight()
        assert dw.abs().max() > 0
        sv = torch.linalg.svdvals(dw.double())
        assert (sv[2:] <= 1e-5 * sv[0]).all()  # rank <= r


def test_meta_setup_has_shapes_only():
    with torch.device("meta"):
        base = nn.Linear(20, 12)
    from rankflow_runtime.methods.loldu import LoLDU
    lay = LoLDU(rank=5).wrap("x", base, None)
    assert lay.vector_z.is_meta and lay.vector_z.shape == (5,)
    assert lay.PL.shape == (12, 5) and lay.U.shape == (5, 20)
