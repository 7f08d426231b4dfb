"""DoRA-specific properties (the conformance suite covers the generic contract)."""
import math

import pytest
import torch
from torch import nn

from rankflow_runtime.methods.base import adapt_model
from rankflow_runtime.methods.dora import DoRA


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 16)
        self.b = nn.Linear(16, 6)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _adapted(r=4, options=None, dtype=torch.float32):
    torch.manual_seed(0)
    net = _Net().to(dtype)
    _, formula = adapt_model(net, DoRA(r, options or {}), ["a", "b"], None, False)
    return net, formula


def test_count():
    net, formula = _adapted(r=3)
    assert formula == 3 * (10 + 16) + 16 + 3 * (16 + 6) + 6
    assert formula == sum(p.numel() for p in net.parameters() if p.requires_grad)


def test_magnitude_is_row_norm_and_init_equals_base():
    torch.manual_seed(0)
    ref = _Net()
    net, _ = _adapted()
    for name in ("a", "b"):
        layer = getattr(net, name)
        w0 = getattr(ref, name).weight
        torch.testing.assert_close(layer.magnitude.detach(), w0.norm(dim=1))  # per output row, over d_in
        assert torch.count_nonzero(layer.lora_B) == 0
    x = torch.randn(5, 10)
    torch.testing.assert_close(net(x), ref(x), rtol=1e-6, atol=1e-6)


def _manual(layer, x, detach):
    w = layer.base.weight + layer.scaling * layer.lora_B @ layer.lora_A
    n = w.norm(dim=1)
    if detach:
        n = n.detach()
    return x @ ((layer.magnitude / n)[:, None] * w).t() + layer.base.bias


def test_forward_and_detached_norm_gradient():
    """The output is m ⊙ (W0 + sBA)/‖·‖_row x + b, and the gradient treats the norm as a constant."""
    net, _ = _adapted(dtype=torch.float64)
    layer = net.a
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g, dtype=torch.float64))
        layer.magnitude.mul_(1.5)
    x = torch.randn(7, 10, dtype=torch.float64)
    out = layer(x)
    torch.testing.assert_close(out, _manual(layer, x, True))
    grads = {}
    for tag, fn in [("ours", lambda: layer(x)), ("detached", lambda: _manual(layer, x, True)),
                    ("through_norm", lambda: _manual(layer, x, False))]:
        for p in (layer.lora_A, layer.lora_B, layer.magnitude):
            p.grad = None
        (fn() ** 2).sum().backward()
        grads[tag] = [p.grad.clone() for p in (layer.lora_A, layer.lora_B, layer.magnitude)]
    for a, b in zip(grads["ours"], grads["detached"]):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(grads["ours"][1], grads["through_norm"][1])


def test_scaling_options():
    net, _ = _adapted(r=4, options={"alpha": 16.0})
    assert net.a.scaling == pytest.approx(4.0)
    net, _ = _adapted(r=4, options={"alpha": 16.0, "use_rslora": True})
    assert net.a.scaling == pytest.approx(16.0 / math.sqrt(4))


def test_dropout_path_matches_peft_formula_in_training():
    """With dropout, y = W0x + b + (m/n − 1)·W0 x_d + (m/n)·s·B A x_d (PEFT's formulation)."""
    net, _ = _adapted(options={"dropout": 0.5})
    layer = net.a
    with torch.no_grad():
        layer.lora_B.normal_()
    layer.train()
    x = torch.randn(4, 10)
    torch.manual_seed(11)
    y = layer(x)
    torch.manual_seed(11)
    xd = nn.functional.dropout(x, 0.5, training=True)
    scale = layer.magnitude / layer.weight_norm()
    w0x = xd @ layer.base.weight.t()
    want = (x @ layer.base.weight.t() + layer.base.bias + (scale - 1) * w0x
            + scale * (xd @ layer.lora_A.t() @ layer.lora_B.t()) * layer.scaling)
    torch.testing.assert_close(y, want)


def test_meta_device_setup():
    with torch.device("meta"):
        net = _Net()
    _, formula = adapt_model(net, DoRA(2, {}), ["a"], None, False)
    assert formula == 2 * 26 + 16 and net.a.magnitude.is_meta


def test_resume_through_the_training_loop_is_bit_identical(assert_resume_is_bit_identical):
    """Stop after 3 of 6 steps, resume from the checkpoint: the losses equal an uninterrupted run bit for bit
    (the frozen state is rebuilt from the spec, not stored)."""
    assert_resume_is_bit_identical("dora", {"dropout": 0.1})
