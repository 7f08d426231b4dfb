"""SNELL property tests: the merged update has the target sparsity, the selection equals the official
quantile/threshold rule, the kernel merge exceeds rank q, no mask is stored, and gradients follow M⊙|M|."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rankflow_runtime.methods.base import adapted_layers, adapter_state_dict, trainable_numel
from rankflow_runtime.methods.snell import SNELL, competition_sparsify
from rankflow_runtime.testing import adapted_model, synthetic_batch, train_steps


def _official_sparsify(weight, thres):
    """The official SNELL.sparsify rule (torch.quantile + F.threshold), as a reference."""
    weight_abs = weight.detach().abs()
    t = torch.quantile(weight_abs.flatten(), thres)
    return weight * F.threshold(weight_abs, float(t), 0)


@pytest.mark.parametrize("s", [0.1, 0.3, 0.5, 0.9, 0.995])
def test_merged_weight_has_the_target_sparsity(s):
    torch.manual_seed(0)
    lay = SNELL(rank=4, options={"sparsity": s}).wrap("x", nn.Linear(32, 24), None)
    dw = lay.delta_weight()
    n = dw.numel()
    zeros = int((dw == 0).sum())
    assert zeros == math.floor(s * (n - 1)) + 1
    assert abs(zeros / n - s) <= 1.0 / n + 1e-9
    # the survivors are the largest-magnitude entries of the dense kernel merge
    m = (lay.coeff * torch.cdist(lay.In_Qs, lay.Out_Qs)).sum(0).detach().abs().t()
    assert m[dw != 0].min() > m[dw == 0].max()


@pytest.mark.parametrize("s", [0.0, 0.25, 0.7])
def test_selection_equals_the_official_quantile_rule(s):
    g = torch.Generator().manual_seed(1)
    m = torch.randn(40, 30, generator=g)
    want = m if s == 0 else _official_sparsify(m, s)
    torch.testing.assert_close(competition_sparsify(m, s), want, rtol=0, atol=0)


def test_kernel_merge_matches_official_path_integral_and_exceeds_rank_q():
    torch.manual_seed(0)
    lay = SNELL(rank=2, options={"sparsity": 0.0}).wrap("x", nn.Linear(32, 32), None)
    In, Out = lay.In_Qs.detach(), lay.Out_Qs.detach()
    assert In.shape == (2, 32, 1) and Out.shape == (2, 32, 1)
    want = 0.1 * torch.cdist(In[0], Out[0]) - 0.1 * torch.cdist(In[1], Out[1])
    torch.testing.assert_close(lay.delta_weight().detach(), want.t())
    assert torch.linalg.matrix_rank(lay.delta_weight().detach()) > 2  # nonlinear kernel: rank not bounded by q


def test_count_and_init_bounds():
    m, meth, _, formula = adapted_model("tiny-vit", "snell", rank=4)
    layers = adapted_layers(m)
    assert trainable_numel(m) == formula == sum(4 * (l.in_features + l.out_features) for l in layers)
    for lay in layers:  # Kaiming-uniform (a=√5) on the 3-D tensors: bound 1/√(d·q/H)
        assert lay.In_Qs.abs().max() <= 1 / math.sqrt(lay.in_features * 2)
        assert lay.Out_Qs.abs().max() <= 1 / math.sqrt(lay.out_features * 2)


def test_no_mask_is_stored_and_the_pattern_follows_the_parameters():
    m, meth, _, _ = adapted_model("tiny-encoder", "snell", rank=4, options={"sparsity": 0.6})
    state = adapter_state_dict(m)
    assert all(k.endswith(("In_Qs", "Out_Qs")) for k in state)
    lay = adapted_layers(m)[0]
    before = lay.delta_weight() != 0
    train_steps(m, meth, synthetic_batch("tiny-encoder"), steps=5, lr=0.2)
    after = lay.delta_weight() != 0
    assert not torch.equal(before, after)  # the competition re-selects as the coordinates move
    assert int((~after).sum()) == math.floor(0.6 * (after.numel() - 1)) + 1


def test_gradient_of_the_sparsified_merge_is_the_detached_magnitude():
    m = torch.randn(6, 5, requires_grad=True)
    out = competition_sparsify(m, 0.5)
    out.sum().backward()
    mag = m.detach().abs()
    kept = out.detach() != 0
    torch.testing.assert_close(m.grad[kept], mag[kept])
    assert torch.count_nonzero(m.grad[~kept]) == 0


def test_checkpointing_does_not_change_gradients():
    grads = []
    for ck in (True, False):
        torch.manual_seed(0)
        lay = SNELL(rank=4, options={"checkpoint": ck, "dropout": 0.0, "drop_path": 0.0}).wrap("x", nn.Linear(8, 6), None)
        x = torch.randn(3, 8)
        lay(x).pow(2).sum().backward()
        grads.append(lay.In_Qs.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_dropout_follows_the_official_blocks(monkeypatch):
    """As AttentionSNELLParallel / MlpSNELLParallel: q, k, v share one dropout draw on the block input (the first
    draw of the pass, as the official x_drop), the attention output projection gets no dropout, fc1 its own draw;
    a new pass draws new masks. (Before this fix each layer drew its own mask and `out` was dropped too.)"""
    from rankflow_runtime.methods.snell import SNELLLinear
    seen = {}
    original = SNELLLinear._branch

    def record(self, h):
        seen.setdefault(self.target_name, []).append(h.detach().clone())
        return original(self, h)

    monkeypatch.setattr(SNELLLinear, "_branch", record)
    inputs = {}
    m, meth, _, _ = adapted_model("tiny-encoder", "snell", rank=4, targets=["query", "key", "value", "out", "fc1"],
                                  options={"dropout": 0.5, "drop_path": 0.0, "checkpoint": False})
    for lay in adapted_layers(m):
        lay.register_forward_pre_hook(lambda mod, args: inputs.setdefault(mod.target_name, []).append(args[0].detach()))
    batch = synthetic_batch("tiny-encoder")
    m.train()
    torch.manual_seed(5)
    m(**batch)
    blk = "layers.0.attn."
    q, k, v, out = (seen[blk + n][0] for n in ("query", "key", "value", "out"))
    x = inputs[blk + "query"][0]
    assert torch.equal(q, k) and torch.equal(q, v) and not torch.equal(q, x)
    torch.manual_seed(5)  # the official x_drop: the first draw of the pass, one dropout on x
    torch.testing.assert_close(q, F.dropout(x, 0.5, training=True), rtol=0, atol=0)
    assert torch.equal(out, inputs[blk + "out"][0])  # no dropout on the output projection
    fc1, x_fc1 = seen["layers.0.mlp.fc1"][0], inputs["layers.0.mlp.fc1"][0]
    assert not torch.equal(fc1, x_fc1) and torch.count_nonzero(fc1) < x_fc1.numel()
    torch.manual_seed(6)
    m(**batch)
    assert not torch.equal(seen[blk + "query"][1], q)  # a new pass: a new mask
    assert torch.equal(seen[blk + "query"][1], seen[blk + "value"][1])
    lay = m.get_submodule(blk + "query")
    seen.clear()
    for _ in range(2):  # calling one layer twice on the same tensor is two passes
        lay(x)
    assert not torch.equal(seen[blk + "query"][0], seen[blk + "query"][1])
