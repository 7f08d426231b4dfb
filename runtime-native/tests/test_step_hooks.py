"""The training loop's procedure hooks (`step.py`, `optim.py`): step order, the post-step hook, parameters
added during training (own groups, per-group restarted warmup, exact resume after growth) and allocation
events."""
import json
import math

import pytest
import torch
from torch import nn

from rankflow_runtime import events
from rankflow_runtime.methods.base import REGISTRY, LowRankLinear, Method, TrainContext, adapted_layers, register
from rankflow_runtime.optim import GroupRules, GroupSchedule, lr_lambda
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.step import Stepper
from rankflow_runtime.train import run_training

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 48, "vocab_size": 256,
        "max_position": 32, "dropout": 0.1}


# ------------------------------------------------------------------------------------------------------
# A method that grows: rank-1 pieces appended to ParameterLists at fixed steps (test-only registration)
# ------------------------------------------------------------------------------------------------------


class GrowLinear(LowRankLinear):
    def __init__(self, base, method, shared=None):
        super().__init__(base, method, shared)
        self.pieces_a, self.pieces_b = nn.ParameterList(), nn.ParameterList()
        self.scaling, self.dropout = 1.0, nn.Identity()
        self.grow()

    def grow(self):
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        a = nn.Parameter(torch.randn(1, self.in_features, **kw) * 0.1)
        b = nn.Parameter(torch.zeros(self.out_features, 1, **kw))
        self.pieces_a.append(a)
        self.pieces_b.append(b)
        return [a, b]

    def factors(self):
        return torch.cat(list(self.pieces_a), 0), torch.cat(list(self.pieces_b), 1)


class Grow(Method):
    """Test-only: every module grows by one rank in `after_backward` at step 2 and in `after_optimizer_step`
    at step 5 (the two places a growing method may add tensors), the first with restarted warmup."""

    name = "test-grow"
    paper = "test"
    needs_rank = False
    GROW_AT = {2: ("after_backward", True), 5: ("after_optimizer_step", False)}

    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        self.seen = []

    def layer_count(self, d_out, d_in):
        return d_out + d_in

    def wrap(self, name, base, shared):
        return GrowLinear(base, self, shared)

    def _maybe_grow(self, ctx, where):
        hook, restart = self.GROW_AT.get(ctx.step, (None, None))
        if hook == where:
            new = [p for m in adapted_layers(ctx.model) for p in m.grow()]
            ctx.add_parameters(new, restart_warmup=restart)

    def after_backward(self, ctx):
        self._maybe_grow(ctx, "after_backward")

    def after_optimizer_step(self, ctx):
        self._maybe_grow(ctx, "after_optimizer_step")

    def prepare_load(self, model, state):
        for name, m in model.named_modules():
            if isinstance(m, GrowLinear):
                while f"{name}.pieces_a.{len(m.pieces_a)}" in state:
                    m.grow()

    def allocation(self, model):
        return {"ranks": {n: len(m.pieces_a) for n, m in model.named_modules() if isinstance(m, GrowLinear)},
                "budget": None}


@pytest.fixture
def grow_method():
    register(Grow)
    yield Grow
    REGISTRY.pop(Grow.name, None)


def grow_spec(**over):
    s = example_spec(**{"model.config": TINY, "dataset.train_size": 64, "dataset.eval_size": 16,
                        "dataset.max_length": 16, "training.batch_size": 8, "training.grad_accum": 2,
                        "training.max_steps": 10, "training.eval_every": 5, "training.log_every": 1,
                        "training.warmup_ratio": 0.2, "training.schedule": "linear", "training.weight_decay": 0.1})
    s["method"].update(name="test-grow", rank=None, options={})
    for k, v in over.items():
        a, _, b = k.partition(".")
        s[a][b] = v
    return s


def run(spec, out, resume=None, stop=None):
    with events.capture() as recs:
        rc = run_training(parse_spec(json.loads(json.dumps(spec))), str(out), resume=resume, stop_at_step=stop)
    return rc, recs


def kind(recs, k):
    return [r for r in recs if r["event"] == k]


def losses(recs):
    return {r["step"]: r["loss"] for r in kind(recs, "progress")}


def test_growth_trains_new_groups_and_reports_allocation(grow_method, tmp_path):
    rc, recs = run(grow_spec(), tmp_path)
    assert rc == 0
    allocs = kind(recs, "allocation")
    # start (rank 1), after step 3 (grown in step index 2) rank 2, after step 6 rank 3, final
    assert [(a["step"], set(a["ranks"].values())) for a in allocs] == [(0, {1}), (3, {2}), (6, {3}), (10, {3})]
    assert [a["final"] for a in allocs] == [False, False, False, True]
    n_mod = len(allocs[0]["ranks"])
    assert allocs[-1]["total"] == 3 * n_mod
    done = kind(recs, "done")[0]
    started = kind(recs, "started")[0]
    assert done["trainable_params"] == allocs[-1]["trainable_params"] > started["trainable_params"]


def _stepper_with(model, method, schedule="linear", warmup=2, total=10, wd=0.1):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": params, "lr": 1e-2, "weight_decay": wd}], lr=1e-2)
    sched = GroupSchedule(opt, schedule, warmup, total)
    ctx = TrainContext(model=model, step=0, total_steps=total)
    return Stepper(model, method, opt, ctx, scheduler=sched, rules=GroupRules(1e-2, {}, wd), max_grad_norm=0.5,
                   loss_fn=lambda m, b: m(**b).loss), opt, sched


def test_added_groups_get_restarted_warmup_and_their_own_decay(grow_method):
    from rankflow_runtime.testing import adapted_model, synthetic_batch
    model, meth, _, _ = adapted_model("tiny-encoder", "test-grow", rank=None)
    stepper, opt, sched = _stepper_with(model, meth)
    batch = synthetic_batch("tiny-encoder")
    lrs = []
    for _ in range(10):
        stepper.step([batch])
        lrs.append([g["lr"] for g in opt.param_groups])
    # step index 2 adds (after_backward, restarted warmup) two groups: A (decay) and B... both 2-D -> one group
    assert len(opt.param_groups) == 3
    g1, g2 = opt.param_groups[1], opt.param_groups[2]
    assert g1["added"] and g1["schedule_start"] == 3 and g1["weight_decay"] == 0.1
    assert g2["schedule_start"] == 0  # no restart: follows the global schedule
    f_new, f_glob = lr_lambda("linear", 2, 10 - 3), lr_lambda("linear", 2, 10)
    for i, row in enumerate(lrs):  # row i: lr after i+1 scheduler steps, i.e. for optimizer step i+1
        c = i + 1
        assert row[0] == pytest.approx(1e-2 * f_glob(c), abs=0, rel=0)
        if len(row) > 1:
            assert row[1] == (1e-2 * f_new(c - 3) if c >= 3 else 0.0)
        if len(row) > 2:
            assert row[2] == 1e-2 * f_glob(c)
    # the new tensors first trained at the step after they were added
    assert all(p.grad is None for g in opt.param_groups for p in g["params"])


def test_group_schedule_equals_lambdalr_bit_for_bit():
    for schedule in ("linear", "cosine", "constant"):
        p = nn.Parameter(torch.zeros(1))
        a = torch.optim.AdamW([{"params": [p], "lr": 3e-3}, {"params": [nn.Parameter(torch.zeros(1))], "lr": 1e-3}])
        b = torch.optim.AdamW([{"params": [p], "lr": 3e-3}, {"params": [nn.Parameter(torch.zeros(1))], "lr": 1e-3}])
        ours = GroupSchedule(a, schedule, 3, 17)
        theirs = torch.optim.lr_scheduler.LambdaLR(b, lr_lambda(schedule, 3, 17))
        for _ in range(20):
            assert [g["lr"] for g in a.param_groups] == [g["lr"] for g in b.param_groups]
            a.step()
            b.step()
            ours.step()
            theirs.step()


class Probe(Method):
    """Records what each hook sees (test-only; not registered)."""

    name = "probe"
    needs_rank = False

    def __init__(self):
        super().__init__()
        self.calls, self.facts = [], {}

    def _p(self, ctx):
        return next(p for p in ctx.model.parameters() if p.requires_grad)

    def before_forward(self, ctx):
        self.calls.append(("before_forward", ctx.step))
        self.facts["w0"] = self._p(ctx).detach().clone()

    def extra_loss(self, ctx):
        self.calls.append(("extra_loss", ctx.step))

    def after_backward(self, ctx):
        self.calls.append(("after_backward", ctx.step))
        self.facts["raw_norm"] = float(torch.nn.utils.get_total_norm(
            [p.grad for p in ctx.model.parameters() if p.grad is not None]))

    def after_optimizer_step(self, ctx):
        self.calls.append(("after_optimizer_step", ctx.step))
        grads = [p.grad for p in ctx.model.parameters() if p.requires_grad]
        self.facts["clipped_norm"] = float(torch.nn.utils.get_total_norm(grads))
        self.facts["moved"] = not torch.equal(self._p(ctx), self.facts["w0"])
        self.facts["lr_now"] = ctx.optimizer.param_groups[0]["lr"]

    def after_step(self, ctx):
        self.calls.append(("after_step", ctx.step))
        self.facts["grads_after"] = [p.grad for p in ctx.model.parameters() if p.requires_grad]


def test_hook_order_and_what_each_hook_sees():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)

    class Out:
        def __init__(self, loss):
            self.loss = loss

    wrapper = nn.Module()
    wrapper.lin = model
    wrapper.forward = lambda x, y: Out(((model(x) - y) ** 2).sum() * 100)  # large loss: clipping bites
    probe = Probe()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = GroupSchedule(opt, "linear", 0, 4)
    ctx = TrainContext(model=wrapper, step=0, total_steps=4)
    st = Stepper(wrapper, probe, opt, ctx, scheduler=sched, max_grad_norm=0.5,
                 loss_fn=lambda m, b: m.forward(b["x"], b["y"]).loss)
    batches = [{"x": torch.randn(2, 4), "y": torch.randn(2, 3)} for _ in range(2)]
    r = st.step(batches)
    assert probe.calls == [("before_forward", 0), ("extra_loss", 0), ("extra_loss", 0), ("after_backward", 0),
                           ("after_optimizer_step", 0), ("after_step", 1)]
    assert probe.facts["raw_norm"] > 0.5 and probe.facts["clipped_norm"] == pytest.approx(0.5, rel=1e-4)
    assert probe.facts["moved"] and probe.facts["lr_now"] == pytest.approx(0.1 * 0.75)  # scheduler stepped
    assert all(g is None for g in probe.facts["grads_after"])
    assert r.micro_batches == 2 and r.examples == 0 and ctx.step == 1 and math.isfinite(r.loss)


@pytest.mark.parametrize("stop", [2, 3, 4, 7])
def test_resume_after_growth_is_bit_identical(grow_method, tmp_path, stop):
    spec = grow_spec()
    _, ref = run(spec, tmp_path / "ref")
    rc, first = run(spec, tmp_path / "a", stop=stop)
    assert rc == 4
    path = kind(first, "preempted")[0]["path"]
    manifest = json.load(open(f"{path}/manifest.json"))
    n_groups = len(manifest["optimizer"]["param_groups"])
    assert n_groups == 3 + (stop >= 3) + (stop >= 6)  # base (adapter, head weight, head bias) + one per growth
    rc, second = run(spec, tmp_path / "b", resume=path)
    assert rc == 0
    assert {**losses(first), **losses(second)} == losses(ref)
    assert kind(second, "done")[0]["metrics"] == kind(ref, "done")[0]["metrics"]
    assert kind(second, "allocation")[-1] | {"time": 0} == kind(ref, "allocation")[-1] | {"time": 0}
    assert kind(second, "started")[0]["trainable_params"] == kind(first, "allocation")[-1]["trainable_params"]


def test_resume_refuses_a_method_that_does_not_regrow(grow_method, tmp_path, monkeypatch):
    from rankflow_runtime.errors import ConfigError
    rc, first = run(grow_spec(), tmp_path / "a", stop=4)
    path = kind(first, "preempted")[0]["path"]
    monkeypatch.setattr(Grow, "prepare_load", lambda self, model, state: None)
    with pytest.raises(ConfigError, match="checkpoint does not match the model"):
        run(grow_spec(), tmp_path / "b", resume=path)


def test_allocation_history_survives_resume(grow_method, tmp_path):
    _, ref = run(grow_spec(), tmp_path / "ref")
    rc, first = run(grow_spec(), tmp_path / "a", stop=4)
    path = kind(first, "preempted")[0]["path"]
    rc, second = run(grow_spec(), tmp_path / "b", resume=path)
    final_ref, final = kind(ref, "allocation")[-1], kind(second, "allocation")[-1]
    assert final["final"] and final["history"] == final_ref["history"]
    assert [h["step"] for h in final["history"]] == [0, 3, 6]
    assert kind(second, "allocation")[0]["step"] == 4 and not kind(second, "allocation")[0]["final"]
