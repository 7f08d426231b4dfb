"""SALT property tests: the parameter count 2r + 2·r_L·(k − r), the equivalence with the official
U·ReLU(Σ')·Vᵀ reconstruction, the ReLU clipping, both inits and the regulariser."""
import pytest
import torch
from torch import nn

from rankflow_runtime.methods.base import TrainContext, adapted_layers, trainable_numel
from rankflow_runtime.methods.salt import SALT
from rankflow_runtime.testing import adapted_model


@pytest.mark.parametrize("rank,r_lora", [(2, 3), (4, 8), (100, 2)])
def test_count_is_2r_plus_2_rl_times_k_minus_r(rank, r_lora):
    m, meth, _, formula = adapted_model("tiny-decoder", "salt", rank=rank, options={"r_lora": r_lora})
    for lay in adapted_layers(m):
        k = min(lay.out_features, lay.in_features)
        r = min(rank, k)
        n = sum(p.numel() for p in lay.parameters() if p.requires_grad)
        assert n == 2 * r + 2 * r_lora * (k - r)
    assert trainable_numel(m) == formula
    # methods.md example: 4096 x 4096, r = 32, r_L = 8 -> 65,088
    assert SALT(rank=32, options={"r_lora": 8}).layer_count(4096, 4096) == 65088


def _official_weight(lay):
    """The official SALTLinear forward weight: U · ReLU(Σ') · Vᵀ with Σ' assembled as a dense k x k matrix."""
    r, S = lay.r, lay.S
    new_s = torch.diag(S).clone()
    new_s[:r, :r] = torch.diag(lay.trainable_scale_A * S[:r] + lay.trainable_shift_B)
    if lay.trainable_X is not None:
        new_s[r:, r:] += lay.trainable_X @ lay.trainable_Y
    return lay.U @ torch.relu(new_s) @ lay.Vh


@pytest.mark.parametrize("shape", [(10, 10), (6, 10), (10, 6)])
def test_forward_equals_official_reconstruction(shape):
    torch.manual_seed(0)
    base = nn.Linear(shape[1], shape[0])
    lay = SALT(rank=3, options={"r_lora": 2}).wrap("x", base, None)
    with torch.no_grad():
        lay.trainable_scale_A.add_(torch.randn(3) * 0.3)
        lay.trainable_shift_B.add_(torch.randn(3) * 0.1)
        lay.trainable_X.mul_(50)
        lay.trainable_Y.mul_(50)  # large enough that some XY entries are clipped by the ReLU
        w = _official_weight(lay)
        x = torch.randn(4, shape[1])
        torch.testing.assert_close(lay(x), x @ w.t() + base.bias, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(base.weight + lay.delta_weight(), w, atol=1e-5, rtol=1e-4)


def test_relu_clips_a_singular_value_at_zero():
    torch.manual_seed(0)
    base = nn.Linear(8, 8)
    lay = SALT(rank=2, options={"init": "kaiming_zero"}).wrap("x", base, None)
    with torch.no_grad():
        lay.trainable_shift_B[0] = -3 * lay.S[0]  # a·σ + b < 0 -> ReLU -> 0, not negative
        w = base.weight + lay.delta_weight()
    u1, v1 = lay.U[:, 0], lay.Vh[0]
    assert abs(float(u1 @ w @ v1)) < 1e-5
    torch.testing.assert_close(float(lay.U[:, 1] @ w @ lay.Vh[1]), float(lay.S[1]), atol=1e-5, rtol=1e-5)


def test_inits():
    torch.manual_seed(0)
    base = nn.Linear(12, 12)
    zero = SALT(rank=3, options={"init": "kaiming_zero", "r_lora": 4}).wrap("x", base, None)
    assert torch.count_nonzero(zero.delta_weight()) == 0  # Y = 0: starts equal to W0
    assert zero.trainable_X.abs().max() > 0
    rnd = SALT(rank=3, options={"r_lora": 4}).wrap("x", base, None)
    assert 0 < rnd.trainable_X.std() < 0.02 and 0 < rnd.trainable_Y.std() < 0.02  # randn * 0.01
    assert rnd.delta_weight().abs().max() > 0


def test_regulariser_matches_the_official_terms():
    m, meth, _, _ = adapted_model("tiny-encoder", "salt", rank=2, options={"reg_multiplier": 0.5})
    layers = adapted_layers(m)
    with torch.no_grad():
        for lay in layers:
            lay.trainable_scale_A.add_(0.1)
    ctx = TrainContext(model=m, step=0, total_steps=1)
    want = 0.0
    for lay in layers:
        k = lay.k
        ss = torch.zeros(k, k)
        ss[:2, :2] = torch.diag(lay.trainable_scale_A * lay.S[:2] + lay.trainable_shift_B) - torch.diag(lay.S[:2])
        want += float((torch.norm(ss) + torch.norm(lay.trainable_X @ lay.trainable_Y)).detach())
    assert abs(float(meth.extra_loss(ctx).detach()) - 0.5 * want) < 1e-4
    m2, meth2, _, _ = adapted_model("tiny-encoder", "salt", rank=2)
    assert meth2.extra_loss(TrainContext(model=m2, step=0, total_steps=1)) is None


@pytest.mark.parametrize("init", ["randn", "kaiming_zero"])
def test_init_seed_reproduces_the_official_per_layer_seeding(init):
    """init_seed 42: every layer's X, Y equal what the official SALTLinear draws after torch.manual_seed(42), so
    same-shape layers start identical; the default draws differ between layers and between run seeds."""
    m, _, _, _ = adapted_model("tiny-encoder", "salt", rank=4, options={"init": init, "init_seed": 42})
    layers = adapted_layers(m)
    rest, r_l = layers[0].k - layers[0].r, 8
    state = torch.get_rng_state()
    torch.manual_seed(42)  # the official draws
    if init == "randn":
        want_x, want_y = torch.randn(rest, r_l) * 0.01, torch.randn(r_l, rest) * 0.01
    else:
        want_x, want_y = torch.empty(rest, r_l), torch.zeros(r_l, rest)
        nn.init.kaiming_uniform_(want_x, a=20 ** 0.5, mode="fan_in", nonlinearity="relu")
    torch.set_rng_state(state)
    square = [lay for lay in layers if lay.k - lay.r == rest and lay.trainable_X.shape == want_x.shape]
    assert len(square) >= 2  # query and value of both blocks
    for lay in square:
        assert torch.equal(lay.trainable_X.detach(), want_x) and torch.equal(lay.trainable_Y.detach(), want_y)
    if init == "randn":
        d0, _, _, _ = adapted_model("tiny-encoder", "salt", rank=4, options={"init": init})
        d1, _, _, _ = adapted_model("tiny-encoder", "salt", rank=4, options={"init": init}, seed=1)
        x0 = [lay.trainable_X.detach() for lay in adapted_layers(d0)]
        assert not torch.equal(x0[0], x0[1])
        assert not torch.equal(x0[0], adapted_layers(d1)[0].trainable_X.detach())
