"""Server aggregation: the factored formulas equal the dense ones, the correction's properties (identical clients,
λ → ∞, similarity never lower, determinism), the ridge closed form, and the payload."""
import math

import torch

from rankflow_runtime.federated import aggregate as agg

F64 = torch.float64


def _clients(k=5, d_out=12, d_in=9, r=3, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a0 = torch.randn(r, d_in, generator=g, dtype=F64) * 0.4
    b0 = torch.randn(d_out, r, generator=g, dtype=F64) * 0.4
    a = [a0 + spread * torch.randn(r, d_in, generator=g, dtype=F64) for _ in range(k)]
    b = [b0 + spread * torch.randn(d_out, r, generator=g, dtype=F64) for _ in range(k)]
    return a, b


def test_weights_are_proportional_to_sizes():
    p = agg.client_weights([10, 30, 60])
    torch.testing.assert_close(p, torch.tensor([0.1, 0.3, 0.6], dtype=F64))


def test_factored_quantities_equal_the_dense_ones():
    a, b = _clients()
    p = agg.client_weights([3, 1, 4, 1, 5])
    la = agg.aggregate_layer(a, b, p)
    t = agg.ideal_delta(a, b, p)
    torch.testing.assert_close(la.a_bar, sum(w * x for w, x in zip(p.tolist(), a)))
    torch.testing.assert_close(la.b_bar, sum(w * x for w, x in zip(p.tolist(), b)))
    assert math.isclose(la.target_norm2, float((t * t).sum()), rel_tol=1e-12)
    bp = la.b_bar + 0.1
    pred = bp @ la.a_bar
    assert math.isclose(la.inner(bp), float((pred * t).sum()), rel_tol=1e-12)
    assert math.isclose(la.error2(bp), float(((pred - t) ** 2).sum()), rel_tol=1e-10)
    cos = float(torch.nn.functional.cosine_similarity(pred.flatten(), t.flatten(), dim=0))
    assert math.isclose(la.cosine(bp), cos, rel_tol=1e-12)


def test_objective_gradient_equals_autograd():
    a, b = _clients(seed=1)
    la = agg.aggregate_layer(a, b, agg.client_weights([1] * 5))
    t = agg.ideal_delta(a, b, agg.client_weights([1] * 5))
    delta = (0.05 * torch.randn(la.b_bar.shape, dtype=F64, generator=torch.Generator().manual_seed(2))).requires_grad_()
    pred = (la.b_bar + delta) @ la.a_bar
    loss = 1 - torch.nn.functional.cosine_similarity(pred.flatten(), t.flatten(), dim=0) + 0.3 * (delta ** 2).sum()
    (ref,) = torch.autograd.grad(loss, [delta])
    torch.testing.assert_close(agg.objective_grad(la, delta.detach(), 0.3), ref, rtol=1e-9, atol=1e-12)
    assert math.isclose(agg.objective(la, delta.detach(), 0.3), float(loss.detach()), rel_tol=1e-12)


def test_identical_clients_and_one_client_need_no_correction():
    a, b = _clients(k=1)
    for aa, bb in ((a * 4, b * 4), (a, b)):
        la = agg.aggregate_layer(aa, bb, agg.client_weights([2] * len(aa)))
        assert math.isclose(la.cosine(la.b_bar), 1.0, abs_tol=1e-12)
        for solver in ("gd", "ridge"):
            delta = agg.correction(la, 0.01, solver=solver)
            assert float(delta.abs().max()) < 1e-10, (solver, float(delta.abs().max()))
        assert agg.report([la], [la.b_bar]).error_after < 1e-7


def test_large_lambda_gives_no_correction():
    a, b = _clients(spread=0.8)
    la = agg.aggregate_layer(a, b, agg.client_weights([1] * 5))
    sizes = {lam: float(agg.correction(la, lam).norm()) for lam in (0.0, 0.01, 1.0, 100.0, 1e6)}
    assert sizes[0.01] > 1e-3
    assert sizes[0.0] >= sizes[0.01] >= sizes[1.0] >= sizes[100.0] >= sizes[1e6]
    assert sizes[1e6] < 1e-6 * float(la.b_bar.norm())
    assert float(agg.correction(la, 1e6, solver="ridge").norm()) < 1e-5 * float(la.b_bar.norm())


def test_similarity_after_correction_is_never_below_before():
    for seed in range(12):
        a, b = _clients(seed=seed, spread=0.2 + 0.1 * seed)
        la = agg.aggregate_layer(a, b, agg.client_weights(list(range(1, 6))))
        for lam in (0.0, 0.01, 1.0):
            delta = agg.correction(la, lam, steps=200)
            before, after = la.cosine(la.b_bar), la.cosine(la.b_bar + delta)
            assert after >= before + lam * float((delta ** 2).sum()) - 1e-13, (seed, lam, before, after)
    # and the paper's default improves it measurably on heterogeneous clients
    a, b = _clients(spread=1.0)
    la = agg.aggregate_layer(a, b, agg.client_weights([1] * 5))
    assert la.cosine(la.b_bar + agg.correction(la, 0.01)) > la.cosine(la.b_bar) + 1e-3


def test_gd_converges_to_the_optimum_of_the_paper_objective():
    a, b = _clients(seed=4, spread=0.6)
    la = agg.aggregate_layer(a, b, agg.client_weights([1] * 5))
    t = agg.ideal_delta(a, b, agg.client_weights([1] * 5))
    x = torch.zeros_like(la.b_bar, requires_grad=True)
    opt = torch.optim.LBFGS([x], max_iter=3000, tolerance_grad=1e-15, tolerance_change=1e-18,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        pred = (la.b_bar + x) @ la.a_bar
        loss = 1 - torch.nn.functional.cosine_similarity(pred.flatten(), t.flatten(), dim=0) + 0.01 * (x ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    best = agg.objective(la, x.detach(), 0.01)
    start = agg.objective(la, torch.zeros_like(x), 0.01)
    got = agg.objective(la, agg.correction(la, 0.01, steps=5000), 0.01)
    assert best <= got <= best + 0.02 * (start - best), (start, got, best)


def test_ridge_is_the_closed_form_least_squares():
    a, b = _clients(seed=5)
    la = agg.aggregate_layer(a, b, agg.client_weights([1] * 5))
    t = agg.ideal_delta(a, b, agg.client_weights([1] * 5))
    lam = 0.1
    delta = agg.correction(la, lam, solver="ridge")
    # normal equations of min ‖(B̄+ΔB)Ā − T‖² + λ‖ΔB‖²: ((B̄+ΔB)Ā − T)Āᵀ + λΔB = 0
    resid = ((la.b_bar + delta) @ la.a_bar - t) @ la.a_bar.t() + lam * delta
    assert float(resid.abs().max()) < 1e-10
    assert la.error2(la.b_bar + delta) < la.error2(la.b_bar)


def test_deterministic_and_same_payload_as_fedit():
    a, b = _clients(seed=6)
    p = agg.client_weights([5, 4, 3, 2, 1])
    d1 = agg.correction(agg.aggregate_layer(a, b, p), 0.01)
    d2 = agg.correction(agg.aggregate_layer(a, b, p), 0.01)
    assert torch.equal(d1, d2)
    la = agg.aggregate_layer(a, b, p)
    assert (la.b_bar + d1).shape == la.b_bar.shape == b[0].shape and la.a_bar.shape == a[0].shape


def test_report_over_layers():
    l1 = agg.aggregate_layer(*_clients(seed=7, spread=0.9), agg.client_weights([1] * 5))
    l2 = agg.aggregate_layer(*_clients(seed=8, spread=0.9), agg.client_weights([1] * 5))
    after = [l.b_bar + agg.correction(l, 0.01) for l in (l1, l2)]
    rep = agg.report([l1, l2], after)
    expect = math.sqrt((l1.error2(l1.b_bar) + l2.error2(l2.b_bar)) / (l1.target_norm2 + l2.target_norm2))
    assert math.isclose(rep.error_before, expect, rel_tol=1e-12)
    assert rep.cosine_after >= rep.cosine_before and rep.delta_ratio > 0
    exact = agg.report([l1, l2], [l1.b_bar, l2.b_bar], exact=[True, True])
    assert exact.error_after == 0.0 and exact.cosine_after == 1.0


def test_lora_init_a_matches_the_lora_method():
    g = torch.Generator().manual_seed(0)
    a = agg.lora_init_a(4, 100, g)
    assert a.shape == (4, 100) and float(a.abs().max()) <= 0.1 and float(a.abs().max()) > 0.09
