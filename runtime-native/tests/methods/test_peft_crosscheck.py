"""Cross-check against Hugging Face PEFT (a test-only dependency; the runtime never imports it).

For every method PEFT also implements (RandLoRA, VeRA, DoRA, PiSSA, MiSS = our Bone), on the same built-in model
with the same frozen weights: PEFT's trainable-parameter count equals ours exactly, the frozen bases / initial
factors are the same (generated independently by each library from the same seed or weights), and after moving
every trainable tensor to the same non-trivial values the forward outputs and the gradients match.
"""
import copy

import pytest
import torch

peft = pytest.importorskip("peft")

from rankflow_runtime.methods.base import SHARED_ATTR, trainable_numel  # noqa: E402
from rankflow_runtime.testing import TINY_TARGETS, adapted_model, base_model, synthetic_batch  # noqa: E402

MODELS = ["tiny-encoder", "tiny-decoder"]  # square and rectangular (fc1 / GQA v_proj / up_proj) targets


def _peft_model(model, config):
    base, _ = base_model(model)
    return peft.get_peft_model(base, config)


def _peft_trainable(pm):
    return sum(p.numel() for p in pm.parameters() if p.requires_grad)


def _pairs(ours, meth, pm):
    inner = pm.base_model.model
    return [(ours.get_submodule(t), inner.get_submodule(t)) for t in meth.targets]


def _randomize(pairs, copy_fn, seed=3, scale=0.05):
    """Draw new values for our trainable tensors and copy them into PEFT's."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for ours, theirs in pairs:
            for p in ours.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
            copy_fn(ours, theirs)


def _compare_forward_and_grads(model, ours, pm, pairs, grad_names, rtol=1e-5, atol=1e-5):
    batch = synthetic_batch(model)
    ours.train()
    pm.train()
    lo = ours(**batch).loss
    lp = pm.base_model.model(**batch).loss
    torch.testing.assert_close(lo, lp, rtol=rtol, atol=atol)
    ours.eval()
    pm.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, pm.base_model.model(**batch).logits, rtol=rtol, atol=atol)
    lo.backward()
    lp.backward()
    for o, t in pairs:
        for ours_name, their_get in grad_names:
            go = getattr(o, ours_name).grad
            gt = their_get(t).grad
            torch.testing.assert_close(go, gt, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rank", [4, 8])
def test_vera_matches_peft(model, rank):
    ours, meth, _, _ = adapted_model(model, "vera", rank=rank, options={"seed": 0})
    pm = _peft_model(model, peft.VeraConfig(r=rank, target_modules=TINY_TARGETS[model], projection_prng_key=0))
    assert trainable_numel(ours) == _peft_trainable(pm)
    shared = getattr(ours, SHARED_ATTR)
    first = pm.base_model.model.get_submodule(meth.targets[0])
    assert torch.equal(shared.vera_A, first.vera_A["default"]) and torch.equal(shared.vera_B, first.vera_B["default"])
    pairs = _pairs(ours, meth, pm)
    for o, t in pairs:
        assert torch.equal(o.lambda_d, t.vera_lambda_d["default"]) and torch.equal(o.lambda_b, t.vera_lambda_b["default"])

    def cp(o, t):
        t.vera_lambda_b["default"].copy_(o.lambda_b)
        t.vera_lambda_d["default"].copy_(o.lambda_d)

    _randomize(pairs, cp)
    _compare_forward_and_grads(model, ours, pm, pairs, [("lambda_b", lambda t: t.vera_lambda_b["default"]),
                                                       ("lambda_d", lambda t: t.vera_lambda_d["default"])])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rank", [3, 8])
def test_randlora_matches_peft(model, rank):
    ours, meth, _, _ = adapted_model(model, "randlora", rank=rank, options={"seed": 0, "alpha": 20.0 * rank})
    pm = _peft_model(model, peft.RandLoraConfig(r=rank, target_modules=TINY_TARGETS[model], projection_prng_key=0,
                                                randlora_alpha=20 * rank))
    assert trainable_numel(ours) == _peft_trainable(pm)
    shared = getattr(ours, SHARED_ATTR)
    first = pm.base_model.model.get_submodule(meth.targets[0])
    # same seed -> bit-identical bases, generated independently
    assert torch.equal(shared.randlora_A, first.randlora_A["default"])
    assert torch.equal(shared.randlora_B, first.randlora_B["default"])
    pairs = _pairs(ours, meth, pm)
    for o, t in pairs:
        assert torch.equal(o.randlora_lambda, t.randlora_lambda["default"])
        assert torch.equal(o.randlora_gamma, t.randlora_gamma["default"])

    def cp(o, t):
        t.randlora_lambda["default"].copy_(o.randlora_lambda)
        t.randlora_gamma["default"].copy_(o.randlora_gamma)

    _randomize(pairs, cp, scale=0.002)
    _compare_forward_and_grads(model, ours, pm, pairs, [("randlora_lambda", lambda t: t.randlora_lambda["default"]),
                                                       ("randlora_gamma", lambda t: t.randlora_gamma["default"])])


@pytest.mark.parametrize("model", MODELS)
def test_dora_matches_peft(model):
    ours, meth, _, _ = adapted_model(model, "dora", rank=4, options={"alpha": 8.0})
    pm = _peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=TINY_TARGETS[model], use_dora=True))
    assert trainable_numel(ours) == _peft_trainable(pm)
    pairs = _pairs(ours, meth, pm)
    for o, t in pairs:
        torch.testing.assert_close(o.magnitude, t.lora_magnitude_vector["default"].weight)

    def cp(o, t):
        t.lora_A["default"].weight.copy_(o.lora_A)
        t.lora_B["default"].weight.copy_(o.lora_B)
        t.lora_magnitude_vector["default"].weight.copy_(o.magnitude)

    _randomize(pairs, cp)
    _compare_forward_and_grads(model, ours, pm, pairs, [
        ("lora_A", lambda t: t.lora_A["default"].weight), ("lora_B", lambda t: t.lora_B["default"].weight),
        ("magnitude", lambda t: t.lora_magnitude_vector["default"].weight)])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("alpha", [None, 8.0])
def test_pissa_matches_peft(model, alpha):
    opts = {} if alpha is None else {"alpha": alpha}
    ours, meth, _, _ = adapted_model(model, "pissa", rank=4, options=opts)
    pm = _peft_model(model, peft.LoraConfig(r=4, lora_alpha=alpha or 4, target_modules=TINY_TARGETS[model],
                                            init_lora_weights="pissa"))
    assert trainable_numel(ours) == _peft_trainable(pm)
    pairs = _pairs(ours, meth, pm)
    for o, t in pairs:  # same SVD init: factors and residual base weight
        torch.testing.assert_close(o.lora_A, t.lora_A["default"].weight)
        torch.testing.assert_close(o.lora_B, t.lora_B["default"].weight)
        torch.testing.assert_close(o.base.weight, t.base_layer.weight)

    def cp(o, t):
        t.lora_A["default"].weight.copy_(o.lora_A)
        t.lora_B["default"].weight.copy_(o.lora_B)
        t.base_layer.weight.copy_(o.base.weight)

    _randomize(pairs, cp)
    _compare_forward_and_grads(model, ours, pm, pairs, [("lora_A", lambda t: t.lora_A["default"].weight),
                                                       ("lora_B", lambda t: t.lora_B["default"].weight)])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("variant,peft_init", [("balance", True), ("bat", "bat"), ("mini", "mini")])
def test_bone_matches_peft_miss(model, variant, peft_init):
    ours, meth, _, _ = adapted_model(model, "bone", rank=4, options={"variant": variant, "mini_r": 4})
    pm = _peft_model(model, peft.MissConfig(r=4, target_modules=TINY_TARGETS[model], init_weights=peft_init, mini_r=4))
    assert trainable_numel(ours) == _peft_trainable(pm)
    pairs = _pairs(ours, meth, pm)

    def cp(o, t):
        t.miss_block["default"].copy_(o.bone_block)

    _randomize(pairs, cp)
    _compare_forward_and_grads(model, ours, pm, pairs, [("bone_block", lambda t: t.miss_block["default"])])


def test_bone_balance_pads_like_peft_when_width_is_not_a_multiple_of_r():
    """d_in = 32 with r = 5: both pad the input with zeros to 35."""
    model = "tiny-encoder"
    ours, meth, _, _ = adapted_model(model, "bone", rank=5)
    pm = _peft_model(model, peft.MissConfig(r=5, target_modules=TINY_TARGETS[model]))
    pairs = _pairs(ours, meth, pm)
    _randomize(pairs, lambda o, t: t.miss_block["default"].copy_(o.bone_block))
    _compare_forward_and_grads(model, ours, pm, pairs, [("bone_block", lambda t: t.miss_block["default"])])
    # and PEFT's merged weight equals our ΔW
    for o, t in pairs:
        w = copy.deepcopy(t.base_layer.weight.detach())
        torch.testing.assert_close(t.get_delta_weight_miss("default", w.clone()) - w, o.delta_weight())
