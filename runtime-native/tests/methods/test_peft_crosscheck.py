"""Cross-check against Hugging Face PEFT (a test-only dependency; the runtime never imports it).

For LoRA itself and every method PEFT also implements (RandLoRA, VeRA, DoRA, PiSSA, MiSS = our Bone), on the same
built-in model with the same frozen weights, at ranks 1, 4 and 16 and with adapter dropout: PEFT's trainable
count (computed here from PEFT's model) equals ours, the frozen bases / initial factors are the same (generated
independently by each library from the same seed or weights), and after moving every trainable tensor to the same
non-trivial values the outputs and gradients match in eval mode and in train mode. In train mode the RNG is
seeded identically before each library's forward: both draw their dropout masks (and the encoder's own dropout)
in the same order and shapes, so the comparison is exact, and two seeds must give different outputs when dropout
is on. Where the draws cannot be aligned (Bone with padding: PEFT pads before its dropout, we after), the
train-mode outputs are compared in distribution instead.
"""
import copy

import pytest
import torch

peft = pytest.importorskip("peft")

from rankflow_runtime.methods.base import SHARED_ATTR, trainable_numel  # noqa: E402
from rankflow_runtime.testing import TINY_TARGETS, adapted_model, base_model, synthetic_batch  # noqa: E402

MODELS = ["tiny-encoder", "tiny-decoder"]  # square and rectangular (fc1 / GQA v_proj / up_proj) targets
RANKS = [1, 4, 16]
MODEL_DROPOUT = {"tiny-encoder": {"dropout": 0.1}, "tiny-decoder": {}}  # the model's own dropout, in both


def _ours(model, method, rank, options):
    return adapted_model(model, method, rank=rank, options=options, config=MODEL_DROPOUT[model])[:2]


def _peft_model(model, config):
    base, _ = base_model(model, config=MODEL_DROPOUT[model])
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


def _train_pass(model, batch, seed):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model(**batch)
    out.loss.backward()
    return out.logits.detach()


def _compare_forward_and_grads(model, ours, pm, pairs, grad_names, rtol=1e-5, atol=1e-5, dropout=False):
    """Eval logits equal; in train mode, for two seeds aligned between the libraries, logits and gradients equal
    (and differ between the seeds when the adapter has dropout)."""
    batch = synthetic_batch(model)
    theirs = pm.base_model.model
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, theirs(**batch).logits, rtol=rtol, atol=atol)
    per_seed = []
    for seed in (0, 1):
        yo, yt = _train_pass(ours, batch, seed), _train_pass(theirs, batch, seed)
        torch.testing.assert_close(yo, yt, rtol=rtol, atol=atol)
        for o, t in pairs:
            for ours_name, their_get in grad_names:
                torch.testing.assert_close(getattr(o, ours_name).grad, their_get(t).grad, rtol=1e-4, atol=1e-6)
        per_seed.append(yo)
    if dropout:
        assert not torch.equal(per_seed[0], per_seed[1]), "train mode: the adapter dropout drew no masks"


LORA_CASES = [{}, {"alpha": 16.0, "use_rslora": True}, {"dropout": 0.2}, {"dropout": 0.2, "use_rslora": True}]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("opts", LORA_CASES, ids=["default", "rslora", "dropout", "dropout-rslora"])
def test_lora_matches_peft(model, rank, opts):
    """LoRA directly against PEFT's LoraConfig (α, rsLoRA scaling α/√r, lora_dropout), not only through export."""
    ours, meth = _ours(model, "lora", rank, opts)
    alpha = opts.get("alpha", 8.0)
    pm = _peft_model(model, peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=opts.get("dropout", 0.0),
                                            use_rslora=opts.get("use_rslora", False),
                                            target_modules=TINY_TARGETS[model]))
    assert trainable_numel(ours) == _peft_trainable(pm)
    pairs = _pairs(ours, meth, pm)
    for o, t in pairs:
        assert o.scaling == pytest.approx(t.scaling["default"])
        assert torch.count_nonzero(o.lora_B) == 0 and torch.count_nonzero(t.lora_B["default"].weight) == 0

    def cp(o, t):
        t.lora_A["default"].weight.copy_(o.lora_A)
        t.lora_B["default"].weight.copy_(o.lora_B)

    _randomize(pairs, cp)
    _compare_forward_and_grads(model, ours, pm, pairs, [("lora_A", lambda t: t.lora_A["default"].weight),
                                                       ("lora_B", lambda t: t.lora_B["default"].weight)],
                               dropout="dropout" in opts)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_vera_matches_peft(model, rank, dropout):
    ours, meth = _ours(model, "vera", rank, {"seed": 0, "dropout": dropout})
    pm = _peft_model(model, peft.VeraConfig(r=rank, target_modules=TINY_TARGETS[model], projection_prng_key=0,
                                            vera_dropout=dropout))
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
                                                       ("lambda_d", lambda t: t.vera_lambda_d["default"])],
                               dropout=dropout > 0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rank", [1, 3, 4, 16])
@pytest.mark.parametrize("compute,dropout", [("auto", 0.0), ("factored", 0.2), ("dense", 0.2), ("dense", 0.0)])
def test_randlora_matches_peft(model, rank, compute, dropout):
    """Both compute paths, with dropout too (the dense path used to skip it: |Δy| 6.8e-2 at p = 0.3)."""
    ours, meth = _ours(model, "randlora", rank, {"seed": 0, "alpha": 20.0 * rank, "compute": compute,
                                                  "dropout": dropout})
    pm = _peft_model(model, peft.RandLoraConfig(r=rank, target_modules=TINY_TARGETS[model], projection_prng_key=0,
                                                randlora_alpha=20 * rank, randlora_dropout=dropout))
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
                                                       ("randlora_gamma", lambda t: t.randlora_gamma["default"])],
                               rtol=1e-4, atol=2e-5, dropout=dropout > 0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("opts", [{}, {"dropout": 0.2}, {"use_rslora": True}], ids=["default", "dropout", "rslora"])
def test_dora_matches_peft(model, rank, opts):
    ours, meth = _ours(model, "dora", rank, {"alpha": 8.0, **opts})
    pm = _peft_model(model, peft.LoraConfig(r=rank, lora_alpha=8, target_modules=TINY_TARGETS[model], use_dora=True,
                                            lora_dropout=opts.get("dropout", 0.0),
                                            use_rslora=opts.get("use_rslora", False)))
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
        ("magnitude", lambda t: t.lora_magnitude_vector["default"].weight)], dropout="dropout" in opts)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("alpha,dropout", [(None, 0.0), (8.0, 0.0), (None, 0.2)])
def test_pissa_matches_peft(model, rank, alpha, dropout):
    opts = {"dropout": dropout, **({} if alpha is None else {"alpha": alpha})}
    ours, meth = _ours(model, "pissa", rank, opts)
    pm = _peft_model(model, peft.LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=TINY_TARGETS[model],
                                            init_lora_weights="pissa", lora_dropout=dropout))
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
                                                       ("lora_B", lambda t: t.lora_B["default"].weight)],
                               dropout=dropout > 0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("variant,peft_init,dropout", [("balance", True, 0.0), ("balance", True, 0.2),
                                                       ("bat", "bat", 0.0), ("mini", "mini", 0.0),
                                                       ("mini", "mini", 0.2)])
def test_bone_matches_peft_miss(model, rank, variant, peft_init, dropout):
    """Widths 16/32/48 are multiples of r = 1, 4, 16: no padding, so the dropout draws align."""
    ours, meth = _ours(model, "bone", rank, {"variant": variant, "mini_r": 4, "dropout": dropout})
    pm = _peft_model(model, peft.MissConfig(r=rank, target_modules=TINY_TARGETS[model], init_weights=peft_init,
                                            mini_r=4, miss_dropout=dropout))
    assert trainable_numel(ours) == _peft_trainable(pm)
    pairs = _pairs(ours, meth, pm)

    def cp(o, t):
        t.miss_block["default"].copy_(o.bone_block)

    _randomize(pairs, cp)
    _compare_forward_and_grads(model, ours, pm, pairs, [("bone_block", lambda t: t.miss_block["default"])],
                               dropout=dropout > 0 and variant != "bat")


def test_bone_balance_pads_like_peft_when_width_is_not_a_multiple_of_r():
    """d_in = 32 with r = 5: both pad the input with zeros to 35."""
    model = "tiny-encoder"
    ours, meth = _ours(model, "bone", 5, {})
    pm = _peft_model(model, peft.MissConfig(r=5, target_modules=TINY_TARGETS[model]))
    pairs = _pairs(ours, meth, pm)
    _randomize(pairs, lambda o, t: t.miss_block["default"].copy_(o.bone_block))
    _compare_forward_and_grads(model, ours, pm, pairs, [("bone_block", lambda t: t.miss_block["default"])])
    # and PEFT's merged weight equals our ΔW
    for o, t in pairs:
        w = copy.deepcopy(t.base_layer.weight.detach())
        torch.testing.assert_close(t.get_delta_weight_miss("default", w.clone()) - w, o.delta_weight())


def test_bone_dropout_with_padding_matches_peft_in_distribution():
    """r = 5 on widths 32 and 48: PEFT pads the input before its dropout, we after, so the masks have other shapes
    and the draws cannot be aligned. The layers must agree in distribution: over N samples of the same input the
    train-mode means agree within 6 standard errors and the variances within 15 %; eval outputs are equal."""
    model, n = "tiny-encoder", 4000
    ours, meth = _ours(model, "bone", 5, {"dropout": 0.3})
    pm = _peft_model(model, peft.MissConfig(r=5, target_modules=TINY_TARGETS[model], miss_dropout=0.3))
    pairs = _pairs(ours, meth, pm)
    _randomize(pairs, lambda o, t: t.miss_block["default"].copy_(o.bone_block), scale=0.5)
    for o, t in pairs:
        x = torch.randn(4, o.in_features, generator=torch.Generator().manual_seed(2))
        xs = x.expand(n, *x.shape).contiguous()
        with torch.no_grad():
            o.eval()
            t.eval()
            torch.testing.assert_close(o(x), t(x), rtol=1e-5, atol=1e-5)
            o.train()
            t.train()
            torch.manual_seed(1)
            yo = o(xs)
            torch.manual_seed(2)
            yt = t(xs)
        se = (yo.var(0) / n + yt.var(0) / n).sqrt()
        assert ((yo.mean(0) - yt.mean(0)).abs() <= 6 * se + 1e-6).all()
        ratio = yo.var(0).sum() / yt.var(0).sum()
        assert 0.85 < float(ratio) < 1.15 and float(yo.var(0).sum()) > 0
