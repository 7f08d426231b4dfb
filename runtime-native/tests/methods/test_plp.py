"""PLP (Break-for-Make) property tests: half of down's columns and half of up's rows are frozen, the frozen halves
are rows of one orthonormal-column basis (orthonormal when they use all of it) and stay unchanged through training
(even under AdamW weight decay), the count, the parameter groups, and equality with the official masked-gradient
LoRA for an SGD step."""
import torch
from torch import nn

from rankflow_runtime.methods.base import adapted_layers, trainable_numel
from rankflow_runtime.methods.plp import PLP, orthogonal_basis
from rankflow_runtime.testing import adapted_model, synthetic_batch


def _stacked(lay):
    return torch.cat([lay.down_frozen.t(), lay.up_frozen], dim=0)  # (h_in + h_out) x r


def test_count_and_frozen_halves():
    m, meth, _, formula = adapted_model("tiny-decoder", "plp", rank=4)
    for lay in adapted_layers(m):
        d_in, d_out = lay.in_features, lay.out_features
        assert lay.down_frozen.shape == (4, d_in // 2) and lay.up_frozen.shape == (d_out // 2, 4)
        assert lay.down().shape == (4, d_in) and lay.up().shape == (d_out, 4)
        assert sum(p.numel() for p in lay.parameters() if p.requires_grad) == 4 * ((d_in - d_in // 2) + (d_out - d_out // 2))
        assert not lay.down_frozen.requires_grad and not lay.up_frozen.requires_grad
    assert trainable_numel(m) == formula


def test_frozen_halves_stay_orthogonal_and_unchanged_after_training():
    # basis_rows=0: O has exactly h_in + h_out rows, so the two frozen blocks together are all of O.
    m, meth, _, _ = adapted_model("tiny-encoder", "plp", rank=4, options={"basis_rows": 0}, targets=["query", "value"])
    layers = adapted_layers(m)
    eye = torch.eye(4)
    before = [(l.down_frozen.clone(), l.up_frozen.clone(), l.down_learn.detach().clone()) for l in layers]
    for l in layers:
        s = _stacked(l)
        torch.testing.assert_close(s.t() @ s, eye, atol=1e-5, rtol=0)
        assert l.up_frozen.abs().sum() > 0  # the prior, not the zero LoRA init
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)  # official recipe has weight decay
    batch = synthetic_batch("tiny-encoder")
    m.train()
    for _ in range(3):
        m(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    for l, (df, uf, dl) in zip(layers, before):
        assert torch.equal(l.down_frozen, df) and torch.equal(l.up_frozen, uf)
        assert not torch.equal(l.down_learn.detach(), dl)
        s = _stacked(l)
        torch.testing.assert_close(s.t() @ s, eye, atol=1e-5, rtol=0)


def test_default_basis_has_disjoint_orthonormal_rows():
    torch.manual_seed(0)
    lay = PLP(rank=8).wrap("q", nn.Linear(64, 64), None)
    s = _stacked(lay)  # 64 rows of a 1280 x 8 orthonormal-column matrix: a contraction, and no repeated row
    assert torch.linalg.matrix_norm(s, ord=2) <= 1 + 1e-5
    assert torch.unique(s, dim=0).shape[0] == 64
    g = torch.Generator().manual_seed(3)
    o = orthogonal_basis(1280, 8, g)
    torch.testing.assert_close(o.t() @ o, torch.eye(8), atol=1e-5, rtol=0)


def test_prior_rules_and_lora_init_elsewhere():
    m, _, _, _ = adapted_model("tiny-encoder", "plp", rank=4)  # query/value square, fc1 32 -> 48 not
    for lay in adapted_layers(m):
        if lay.in_features == lay.out_features:
            assert lay.up_frozen.abs().sum() > 0
        else:  # official non-square layer: frozen up half stays 0, so those output rows never change
            assert torch.count_nonzero(lay.up_frozen) == 0
            assert torch.count_nonzero(lay.delta_weight()[: lay.out_features // 2]) == 0
        assert torch.count_nonzero(lay.up_learn) == 0
        assert 0.1 < float(lay.down_learn.detach().std()) * 4 < 10  # N(0, std 1/r)
    m2, _, _, _ = adapted_model("tiny-encoder", "plp", rank=4, options={"orthogonal_prior": "none"})
    assert all(torch.count_nonzero(l.delta_weight()) == 0 for l in adapted_layers(m2))


def test_up_half_is_its_own_lr_group():
    m, meth, _, _ = adapted_model("tiny-encoder", "plp", rank=2)
    groups = {n.rsplit(".", 1)[-1]: meth.group_of(n) for n, p in m.named_parameters() if p.requires_grad}
    assert groups == {"down_learn": "default", "up_learn": "up"} and meth.lr_groups == ("up",)


def test_sgd_step_equals_official_masked_gradient_lora():
    torch.manual_seed(0)
    lay = PLP(rank=3, options={"orthogonal_prior": "all"}).wrap("q", nn.Linear(10, 8), None)
    with torch.no_grad():
        lay.up_learn.normal_()
    # Official form: full down/up parameters, gradient hooks zero the first half columns/rows.
    down = nn.Parameter(lay.down().detach().clone())
    up = nn.Parameter(lay.up().detach().clone())
    cmask = torch.ones(1, 10)
    cmask[:, :5] = 0
    rmask = torch.ones(8, 1)
    rmask[:4] = 0
    down.register_hook(lambda g: g * cmask)
    up.register_hook(lambda g: g * rmask)
    x = torch.randn(6, 10)
    with torch.no_grad():
        base_out = lay.base(x)
    ours = lay(x)
    official = base_out + (x @ down.t()) @ up.t()
    torch.testing.assert_close(ours, official)
    ours.pow(2).sum().backward()
    official.pow(2).sum().backward()
    for p_ours, p_off in ((lay.down_learn, down), (lay.up_learn, up)):
        with torch.no_grad():
            p_ours -= 0.1 * p_ours.grad
            p_off -= 0.1 * p_off.grad
    torch.testing.assert_close(lay.down().detach(), down.detach())
    torch.testing.assert_close(lay.up().detach(), up.detach())
