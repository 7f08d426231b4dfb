"""SLTrain: the layer (support, kernel, gradients, count), the toy claim at matched parameter counts."""
import pytest
import torch
from torch import nn

from rankflow_runtime.methods.sltrain import SLTrain, SLTrainLinear, SparseLowRankLinearFn, dense_weight
from rankflow_runtime.testing import adapted_model, synthetic_batch, train_steps


def _layer(d_out=12, d_in=10, r=3, sparsity=0.2, run_seed=0, bias=True, **opts):
    torch.manual_seed(123)
    meth = SLTrain(r, {"sparsity": sparsity, **opts}, run_seed)
    return SLTrainLinear(nn.Linear(d_in, d_out, bias=bias), meth, 0), meth


def test_support_is_sized_sorted_unique_seeded_and_fixed():
    a, _ = _layer()
    assert a.sparse_index.numel() == int(0.2 * 10 * 12) == a.nnz
    idx = a.sparse_index.tolist()
    assert idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < 120
    b, _ = _layer()
    assert torch.equal(a.sparse_index, b.sparse_index)
    c, _ = _layer(run_seed=1)
    assert not torch.equal(a.sparse_index, c.sparse_index)
    d, _ = _layer(run_seed=1, seed=0)  # the option wins over the run seed
    assert torch.equal(a.sparse_index, d.sparse_index)
    # Training moves the values, never the support.
    before = a.sparse_index.clone()
    opt = torch.optim.AdamW([p for p in a.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        a(torch.randn(4, 10)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(a.sparse_index, before)


def test_the_dense_weight_is_dropped_and_forward_equals_s_BA_plus_S():
    layer, meth = _layer()
    assert layer.base.weight.numel() == 0 and not any(True for _ in layer.base.parameters())
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(5, 10)
    s = meth.options.alpha / meth.rank
    w = layer.lora_B @ layer.lora_A * s
    w.view(-1)[layer.sparse_index] += layer.sparse_value
    torch.testing.assert_close(layer(x), x @ w.t() + layer.sl_bias)
    torch.testing.assert_close(layer.to_plain()(x), layer(x))
    # S is zero off the support.
    off = torch.ones(120, dtype=torch.bool)
    off[layer.sparse_index] = False
    torch.testing.assert_close((layer.dense() - layer.lora_B @ layer.lora_A * s).view(-1)[off], torch.zeros(int(off.sum())))


def test_kernel_gradients_equal_autograd_through_the_dense_weight():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    a = torch.randn(2, 7, dtype=torch.float64, generator=g, requires_grad=True)
    idx = torch.sort(torch.randperm(35, generator=g)[:9]).values
    v = torch.randn(9, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(SparseLowRankLinearFn.apply, (x, b, a, v, idx, bias))
    # Gradient reaches the sparse values only on the support: dS = (gᵀx) at the support.
    y = SparseLowRankLinearFn.apply(x, b, a, v, idx, None)
    gout = torch.randn_like(y)
    (gv,) = torch.autograd.grad(y, v, gout)
    full = gout.reshape(-1, 5).t() @ x.reshape(-1, 7)
    torch.testing.assert_close(gv, full.reshape(-1)[idx])
    torch.testing.assert_close(dense_weight(b, a, v, idx), b @ a + torch.zeros(35, dtype=torch.float64).index_add(
        0, idx, v).view(5, 7))


def test_sparsity_zero_is_low_rank_only_and_bounds_are_checked():
    layer, _ = _layer(sparsity=0.0)
    assert layer.nnz == 0 and layer.sparse_value.numel() == 0
    layer(torch.randn(2, 10)).sum().backward()
    assert layer.lora_B.grad is not None and layer.lora_B.grad.abs().sum() > 0
    with pytest.raises(Exception, match="sparsity"):
        SLTrain(4, {"sparsity": 1.0}, 0)


def test_non_target_parameters_train_and_the_count_is_the_formula():
    m, meth, info, formula = adapted_model("tiny-decoder", "sltrain", rank=4)
    assert formula == sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert m.embed_tokens.weight.requires_grad and m.lm_head.weight.requires_grad and m.norm.weight.requires_grad
    layers = [x for x in m.modules() if isinstance(x, SLTrainLinear)]
    assert layers and all(x.base.weight.numel() == 0 for x in layers)
    per = [4 * (x.in_features + x.out_features) + int(0.03 * x.in_features * x.out_features) for x in layers]
    rest = sum(p.numel() for n, p in m.named_parameters() if not any(k in n for k in ("lora_", "sparse_", "sl_")))
    assert formula == sum(per) + rest
    # Different layers get different supports (offsets), deterministically.
    assert not torch.equal(layers[0].sparse_index[:5], layers[1].sparse_index[:5])
    m2, _, _, _ = adapted_model("tiny-decoder", "sltrain", rank=4)
    for a, b in zip(layers, [x for x in m2.modules() if isinstance(x, SLTrainLinear)]):
        assert torch.equal(a.sparse_index, b.sparse_index) and torch.equal(a.lora_A, b.lora_A)


def test_default_targets_are_every_attention_and_mlp_linear():
    from rankflow_runtime.build import build, resolve_info
    from rankflow_runtime.spec import example_spec, parse_spec
    spec = parse_spec(example_spec(**{"model.name": "tiny-decoder", "model.task": "causal-lm",
                                      "dataset.name": "synthetic/causal-lm", "dataset.metric": "perplexity",
                                      "method.name": "sltrain", "method.rank": 4}))
    b = build(spec, resolve_info(spec), None, "meta")
    leaves = sorted({t.split(".")[-1] for t in b.method.targets})
    assert leaves == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert "lm_head" not in b.method.targets and b.formula == b.trainable


def _fit(layer, w_star, steps=600, lr=2e-2, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [p for p in layer.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.1)
    for _ in range(steps):
        x = torch.randn(128, w_star.shape[1], generator=g)
        loss = (layer(x) - x @ w_star.t()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    x = torch.randn(2048, w_star.shape[1], generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        return float((layer(x) - x @ w_star.t()).pow(2).mean() / (x @ w_star.t()).pow(2).mean())


def test_toy_claim_sltrain_beats_low_rank_at_matched_parameters_and_approaches_full_rank():
    """One 64×64 layer trained from scratch (procedures.md §2 toy) to a teacher W* = U Vᵀ (rank 8) + S* whose sparse
    part S* (122 entries, N(0, 3²)) lies on a fixed random support — the structure SLTrain's parametrisation
    assumes — at matched trainable counts: low-rank r=10 (1280), SLTrain r=8 + δ=0.03 (1024 + 122 = 1146), full
    rank 4096. Measured (relative test error, this seed): low-rank 0.107, SLTrain 0.005, full rank 0.006.
    Control, printed but not asserted as a win: with S* on a *different* random support of the same density,
    SLTrain (0.127) is no better than low rank (0.108) — a fixed random support captures only the tail that
    falls on it."""
    d = 64
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(d, 8, generator=g), torch.randn(d, 8, generator=g)
    head = u @ v.t() / 8 ** 0.5

    def sl(r, delta):
        layer, _ = _layer(d, d, r=r, sparsity=delta, bias=False, alpha=float(r))
        return layer

    slt, low = sl(8, 0.03), sl(10, 0.0)
    n_low = sum(p.numel() for p in low.parameters() if p.requires_grad)
    n_sl = sum(p.numel() for p in slt.parameters() if p.requires_grad)
    assert n_low == 1280 and n_sl == 1024 + 122 and n_sl <= n_low
    w_star = head.clone()
    w_star.view(-1)[slt.sparse_index] += torch.randn(slt.nnz, generator=g) * 3.0
    err_low, err_sl, err_full = _fit(low, w_star), _fit(slt, w_star), _fit(nn.Linear(d, d, bias=False), w_star)
    print(f"relative error: low-rank r=10 {err_low:.4f}, SLTrain r=8 δ=0.03 {err_sl:.4f}, full rank {err_full:.4f}")
    assert err_sl < 0.2 * err_low and err_sl < 2 * err_full + 1e-3, (err_sl, err_low, err_full)
    # The learned spectrum: B·A carries the head (the rank-8 part), S the tail (the sparse part).
    with torch.no_grad():
        ba = slt.lora_B @ slt.lora_A * slt.fixed_scaling
        rel_head = float((ba - head).norm() / head.norm())
        rel_tail = float((slt.dense() - ba - (w_star - head)).norm() / (w_star - head).norm())
    print(f"‖BA − UVᵀ‖/‖UVᵀ‖ = {rel_head:.3f}, ‖S − S*‖/‖S*‖ = {rel_tail:.3f}")
    assert rel_head < 0.1 and rel_tail < 0.3  # measured 0.044 and 0.191
    # Control: the sparse part off SLTrain's support.
    other = torch.sort(torch.randperm(d * d, generator=torch.Generator().manual_seed(7))[:slt.nnz]).values
    w_off = head.clone()
    w_off.view(-1)[other] += torch.randn(slt.nnz, generator=g) * 3.0
    e_low, e_sl = _fit(sl(10, 0.0), w_off), _fit(sl(8, 0.03), w_off)
    print(f"control (S* off the support): low-rank {e_low:.4f}, SLTrain {e_sl:.4f}")
    assert e_sl < 1.5 * e_low  # no collapse, but no claim either


def test_short_pretraining_lowers_the_loss_of_every_layer_kind():
    m, meth, _, _ = adapted_model("tiny-decoder", "sltrain", rank=4, options={"sparsity": 0.05})
    losses = train_steps(m, meth, synthetic_batch("tiny-decoder"), steps=20, lr=1e-2)
    assert losses[-1] < losses[0] - 0.1
