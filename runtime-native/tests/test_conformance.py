"""The conformance suite: every registered method, on each of the three built-in models.

Registering a method (a file in rankflow_runtime/methods/ with @register) enrolls it here.
"""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from rankflow_runtime.methods import registry
from rankflow_runtime.methods.base import (SHARED_ATTR, AdaptedLinear, adapt_model, adapter_state_dict,
                                           load_adapter_state_dict, trainable_numel)
from rankflow_runtime.models import BUILTIN, build_model
from rankflow_runtime.testing import (NUM_LABELS, TINY_TARGETS, adapted_model, base_model, make_method,
                                      synthetic_batch, train_steps)

METHODS = sorted(registry())
MODELS = ["tiny-encoder", "tiny-vit", "tiny-decoder"]


def _case(method, model):
    task = BUILTIN[model]["task"]
    tasks = registry()[method].model_tasks
    marks = () if task in tasks else pytest.mark.skip(reason=f"{method} applies to {'/'.join(tasks)} models only")
    return pytest.param(method, model, id=f"{method}-{model}", marks=marks)


CASES = [_case(m, mo) for m in METHODS for mo in MODELS]


def _forward(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _perturb(model, seed=1, scale=0.05):
    """Move every trainable tensor away from its initial value (so ΔW ≠ 0 for merge and round-trip tests)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * scale)


def _adapter_owned(name, model, head):
    prefixes = [n + "." for n, m in model.named_modules() if isinstance(m, AdaptedLinear)]
    if name.startswith(SHARED_ATTR + "."):
        return True
    if head and name.startswith(head + "."):
        return False
    return any(name.startswith(p) and ".base." not in name[len(p) - 1:] for p in prefixes)


def test_registry_has_baselines():
    assert {"lora", "full", "linear-probe"} <= set(METHODS)
    for name, cls in registry().items():
        d = cls.describe()
        assert cls.name == name and cls.paper, f"{name}: needs a paper citation"
        assert set(d) >= {"paper", "needs_rank", "init_is_identity", "mergeable", "lr_groups", "options"}
        json.dumps(d)  # describe must be JSON


@pytest.mark.parametrize("method,model", CASES)
def test_only_intended_parameters_train(method, model):
    m, meth, info, _ = adapted_model(model, method)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable, f"{method} trains nothing"
    cls = type(meth)
    if cls.trains_backbone:
        assert len(trainable) == len(list(m.parameters()))
    elif cls.forces_head:
        assert all(n.startswith(info.head_name + ".") for n in trainable)
    else:
        bad = [n for n in trainable if not _adapter_owned(n, m, info.head_name)]
        assert not bad, f"{method} trains non-adapter parameters: {bad[:5]}"
        if cls.wraps_targets:
            assert meth.targets and all(isinstance(m.get_submodule(t), AdaptedLinear) for t in meth.targets)
        else:  # input-side methods (prompts): the whole backbone is frozen
            assert not meth.targets and not any(isinstance(x, AdaptedLinear) for x in m.modules())
        for mod in m.modules():
            if isinstance(mod, AdaptedLinear):
                assert not any(p.requires_grad for p in mod.base.parameters())
    # After training, the frozen tensors are bit-identical.
    frozen = {n: p.detach().clone() for n, p in m.named_parameters() if not p.requires_grad}
    train_steps(m, meth, synthetic_batch(model), steps=2, lr=cls.test_lr)
    for n, p in m.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen parameter {n} changed"


@pytest.mark.parametrize("method,model", CASES)
@pytest.mark.parametrize("train_head", [False, True])
def test_count_equals_formula_equals_actual(method, model, train_head):
    m, meth, info, formula = adapted_model(model, method, train_head=train_head)
    actual = trainable_numel(m)
    assert formula == actual
    # Same numbers on the meta device (what `count` uses), with no numeric initialisation.
    with torch.device("meta"):
        mm = build_model({}, info, NUM_LABELS[model])
    meth2 = make_method(method)
    from rankflow_runtime.build import adapt_facts
    shapes, meta_formula = adapt_model(mm, meth2, TINY_TARGETS[model], info.head_name, train_head,
                                       **adapt_facts(None, info))
    assert all(p.is_meta for p in mm.parameters())
    assert meta_formula == formula == trainable_numel(mm)
    if type(meth).wraps_targets and not type(meth).trains_backbone:  # SLTrain also trains non-targets
        head_extra = sum(p.numel() for p in mm.get_submodule(info.head_name).parameters()) if train_head else 0
        assert meth2.count(shapes) + head_extra == formula


@pytest.mark.parametrize("method,model", CASES)
def test_initial_adapted_model_equals_base(method, model):
    cls = type(make_method(method))
    if not cls.init_is_identity:
        pytest.skip(f"{method} declares init_is_identity=False (its paper starts from a non-zero update)")
    base, _ = base_model(model)
    m, _, _, _ = adapted_model(model, method)
    batch = synthetic_batch(model)
    torch.testing.assert_close(_forward(m, batch), _forward(base, batch), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method,model", CASES)
def test_merge_equals_unmerged_and_unmerge_restores(method, model):
    m, meth, _, _ = adapted_model(model, method)
    if not type(meth).mergeable:
        pytest.skip(f"{method} declares mergeable=False")
    _perturb(m)
    batch = synthetic_batch(model)
    before = _forward(m, batch)
    weights = {n: p.detach().clone() for n, p in m.named_parameters() if ".base." in n}
    meth.merge(m)
    assert all(x.merged for x in m.modules() if isinstance(x, AdaptedLinear))
    torch.testing.assert_close(_forward(m, batch), before, rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(p, weights[n]) for n, p in m.named_parameters() if n in weights)
    meth.unmerge(m)
    torch.testing.assert_close(_forward(m, batch), before, rtol=1e-4, atol=1e-5)
    for n, p in m.named_parameters():
        if n in weights:
            torch.testing.assert_close(p, weights[n], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method,model", CASES)
def test_checkpoint_round_trip_restores_forward(method, model, tmp_path):
    m, meth, _, _ = adapted_model(model, method, train_head=True)
    batch = synthetic_batch(model)
    train_steps(m, meth, batch, steps=2, lr=type(meth).test_lr)  # hooks may update extra state
    _perturb(m, seed=2)
    want = _forward(m, batch)
    state = {k: v.detach().contiguous().clone() for k, v in adapter_state_dict(m).items()}
    save_file(state, str(tmp_path / "adapter.safetensors"))
    (tmp_path / "extra.json").write_text(json.dumps(meth.extra_state()))
    # A fresh model from the same seed (same frozen backbone), then the checkpoint.
    fresh, meth2, _, _ = adapted_model(model, method, train_head=True)
    assert not torch.equal(_forward(fresh, batch), want)
    loaded = load_file(str(tmp_path / "adapter.safetensors"))
    meth2.load_extra_state(json.loads((tmp_path / "extra.json").read_text()))
    meth2.prepare_load(fresh, loaded)
    load_adapter_state_dict(fresh, loaded)
    assert torch.equal(_forward(fresh, batch), want)
    # The checkpoint holds no frozen backbone weight.
    if not type(meth).trains_backbone:
        assert not any(".base." in k for k in state)


@pytest.mark.parametrize("method,model", CASES)
def test_short_training_lowers_loss(method, model):
    torch.manual_seed(0)
    m, meth, _, _ = adapted_model(model, method)
    batch = synthetic_batch(model)
    m.eval()
    with torch.no_grad():
        start = float(m(**batch).loss)
    train_steps(m, meth, batch, steps=15, lr=type(meth).test_lr)
    m.eval()
    with torch.no_grad():
        end = float(m(**batch).loss)
    # A deterministic run on a fixed batch: any decrease well above float noise (1e-6) is real. The margin is
    # absolute because methods with a handful of parameters (SVFit, LoLDU: r numbers per layer) move the loss
    # of the tiny LM by well under 1% in 15 steps.
    assert end < start - 1e-3, f"{method} on {model}: loss {start:.4f} -> {end:.4f}"
