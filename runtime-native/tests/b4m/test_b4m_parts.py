"""Break-for-Make's pieces: the Riemannian preconditioner against its closed form (2×2) and its identity fallback
at B = 0, RiemannianAdamW against a hand-written step, the exact merge (and its refusals), and the break groups."""
import pytest
import torch
from torch import nn

from rankflow_runtime import b4m
from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods.base import adapter_state_dict
from rankflow_runtime.testing import adapted_model


def test_preconditioner_equals_its_closed_form_on_2x2():
    a = torch.tensor([[1.0, 2.0], [0.0, 1.0]])  # A: r×d_in
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # B: d_out×r
    ga = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    gb = torch.tensor([[0.0, 1.0], [3.0, -2.0]])
    reg = 0.5
    # BᵀB = [[5, 1], [1, 1]] (+0.5 I) -> inverse of [[5.5, 1], [1, 1.5]] = [[1.5, -1], [-1, 5.5]] / 7.25
    inv_btb = torch.tensor([[1.5, -1.0], [-1.0, 5.5]]) / 7.25
    # AAᵀ = [[5, 2], [2, 1]] (+0.5 I) -> inverse of [[5.5, 2], [2, 1.5]] = [[1.5, -2], [-2, 5.5]] / 4.25
    inv_aat = torch.tensor([[1.5, -2.0], [-2.0, 5.5]]) / 4.25
    pa, pb = b4m.precondition(a, b, ga, gb, reg)
    torch.testing.assert_close(pa, inv_btb @ ga)
    torch.testing.assert_close(pb, gb @ inv_aat)
    torch.testing.assert_close(pa, torch.tensor([[1.0, -3.5], [1.75, 12.0]]) / 7.25)


def test_preconditioner_falls_back_to_identity_at_b_zero():
    a = torch.randn(3, 5)
    b = torch.zeros(4, 3)
    ga, gb = torch.randn(3, 5), torch.randn(4, 3)
    pa, pb = b4m.precondition(a, b, ga, gb, reg=0.0)  # BᵀB = 0 would be singular
    assert torch.equal(pa, ga)
    torch.testing.assert_close(pb, gb @ torch.linalg.inv(a @ a.t()))
    pa0, pb0 = b4m.precondition(torch.zeros(3, 5), b, ga, gb, reg=0.0)
    assert torch.equal(pa0, ga) and torch.equal(pb0, gb)


def test_riemannian_adamw_step_matches_hand_computation():
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(2, 3))
    b = nn.Parameter(torch.randn(4, 2))
    other = nn.Parameter(torch.randn(5))
    opt = b4m.RiemannianAdamW([a, b, other], lr=0.1, weight_decay=0.01, reg=0.1, pairs=[(a, b, lambda: (a, b))])
    a0, b0, o0 = a.detach().clone(), b.detach().clone(), other.detach().clone()
    ga, gb, go = torch.randn(2, 3), torch.randn(4, 2), torch.randn(5)
    a.grad, b.grad, other.grad = ga.clone(), gb.clone(), go.clone()
    opt.step()
    pa = torch.linalg.solve(b0.t() @ b0 + 0.1 * torch.eye(2), ga)
    pb = gb @ torch.linalg.inv(a0 @ a0.t() + 0.1 * torch.eye(2))

    def adam_first(p0, g):  # t = 1: m̂ = g, v̂ = g², step = lr·g/(|g| + eps), then decay
        p = p0 - 0.1 * g / (g.abs() + 1e-8)
        return p - 0.1 * 0.01 * p

    torch.testing.assert_close(a.detach(), adam_first(a0, pa))
    torch.testing.assert_close(b.detach(), adam_first(b0, pb))
    torch.testing.assert_close(other.detach(), adam_first(o0, go))
    assert set(opt.state[a]) == {"step", "exp_avg", "exp_avg_sq"}
    torch.testing.assert_close(opt.state[a]["exp_avg"], 0.1 * pa)


def test_riemannian_adamw_state_round_trips():
    a = nn.Parameter(torch.randn(2, 3))
    b = nn.Parameter(torch.randn(4, 2))
    opt = b4m.RiemannianAdamW([a, b], lr=0.1, pairs=[(a, b, lambda: (a, b))])
    a.grad, b.grad = torch.randn(2, 3), torch.randn(4, 2)
    opt.step()
    sd = opt.state_dict()
    opt2 = b4m.RiemannianAdamW([a, b], lr=0.1, pairs=[(a, b, lambda: (a, b))])
    opt2.load_state_dict(sd)
    for p in (a, b):
        torch.testing.assert_close(opt2.state[p]["exp_avg_sq"], opt.state[p]["exp_avg_sq"])


def _plp(seed=0, **kw):
    m, meth, _, _ = adapted_model("tiny-encoder", "plp", rank=4, targets=["query", "value"], seed=seed, **kw)
    return m


def test_merge_is_exact_and_checks_the_frozen_halves():
    content, style = _plp(), _plp()
    with torch.no_grad():
        for n, p in content.named_parameters():
            if p.requires_grad:
                p.add_(1.0)
        for n, p in style.named_parameters():
            if p.requires_grad:
                p.add_(-1.0)
    c, s = adapter_state_dict(content), adapter_state_dict(style)
    merged = b4m.merge_plp(c, s)
    assert set(merged) == set(s)
    for name, t in merged.items():
        src = c if name.endswith("down_learn") else s
        assert torch.equal(t, src[name]), name
    assert any(n.endswith("down_learn") for n in merged) and any(n.endswith("up_frozen") for n in merged)
    other = adapter_state_dict(_plp(seed=1))  # another seed: other frozen halves
    with pytest.raises(ConfigError, match="frozen half"):
        b4m.merge_plp(other, s)
    with pytest.raises(ConfigError, match="different tensors"):
        b4m.merge_plp({k: v for k, v in c.items() if "value" not in k}, s)


def test_split_groups_by_role():
    model = _plp()
    g1, g2 = b4m.split_groups(model, "content")
    names = {id(p): n for n, p in model.named_parameters()}
    assert g1 and g2
    assert all(names[id(p)].endswith("down_learn") for p in g1) and all(names[id(p)].endswith("up_learn") for p in g2)
    s1, s2 = b4m.split_groups(model, "style")
    assert [id(p) for p in s1] == [id(p) for p in g2] and [id(p) for p in s2] == [id(p) for p in g1]


def test_split_groups_needs_plp():
    m, _, _, _ = adapted_model("tiny-encoder", "lora", rank=4)
    with pytest.raises(ConfigError, match="plp"):
        b4m.split_groups(m, "content")
    with pytest.raises(ConfigError, match="role"):
        b4m.split_groups(_plp(), "texture")
