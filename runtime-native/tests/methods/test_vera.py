"""VeRA-specific properties (the conformance suite covers the generic contract)."""
import torch
from torch import nn

from rankflow_runtime.methods.base import SHARED_ATTR, adapt_model, adapter_state_dict, adapted_layers
from rankflow_runtime.methods.vera import VeRA
from rankflow_runtime.testing import adapted_model


class _MLP(nn.Module):
    """Layers named "0", "2", "4" (as in nn.Sequential), but a forward that ignores extra children."""

    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(10, 24), nn.ReLU(), nn.Linear(24, 6), nn.ReLU(), nn.Linear(6, 3)]
        for i, mod in enumerate(self.layers):
            self.add_module(str(i), mod)

    def forward(self, x):
        for i in range(5):
            x = getattr(self, str(i))(x)
        return x

    def __getitem__(self, i):
        return getattr(self, str(i))


def _mlp():
    torch.manual_seed(0)
    return _MLP()


def test_count_is_d_out_plus_r_per_layer():
    for r in (1, 4, 16):
        m = _mlp()
        meth = VeRA(r, {})
        shapes, formula = adapt_model(m, meth, ["0", "2"], None, False)
        assert formula == (24 + r) + (6 + r)
        assert sum(p.numel() for p in m.parameters() if p.requires_grad) == formula


def test_bases_are_shared_sliced_and_frozen():
    m = _mlp()
    meth = VeRA(4, {"seed": 3})
    adapt_model(m, meth, ["0", "2", "4"], None, False)
    shared = getattr(m, SHARED_ATTR)
    # created once at the largest sizes: max d_in = 24, max d_out = 24
    assert tuple(shared.vera_A.shape) == (4, 24) and tuple(shared.vera_B.shape) == (24, 4)
    assert not shared.vera_A.requires_grad and not shared.vera_B.requires_grad
    layers = adapted_layers(m)
    for layer in layers:
        a, b = layer._bases()
        assert a.data_ptr() == shared.vera_A.data_ptr() and b.data_ptr() == shared.vera_B.data_ptr()
    # Same seed gives the same bases; another seed different ones.
    m2 = _mlp()
    adapt_model(m2, VeRA(4, {"seed": 3}), ["0", "2", "4"], None, False)
    assert torch.equal(getattr(m2, SHARED_ATTR).vera_A, shared.vera_A)
    m3 = _mlp()
    adapt_model(m3, VeRA(4, {"seed": 4}), ["0", "2", "4"], None, False)
    assert not torch.equal(getattr(m3, SHARED_ATTR).vera_A, shared.vera_A)


def test_init_and_first_gradients():
    """λ_b = 0 and λ_d = d_initial: ΔW = 0, and only λ_b receives a gradient at the first step."""
    m = _mlp()
    meth = VeRA(4, {"d_initial": 0.1})
    adapt_model(m, meth, ["0", "2"], None, False)
    for layer in adapted_layers(m):
        assert torch.all(layer.lambda_b == 0) and torch.allclose(layer.lambda_d, torch.full((4,), 0.1))
        assert torch.count_nonzero(layer.delta_weight()) == 0
    m(torch.randn(5, 10)).square().sum().backward()
    for layer in adapted_layers(m):
        assert layer.lambda_b.grad.abs().sum() > 0
        assert layer.lambda_d.grad.abs().sum() == 0


def test_delta_weight_matches_formula_and_forward():
    m = _mlp()
    meth = VeRA(3, {})
    adapt_model(m, meth, ["0"], None, False)
    layer = m[0]
    with torch.no_grad():
        layer.lambda_b.normal_()
        layer.lambda_d.normal_()
    a, b = layer._bases()
    want = torch.diag(layer.lambda_b) @ b @ torch.diag(layer.lambda_d) @ a
    torch.testing.assert_close(layer.delta_weight(), want)
    x = torch.randn(7, 10)
    torch.testing.assert_close(layer(x), x @ (layer.base.weight + want).t() + layer.base.bias)
    assert torch.linalg.matrix_rank(want) <= 3


def test_bases_not_in_checkpoint_unless_asked():
    m, _, _, _ = adapted_model("tiny-encoder", "vera")
    assert not any("vera_A" in k or "vera_B" in k for k in adapter_state_dict(m))
    m, _, _, _ = adapted_model("tiny-encoder", "vera", options={"save_bases": True})
    keys = adapter_state_dict(m)
    assert f"{SHARED_ATTR}.vera_A" in keys and f"{SHARED_ATTR}.vera_B" in keys


def test_meta_device_setup():
    with torch.device("meta"):
        m = _mlp()
    meth = VeRA(4, {})
    _, formula = adapt_model(m, meth, ["0", "2"], None, False)
    assert formula == 24 + 4 + 6 + 4
    assert getattr(m, SHARED_ATTR).vera_A.is_meta


def test_resume_through_the_training_loop_is_bit_identical(assert_resume_is_bit_identical):
    """Stop after 3 of 6 steps, resume from the checkpoint: the losses equal an uninterrupted run bit for bit
    (the frozen state (the shared random bases) is rebuilt from the spec, not stored)."""
    assert_resume_is_bit_identical("vera", {"dropout": 0.1})
