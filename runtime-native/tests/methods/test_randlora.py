"""RandLoRA-specific properties (the conformance suite covers the generic contract)."""
import math

import pytest
import torch
from torch import nn

from rankflow_runtime.methods.base import SHARED_ATTR, adapt_model, adapter_state_dict
from rankflow_runtime.methods.randlora import RandLoRA, _RandLoRADenseFunction, _RandLoRAFunction, num_bases


class _Net(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.names = []
        for i, (o, n) in enumerate(dims):
            self.add_module(f"l{i}", nn.Linear(n, o))
            self.names.append(f"l{i}")

    def forward(self, x):
        for i, n in enumerate(self.names):
            x = getattr(self, n)(x)
            if i < len(self.names) - 1:
                x = torch.tanh(x)
        return x


def _adapted(dims, r=4, options=None, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    net = _Net(dims).to(dtype)
    meth = RandLoRA(r, options or {})
    _, formula = adapt_model(net, meth, net.names, None, False)
    return net, meth, formula


def _randomize(net, seed=1, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


@pytest.mark.parametrize("d_out,d_in,r", [(12, 20, 5), (20, 12, 5), (16, 16, 4), (9, 30, 2)])
def test_update_has_full_rank(d_out, d_in, r):
    net, _, _ = _adapted([(d_out, d_in)], r=r, options={"alpha": float(r)}, dtype=torch.float64)
    layer = net.l0
    n = num_bases(d_out, d_in, r)
    assert n * r >= min(d_out, d_in) > (n - 1) * r
    _randomize(net)
    dw = layer.delta_weight()
    assert dw.shape == (d_out, d_in)
    assert torch.linalg.matrix_rank(dw) == min(d_out, d_in)
    # while a single basis term (what LoRA of rank r could give) is rank-deficient
    with torch.no_grad():
        layer.randlora_gamma[1:] = 0
    assert torch.linalg.matrix_rank(layer.delta_weight()) <= r


def test_count_formula_and_direction():
    counts = []
    for r in (2, 4, 8):
        net, _, formula = _adapted([(12, 20), (30, 12)], r=r)
        want = sum(num_bases(o, i, r) * (r + min(o, i)) for o, i in [(12, 20), (30, 12)])
        assert formula == want == sum(p.numel() for p in net.parameters() if p.requires_grad)
        counts.append(formula)
    assert counts[0] > counts[1] > counts[2]  # grows as the rank shrinks
    # PEFT's logged Llama-3.2-3B q/v count at r = 32 (28 layers): 9,289,728
    meth = RandLoRA(32, {})
    assert meth.count([(3072, 3072), (1024, 3072)] * 28) == 9_289_728


def test_init_is_zero_update_and_scaling():
    net, meth, _ = _adapted([(12, 20)], r=4)
    layer = net.l0
    assert torch.count_nonzero(layer.randlora_lambda) == 0
    assert torch.allclose(layer.randlora_gamma, torch.full_like(layer.randlora_gamma, 1 / max(3, 12)))
    assert layer.scaling == pytest.approx(20.0)  # α defaults to 20·r
    net2, _, _ = _adapted([(12, 20)], r=4, options={"alpha": 640.0})
    assert net2.l0.scaling == pytest.approx(160.0)


@pytest.mark.parametrize("compute", ["factored", "dense"])
@pytest.mark.parametrize("d_out,d_in", [(12, 20), (20, 12), (8, 8)])
def test_custom_backward_matches_plain_autograd(d_out, d_in, compute):
    """Gradients of λ, γ and x from the memory-efficient Functions equal plain autograd through W0 + ΔW."""
    torch.manual_seed(0)
    net, _, _ = _adapted([(d_out, d_in)], r=3, options={"alpha": 3.0, "compute": compute}, dtype=torch.float64)
    layer = net.l0
    _randomize(net, scale=0.3)
    x = torch.randn(5, 2, d_in, dtype=torch.float64, requires_grad=True)
    w_out = torch.randn(5, 2, d_out, dtype=torch.float64)
    (layer(x) * w_out).sum().backward()
    got = [x.grad.clone(), layer.randlora_lambda.grad.clone(), layer.randlora_gamma.grad.clone()]
    x.grad = None
    layer.randlora_lambda.grad = None
    layer.randlora_gamma.grad = None
    ref = x @ (layer.base.weight + layer.delta_weight()).t() + layer.base.bias
    (ref * w_out).sum().backward()
    want = [x.grad, layer.randlora_lambda.grad, layer.randlora_gamma.grad]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)


def test_function_gradcheck():
    g = torch.Generator().manual_seed(0)
    r, n, d_min, d_max = 2, 3, 5, 7
    lam = torch.randn(r, n, dtype=torch.float64, generator=g, requires_grad=True)
    gam = torch.randn(n, d_min, dtype=torch.float64, generator=g, requires_grad=True)
    a = torch.randn(r, d_min, dtype=torch.float64, generator=g)
    b = torch.randn(d_max, n * r, dtype=torch.float64, generator=g)
    x_in = torch.randn(4, d_min, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, l, c: _RandLoRAFunction.apply(x, l, c, a, b, 0.7, True), (x_in, lam, gam))
    x_in = torch.randn(4, d_max, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, l, c: _RandLoRAFunction.apply(x, l, c, a, b, 0.7, False), (x_in, lam, gam))
    # dense path: (W0 + ΔW) with W0 (d_out, d_in) for both orientations
    for in_is_min, (d_out, d_in) in [(True, (d_max, d_min)), (False, (d_min, d_max))]:
        w0 = torch.randn(d_out, d_in, dtype=torch.float64, generator=g)
        bias = torch.randn(d_out, dtype=torch.float64, generator=g)
        x_in = torch.randn(4, d_in, dtype=torch.float64, generator=g, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda x, l, c: _RandLoRADenseFunction.apply(x, None, l, c, a, b, w0, bias, 0.7, in_is_min),
            (x_in, lam, gam))
        # unfused (adapter dropout): the adapter path gets its own input
        xd_in = torch.randn(4, d_in, dtype=torch.float64, generator=g, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda x, xd, l, c: _RandLoRADenseFunction.apply(x, xd, l, c, a, b, w0, bias, 0.7, in_is_min),
            (x_in, xd_in, lam, gam))


@pytest.mark.parametrize("compute,tokens", [("auto", 3), ("auto", 64), ("factored", 64), ("dense", 3)])
@pytest.mark.parametrize("d_out,d_in", [(24, 40), (40, 24)])
def test_backward_keeps_no_scaled_basis(d_out, d_in, compute, tokens):
    """Backward keeps only activations (tokens × ·) besides the frozen tensors: never the scaled bases Ã
    (r·N × d_min), nor ΔW / W0 + ΔW (d_out × d_in)."""
    net, _, _ = _adapted([(d_out, d_in)], r=4, options={"compute": compute})
    layer = net.l0
    saved = []

    def pack(t):
        saved.append(t)
        return t

    x = torch.randn(tokens, d_in, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
    y.sum().backward()
    # Views of existing tensors (the shared frozen bases, the weights, the input) cost no memory.
    existing = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers(), x]}
    new = [t for t in saved if t.untyped_storage().data_ptr() not in existing]
    for t in new:
        assert t.dim() == 2 and t.shape[0] == tokens, f"saved a {tuple(t.shape)} tensor"
        assert t.numel() <= tokens * max(d_in, d_out)


def test_bases_shared_generated_once_and_seeded():
    net, _, _ = _adapted([(12, 20), (30, 12), (5, 30)], r=4, options={"seed": 7})
    sh = getattr(net, SHARED_ATTR)
    # largest (d_out, d_in) = (30, 30): A (r, 1, 30), B (30, N_max = 8, r)
    assert tuple(sh.randlora_A.shape) == (4, 1, 30) and tuple(sh.randlora_B.shape) == (30, 8, 4)
    assert sh.randlora_A.std().item() == pytest.approx(1.0, rel=0.02)
    net2, _, _ = _adapted([(12, 20), (30, 12), (5, 30)], r=4, options={"seed": 7})
    assert torch.equal(getattr(net2, SHARED_ATTR).randlora_B, sh.randlora_B)
    net3, _, _ = _adapted([(12, 20), (30, 12), (5, 30)], r=4, options={"seed": 8})
    assert not torch.equal(getattr(net3, SHARED_ATTR).randlora_B, sh.randlora_B)
    assert not any("randlora_A" in k or "randlora_B" in k for k in adapter_state_dict(net))


@pytest.mark.parametrize("basis,p_nonzero", [("sparse", 1 / 3), ("very_sparse", None)])
def test_sparse_bases_are_ternary(basis, p_nonzero):
    net, _, _ = _adapted([(40, 60)], r=4, options={"basis": basis})
    b = getattr(net, SHARED_ATTR).randlora_B
    vals = torch.unique(b)
    assert len(vals) == 3 and torch.allclose(vals[0], -vals[2]) and vals[1] == 0
    frac = (b != 0).float().mean().item()
    want = p_nonzero if p_nonzero is not None else 1 / math.sqrt(40)
    assert frac == pytest.approx(want, abs=0.06)


def test_autocast_bf16_runs_and_grads_flow():
    net, _, _ = _adapted([(12, 20)], r=4)
    _randomize(net, scale=0.01)
    x = torch.randn(3, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    y.float().sum().backward()
    assert net.l0.randlora_lambda.grad is not None and net.l0.randlora_lambda.grad.dtype == torch.float32
    assert torch.isfinite(net.l0.randlora_gamma.grad).all()


def test_meta_device_setup():
    with torch.device("meta"):
        net = _Net([(12, 20), (30, 12)])
    meth = RandLoRA(4, {})
    _, formula = adapt_model(net, meth, net.names, None, False)
    assert formula == 3 * (4 + 12) + 3 * (4 + 12)
    assert getattr(net, SHARED_ATTR).randlora_B.is_meta


def test_auto_picks_dense_for_many_tokens_and_paths_agree():
    net, _, _ = _adapted([(24, 40)], r=4, dtype=torch.float64)
    layer = net.l0
    assert not layer.use_dense(4) and layer.use_dense(64)
    _randomize(net, scale=0.01)
    x = torch.randn(64, 40, dtype=torch.float64)
    dense = layer(x)
    layer.method.options.compute = "factored"
    torch.testing.assert_close(layer(x), dense)
    # dropout on the adapter path cannot be fused: while training, dense costs two more token-sized products
    net2, _, _ = _adapted([(24, 40)], r=4, options={"dropout": 0.1})
    net2.train()
    assert not net2.l0.use_dense(64) and net2.l0.use_dense(10_000)
    net2.eval()
    assert net2.l0.use_dense(64)


@pytest.mark.parametrize("d_out,d_in", [(24, 40), (40, 24)])
def test_dense_applies_dropout_like_factored(d_out, d_in):
    """Training with dropout: the dense path applies the same dropout as the factored path (same RNG draws, so
    equal outputs and gradients under the same seed) and different seeds give different outputs. (On the code
    before this fix the dense path skipped dropout: outputs identical across seeds.)"""
    outs = {}
    for compute in ("factored", "dense"):
        net, _, _ = _adapted([(d_out, d_in)], r=4, options={"dropout": 0.3, "compute": compute}, dtype=torch.float64)
        _randomize(net, scale=0.05)
        net.train()
        x = torch.randn(6, d_in, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
        runs = []
        for seed in (0, 0, 1):
            torch.manual_seed(seed)
            y = net(x)
            (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y).cos()).sum().backward()
            runs.append((y.detach().clone(), x.grad.clone(), net.l0.randlora_lambda.grad.clone(),
                         net.l0.randlora_gamma.grad.clone()))
            x.grad = net.l0.randlora_lambda.grad = net.l0.randlora_gamma.grad = None
        for a, b in zip(runs[0], runs[1]):
            assert torch.equal(a, b)  # same seed: same mask
        assert not torch.allclose(runs[0][0], runs[2][0])  # another seed: another mask
        outs[compute] = runs[0]
        net.eval()  # eval: no dropout, the output of W0 + ΔW
        torch.testing.assert_close(net(x), x @ (net.l0.base.weight + net.l0.delta_weight()).t() + net.l0.base.bias)
    for a, b in zip(outs["factored"], outs["dense"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("compute", ["factored", "dense"])
def test_output_dtype_follows_the_base_layer(compute):
    net, _, _ = _adapted([(12, 20)], r=4, options={"compute": compute})
    x = torch.randn(3, 20)
    assert net.l0(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net.l0(x).dtype == net.l0.base(x).dtype == torch.bfloat16


def test_resume_through_the_training_loop_is_bit_identical(assert_resume_is_bit_identical):
    """Stop after 3 of 6 steps, resume from the checkpoint: the losses equal an uninterrupted run bit for bit
    (the frozen state (the shared random bases) is rebuilt from the spec, not stored)."""
    assert_resume_is_bit_identical("randlora", {"dropout": 0.1})
