"""The conformance suite: every registered method × its declared option cases × ranks × built-in models × modes.

Registering a method (a file in rankflow_runtime/methods/ with @register) enrols it here; its class attributes
declare what else to run (see "Conformance" in runtime-native/README.md):

* `option_cases`: the option values that change the forward, the init or the count. The defaults and every case
  run at every rank of `conformance_ranks` (1, 4, 16); the defaults on the three built-in models, the cases on the
  encoder and the decoder (square q/v plus non-square fc1 48×32, GQA v_proj 16×32 and up_proj 48×32 targets).
  `test_declarations` checks that every enum choice, both booleans and a non-zero dropout are enrolled.
* `count_examples`: trainable counts worked out by hand from the paper, the independent oracle of the formula.
* `mutable_buffers`: the only buffers training may change.
* `non_learning`: option values under which the method cannot learn by design (checked: the loss stays put).

Per case: only intended parameters train; formula = created parameters = meta-device count; frozen parameters and
buffers are bit-identical after training; init = base when declared (and ≠ base when not), in eval and in train
mode; merge = unmerged forward and unmerge restores (or merge is refused when not mergeable); a checkpoint round
trip restores the forward; train mode is reproducible under an aligned RNG, dropout draws fresh masks, eval ignores
it, and its train-mode mean is the eval output (statistical); the loss goes down by a relative margin under one
learning-rate policy for every method.
"""
import dataclasses
import json
from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rankflow_runtime.build import adapt_facts
from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods import registry
from rankflow_runtime.methods.base import (SHARED_ATTR, AdaptedLinear, adapt_model, adapted_layers, adapter_state_dict,
                                           load_adapter_state_dict, options_schema, trainable_numel)
from rankflow_runtime.models import BUILTIN, build_model
from rankflow_runtime.testing import (LR_POLICY, NUM_LABELS, TINY_CONFIGS, TINY_TARGETS, TOKENIZER_SPEC, TRAIN_STEPS,
                                      adapted_model, base_model, make_method, synthetic_batch, train_steps)

REGISTRY = registry()
METHODS = sorted(REGISTRY)
MODELS = ["tiny-encoder", "tiny-vit", "tiny-decoder"]
OPTION_MODELS = ["tiny-encoder", "tiny-decoder"]
MODEL_DROPOUT = {"tiny-encoder": {"dropout": 0.1}, "tiny-vit": {"dropout": 0.1}, "tiny-decoder": {}}
LOSS_MARGIN = 0.002  # relative decrease of the loss on the training batch (r = 1 SVFit/LoLDU: 6 numbers in all)


@dataclasses.dataclass(frozen=True)
class Case:
    method: str
    options: Tuple[Tuple[str, Any], ...]
    rank: Optional[int]
    model: str

    @property
    def opts(self) -> Dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.options}

    @property
    def cls(self):
        return REGISTRY[self.method]

    def __str__(self) -> str:
        o = ",".join(f"{k}={v}" for k, v in self.opts.items())
        return f"{self.method}[{o}]-r{self.rank}-{self.model}"


def _freeze(options: Dict[str, Any]) -> Tuple[Tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


def _drop_options(cls) -> List[str]:
    """The method's dropout-like options (numbers named *drop*: dropout, drop_path)."""
    return [k for k, s in options_schema(cls.Options).items() if "drop" in k and s["type"] == "number"]


def _adapter_dropout(case: Case) -> bool:
    """Whether the case draws random numbers in the adapter while training."""
    values = {**{k: s["default"] for k, s in options_schema(case.cls.Options).items()}, **case.cls.test_options,
              **case.opts}
    return any((values.get(k) or 0) > 0 for k in _drop_options(case.cls))


def all_cases() -> List[Case]:
    out = []
    for name in METHODS:
        cls = REGISTRY[name]
        ranks = cls.conformance_ranks if cls.needs_rank else (None,)
        for i, opts in enumerate(({},) + tuple(cls.option_cases)):
            for rank in ranks:
                for model in (MODELS if i == 0 else OPTION_MODELS):
                    out.append(Case(name, _freeze(opts), rank, model))
    return out


def _param(case: Case):
    task = BUILTIN[case.model]["task"]
    tasks = case.cls.model_tasks
    marks = () if task in tasks else pytest.mark.skip(reason=f"{case.method} applies to {'/'.join(tasks)} models only")
    return pytest.param(case, id=str(case), marks=marks)


CASES = all_cases()
PARAMS = [_param(c) for c in CASES]
DROPOUT_PARAMS = [_param(c) for c in CASES if _adapter_dropout(c)]
LOSS_PARAMS = [_param(c) for c in CASES if c.rank in (None, 4) or c.options == ()]


def _build(case: Case, train_head: bool = False, config: Optional[Dict[str, Any]] = None, seed: int = 0):
    return adapted_model(case.model, case.method, rank=case.rank, options=case.opts, train_head=train_head,
                         seed=seed, config=config)


def _inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def _forward(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**_inputs(batch)).logits


def _perturb(model, seed=1, scale=0.05):
    """Move every trainable tensor away from its initial value (so ΔW ≠ 0 for merge, round-trip, dropout tests)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * scale)


def _train_pass(model, batch, seed):
    """Loss, logits and gradients of one train-mode forward/backward with the torch RNG seeded."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out.loss.detach(), grads, out.logits.detach()


def _adapter_owned(name, model, head):
    prefixes = [n + "." for n, m in model.named_modules() if isinstance(m, AdaptedLinear)]
    if name.startswith(SHARED_ATTR + "."):
        return True
    if head and name.startswith(head + "."):
        return False
    return any(name.startswith(p) and ".base." not in name[len(p) - 1:] for p in prefixes)


# ----------------------------------------------------------------------------------------------------------------
# Declarations
# ----------------------------------------------------------------------------------------------------------------


def test_registry_has_baselines():
    assert {"lora", "full", "linear-probe", "head-only"} <= set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_declarations(method):
    """describe is complete JSON; the option cases parse and cover every enum choice, both values of every
    boolean and a non-zero dropout; wrapping methods give hand-worked count examples, one non-square."""
    cls = REGISTRY[method]
    d = cls.describe()
    assert cls.name == method and cls.paper, f"{method}: needs a paper citation"
    assert set(d) >= {"paper", "needs_rank", "init_is_identity", "mergeable", "count_is_exact", "property_rules",
                      "lr_groups", "options"}
    json.dumps(d)
    schema = options_schema(cls.Options)
    runs = [{**{k: s["default"] for k, s in schema.items()}, **cls.test_options, **case}
            for case in ({},) + tuple(cls.option_cases)]
    for case in cls.option_cases:
        assert case and set(case) <= set(schema), f"{method}: option case {case} names unknown options"
        make_method(method, rank=cls.conformance_ranks[0] if cls.needs_rank else None, options=case)
    assert set(cls.option_cases_exempt) <= set(schema)
    missing = []
    for k, s in schema.items():
        if k in cls.option_cases_exempt:
            continue
        seen = [r[k] for r in runs]
        if s["type"] == "enum":
            missing += [f"{k}={c!r}" for c in s["choices"] if c not in seen]
        elif s["type"] == "boolean":
            missing += [f"{k}={b}" for b in (False, True) if b not in seen]
        elif k in _drop_options(cls) and not any((v or 0) > 0 for v in seen):
            missing.append(f"{k}>0")
    assert not missing, (f"{method}: option values not enrolled in option_cases: {missing} (add a case, or name "
                         f"the option in option_cases_exempt with the reason)")
    if cls.wraps_targets:
        assert cls.count_examples, f"{method}: declare count_examples (hand-worked counts from the paper)"
        assert any(o != i for ex in cls.count_examples for o, i in ex["shapes"]), f"{method}: no non-square example"


class _Stack(nn.Module):
    """Linear layers `blocks.<i>.proj` of the given (d_out, d_in) shapes (one module type per shape)."""

    def __init__(self, shapes):
        super().__init__()
        self.blocks = nn.ModuleList(nn.ModuleDict({"proj": nn.Linear(i, o, bias=False)}) for o, i in shapes)


@pytest.mark.parametrize("method", [m for m in METHODS if REGISTRY[m].count_examples])
def test_count_examples_are_the_hand_worked_numbers(method):
    """The independent count oracle: the method's formula and the tensors it creates (on the meta device) equal
    numbers worked out by hand from the paper, including non-square and clamped shapes."""
    cls = REGISTRY[method]
    for ex in cls.count_examples:
        meth = cls(ex["rank"], dict(ex["options"]), 0)
        with torch.device("meta"):
            model = _Stack(ex["shapes"])
        shapes, formula = adapt_model(model, meth, ["proj"], None, False)
        got = (meth.count(ex["shapes"]), formula, trainable_numel(model))
        assert got == (ex["count"],) * 3, f"{method} {ex}: formula/created/meta = {got}"


def test_head_methods_count_the_head_only():
    """linear-probe and head-only on the built-ins: the head, from the tiny configurations (hidden 32; encoder 3
    labels, ViT 4, decoder lm_head 64·32 without bias); full trains everything."""
    want = {"tiny-encoder": 32 * 3 + 3, "tiny-vit": 32 * 4 + 4, "tiny-decoder": TINY_CONFIGS["tiny-decoder"]["vocab_size"] * 32}
    for method in ("linear-probe", "head-only"):
        for model, n in want.items():
            m, _, _, formula = adapted_model(model, method)
            assert formula == trainable_numel(m) == n, (method, model)
    m, _, _, formula = adapted_model("tiny-encoder", "full")
    assert formula == trainable_numel(m) == sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Structure: what trains, what is counted, what stays frozen
# ----------------------------------------------------------------------------------------------------------------


def _check_trainable_set(m, meth, info):
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable, f"{meth.name} trains nothing"
    cls = type(meth)
    if cls.trains_backbone:
        return
    if cls.forces_head:
        assert all(n.startswith(info.head_name + ".") for n in trainable)
        return
    bad = [n for n in trainable if not _adapter_owned(n, m, info.head_name)]
    assert not bad, f"{meth.name} trains non-adapter parameters: {bad[:5]}"
    if cls.wraps_targets:
        assert meth.targets and all(isinstance(m.get_submodule(t), AdaptedLinear) for t in meth.targets)
    else:  # input-side methods (prompts): the whole backbone is frozen
        assert not meth.targets and not any(isinstance(x, AdaptedLinear) for x in m.modules())
    for mod in adapted_layers(m):
        assert not any(p.requires_grad for p in mod.base.parameters())


def _meta_count(case: Case, info, train_head: bool):
    with torch.device("meta"):
        mm = build_model({}, info, NUM_LABELS[case.model])
    meth = make_method(case.method, case.rank, case.opts)
    shapes, formula = adapt_model(mm, meth, TINY_TARGETS[case.model], info.head_name, train_head,
                                  **adapt_facts(TOKENIZER_SPEC.get(case.model), info))
    assert all(p.is_meta for p in mm.parameters())
    assert formula == trainable_numel(mm)
    return mm, meth, shapes, formula


@pytest.mark.parametrize("case", PARAMS)
def test_structure(case):
    """Only intended parameters train; formula = created tensors = the meta-device count (with and without the
    head); after training every frozen parameter and buffer is bit-identical."""
    m, meth, info, formula = _build(case)
    _check_trainable_set(m, meth, info)
    assert formula == trainable_numel(m)
    mm, meth2, shapes, meta = _meta_count(case, info, train_head=False)
    assert meta == formula or not meth.count_is_exact, f"count (meta device) {meta} != the trained model's {formula}"
    if type(meth).wraps_targets and meth.count_is_exact:
        assert meth2.count(shapes) == formula or type(meth).trains_backbone
    if not type(meth).trains_backbone:
        _, _, _, with_head = _meta_count(case, info, train_head=True)
        head = 0 if type(meth).forces_head else sum(p.numel() for p in m.get_submodule(info.head_name).parameters())
        assert with_head == meta + head
    mutable = type(meth).mutable_buffers
    frozen = {n: t.detach().clone() for n, t in [*m.named_parameters(), *m.named_buffers()]
              if not t.requires_grad and not n.endswith(mutable or ("\0",))}
    train_steps(m, meth, synthetic_batch(case.model), steps=2, lr=1e-2)
    state = dict([*m.named_parameters(), *m.named_buffers()])
    changed = [n for n, t in frozen.items() if n not in state or not torch.equal(state[n], t)]
    assert not changed, f"frozen tensors changed by training: {changed[:5]}"


# ----------------------------------------------------------------------------------------------------------------
# Init, merge, checkpoints
# ----------------------------------------------------------------------------------------------------------------


def _same_as_base(case: Case, config=None) -> bool:
    base, _ = base_model(case.model, config=config)
    m, _, _, _ = _build(case, config=config)
    batch = synthetic_batch(case.model)
    return torch.allclose(_forward(m, batch), _forward(base, batch), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", PARAMS)
def test_init_is_identity_when_declared(case):
    """init_is_identity (as resolved for the case's options): the adapted model equals the base model at
    initialisation in eval mode and, when the adapter draws no randomness, in train mode with model dropout on
    and the RNG aligned (a dropped adapter input may change the output at init: PiSSA's B·A ≠ 0)."""
    config = MODEL_DROPOUT[case.model]  # eval mode ignores it
    m, meth, _, _ = _build(case, config=config)
    if not meth.init_is_identity:
        pytest.skip("init_is_identity is False for these options (test_non_identity_is_real checks it)")
    base, _ = base_model(case.model, config=config)
    batch = synthetic_batch(case.model)
    torch.testing.assert_close(_forward(m, batch), _forward(base, batch), rtol=1e-5, atol=1e-5)
    if not _adapter_dropout(case):
        torch.testing.assert_close(_train_pass(m, batch, 7)[2], _train_pass(base, batch, 7)[2], rtol=1e-5, atol=1e-5)


NON_IDENTITY = sorted({(c.method, c.options) for c in CASES
                       if not make_method(c.method, c.cls.conformance_ranks[0] if c.cls.needs_rank else None,
                                          c.opts).init_is_identity})


@pytest.mark.parametrize("method,options", NON_IDENTITY, ids=[f"{m}{dict(o)}" for m, o in NON_IDENTITY])
def test_non_identity_is_real(method, options):
    """init_is_identity False is not vacuous: for some rank and model of the case the output differs from the
    base model's (not for all: LoLDU's `constant` and `normal` inits are D_r itself at r = 1)."""
    cases = [c for c in CASES if (c.method, c.options) == (method, options)
             and BUILTIN[c.model]["task"] in c.cls.model_tasks]
    assert any(not _same_as_base(c) for c in cases), f"{method} {dict(options)}: identical to the base everywhere"


@pytest.mark.parametrize("case", PARAMS)
def test_merge(case):
    """mergeable: merged forward = unmerged, unmerge restores the base weights; otherwise merge is refused."""
    m, meth, _, _ = _build(case)
    if not meth.mergeable:
        with pytest.raises(ConfigError, match="cannot be merged"):
            meth.merge(m)
        return
    _perturb(m)
    batch = synthetic_batch(case.model)
    before = _forward(m, batch)
    weights = {n: p.detach().clone() for n, p in m.named_parameters() if ".base." in n}
    meth.merge(m)
    assert all(x.merged for x in adapted_layers(m))
    torch.testing.assert_close(_forward(m, batch), before, rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(p, weights[n]) for n, p in m.named_parameters() if n in weights)
    meth.unmerge(m)
    torch.testing.assert_close(_forward(m, batch), before, rtol=1e-4, atol=1e-5)
    for n, p in m.named_parameters():
        if n in weights:
            torch.testing.assert_close(p, weights[n], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", PARAMS)
def test_checkpoint_round_trip(case, tmp_path):
    m, meth, _, _ = _build(case, train_head=True)
    batch = synthetic_batch(case.model)
    train_steps(m, meth, batch, steps=2, lr=1e-2)  # hooks may update extra state
    _perturb(m, seed=2)
    want = _forward(m, batch)
    state = {k: v.detach().contiguous().clone() for k, v in adapter_state_dict(m).items()}
    save_file(state, str(tmp_path / "adapter.safetensors"))
    (tmp_path / "extra.json").write_text(json.dumps(meth.extra_state()))
    fresh, meth2, _, _ = _build(case, train_head=True)  # the same seed: the same frozen backbone
    assert not torch.equal(_forward(fresh, batch), want)
    loaded = load_file(str(tmp_path / "adapter.safetensors"))
    meth2.load_extra_state(json.loads((tmp_path / "extra.json").read_text()))
    meth2.prepare_load(fresh, loaded)
    load_adapter_state_dict(fresh, loaded)
    assert torch.equal(_forward(fresh, batch), want)
    if not type(meth).trains_backbone:
        assert not any(".base." in k for k in state)


# ----------------------------------------------------------------------------------------------------------------
# Train mode
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", PARAMS)
def test_train_mode_is_reproducible_under_an_aligned_rng(case):
    """Train mode (model dropout on): the same seed gives the same loss and gradients bit for bit (all randomness
    comes from the torch RNG, as exact resume needs); eval ignores the RNG."""
    m, _, _, _ = _build(case, config=MODEL_DROPOUT[case.model])
    _perturb(m)
    batch = synthetic_batch(case.model)
    (l1, g1, y1), (l2, g2, y2) = _train_pass(m, batch, 3), _train_pass(m, batch, 3)
    assert torch.equal(l1, l2) and torch.equal(y1, y2)
    assert g1.keys() == g2.keys() and all(torch.equal(g1[k], g2[k]) for k in g1)
    assert g1, "no gradients in train mode"
    torch.manual_seed(1)
    e1 = _forward(m, batch)
    torch.manual_seed(2)
    assert torch.equal(e1, _forward(m, batch))


def _zero_dropout(case: Case) -> Case:
    opts = {**case.opts, **{k: 0.0 for k in _drop_options(case.cls)}}
    return dataclasses.replace(case, options=_freeze(opts))


@pytest.mark.parametrize("case", DROPOUT_PARAMS)
def test_adapter_dropout_acts_in_train_mode_only(case):
    """With adapter dropout (model dropout off, so the adapter is the only source of randomness): other seeds
    give other outputs in train mode (a path that skips its dropout fails here); in eval the output equals the
    same adapter with its dropout options set to 0."""
    m, _, _, _ = _build(case)
    _perturb(m)
    batch = synthetic_batch(case.model)
    y = [_train_pass(m, batch, s)[2] for s in (0, 1, 2)]
    assert not torch.equal(y[0], y[1]) and not torch.equal(y[1], y[2]) and not torch.equal(y[0], y[2]), \
        "train-mode outputs do not depend on the seed: the adapter's dropout draws nothing"
    twin, _, _, _ = _build(_zero_dropout(case))
    load_adapter_state_dict(twin, adapter_state_dict(m))
    torch.testing.assert_close(_forward(m, batch), _forward(twin, batch), rtol=0, atol=0)


@pytest.mark.parametrize("case", [p for p in DROPOUT_PARAMS if p.values[0].rank in (None, 4)])
def test_adapter_dropout_is_unbiased(case):
    """Statistical check (where masks cannot be aligned with a reference): for every adapted layer, the mean of
    N train-mode outputs on a fixed input (N copies in one batch, so per-entry dropout and per-sample DropPath
    draw independently) is the eval output within 6 standard errors, and the outputs vary."""
    m, _, _, _ = _build(case)
    _perturb(m)
    layers = adapted_layers(m)
    if not layers:
        pytest.skip(f"{case.method} has no adapted layers (input-side method); its own tests cover dropout")
    n, varied = 512, 0
    for lay in layers:
        x = torch.randn(6, lay.in_features, generator=torch.Generator().manual_seed(5))
        lay.eval()
        with torch.no_grad():
            want = lay(x)
            lay.train()
            torch.manual_seed(11)
            ys = lay(x.expand(n, *x.shape).contiguous())  # n samples in one batch: per-sample/per-entry masks
        mean, se = ys.mean(0), ys.std(0) / n ** 0.5
        bad = (mean - want).abs() > 6 * se + 1e-5
        assert not bad.any(), f"{case}: train-mode mean differs from eval at {int(bad.sum())} entries"
        varied += bool((ys.std(0) > 0).any())
    assert varied, "no adapted layer's output varies in train mode"


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def _pretrained_like_norms(model, seed=4):
    """Give every normalisation layer non-unit weights and non-zero biases, as in a trained network (with the
    fresh γ = 1, β = 0 the entries of a LayerNorm output sum to exactly 0, so e.g. Bone at r = 1, whose update
    reads Σ_j x_j, has no gradient at all)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if "norm" in type(mod).__name__.lower():
                for name in ("weight", "bias"):
                    p = getattr(mod, name, None)
                    if isinstance(p, torch.Tensor) and p.dim() == 1:
                        p.copy_((1.0 if name == "weight" else 0.0) + 0.3 * torch.randn(p.shape, generator=g))


def _eval_loss(model, batch):
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


@pytest.mark.parametrize("case", LOSS_PARAMS)
def test_short_training_lowers_loss(case):
    """The same policy for every method: AdamW (no weight decay) for TRAIN_STEPS steps on one batch at each
    learning rate of LR_POLICY in turn, until one lowers the eval loss by LOSS_MARGIN relative (the backbone's
    norms made pretrained-like)."""
    batch = synthetic_batch(case.model)
    reason = next((why for opts, why in case.cls.non_learning if opts.items() <= case.opts.items()), None)
    if reason is not None:  # the declaration is checked: training leaves the loss where it was
        m, meth, _, _ = _build(case)
        _pretrained_like_norms(m)
        start = _eval_loss(m, batch)
        train_steps(m, meth, batch, steps=3, lr=LR_POLICY[0])
        assert _eval_loss(m, batch) == start, f"{case} is declared non-learning ({reason}) but the loss moved"
        return
    results = []
    for lr in LR_POLICY:
        m, meth, _, _ = _build(case)
        _pretrained_like_norms(m)
        start = _eval_loss(m, batch)
        train_steps(m, meth, batch, steps=TRAIN_STEPS, lr=lr)
        end = _eval_loss(m, batch)
        results.append(f"lr {lr:g}: {start:.4f} -> {end:.4f}")
        if end <= start * (1 - LOSS_MARGIN):
            return
    pytest.fail(f"{case}: no learning rate lowered the loss by {LOSS_MARGIN:.1%}: {'; '.join(results)}")
