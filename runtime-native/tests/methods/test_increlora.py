"""IncreLoRA: growth schedule, selection rules (official overshoot vs capped), reserve pieces, the ΔW rescale,
the score formula, per-group restarted warmup, exact resume mid-growth, formula = trainables after every growth,
and a toy run where the signal sits in 2 of 8 layers."""
import math

import pytest
import torch

from rankflow_runtime.methods.base import TrainContext, adapted_layers, trainable_numel
from rankflow_runtime.methods.increlora import IncreLoRA
from rankflow_runtime.optim import GroupRules, GroupSchedule
from rankflow_runtime.step import Stepper
from rankflow_runtime.testing import adapted_model, synthetic_batch

from _rank_toy import toy_run
from _schedule_runs import of_kind as _kind, run_capturing as _run, schedule_spec


def _stepper(model, meth, total=40, warmup=4, lr=1e-2):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    sched = GroupSchedule(opt, "linear", warmup, total)
    ctx = TrainContext(model=model, step=0, total_steps=total)
    st = Stepper(model, meth, opt, ctx, scheduler=sched, rules=GroupRules(lr, {}, 0.0),
                 loss_fn=lambda m, b: m(**b).loss)
    meth.on_train_start(ctx)
    return st, opt, sched


def _expected_trainable(model, meth):
    k = meth.k if meth.options.advance_learn else 0
    return sum(m.rank() * (m.in_features + m.out_features + 1) + (k if len(m.lora_A) > 1 else 0)
               * (m.in_features + m.out_features) for m in adapted_layers(model))


def test_growth_schedule_budget_formula_and_groups():
    model, meth, _, _ = adapted_model("tiny-encoder", "increlora", rank=3,
                                      options={"init_warmup": 4, "incre_interval": 2, "top_h": 2,
                                               "incre_rank_num": 1})
    st, opt, sched = _stepper(model, meth)
    batch = synthetic_batch("tiny-encoder")
    layers = adapted_layers(model)
    n, target = len(layers), 3 * len(layers)
    history = []
    for step in range(40):
        groups_before = len(opt.param_groups)
        st.step([batch])
        total = sum(m.rank() for m in layers)
        history.append(total)
        assert total <= target  # the budget at every step (capped rule)
        assert trainable_numel(model) == _expected_trainable(model, meth)  # formula after every growth
        grew = total > (history[-2] if step else n)
        assert len(opt.param_groups) == groups_before + (1 if grew or step == 0 else 0)
        if grew:
            g = opt.param_groups[-1]
            assert g["added"] and g["schedule_start"] == step + 1  # warmup restarts at the next step
            assert g["lr"] == pytest.approx(1e-2 / 4)  # its first step: (0+1)/warmup of the base lr
            assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 * sched.factor(opt.param_groups[0]))
    # first growth at init_warmup + interval (strict `>`: step 4 does not grow, step 6 does)
    assert history[:6] == [n] * 6 and history[6] == n + 2
    assert history[-1] == target


def test_reserve_pieces_and_activation():
    model, meth, _, _ = adapted_model("tiny-encoder", "increlora", rank=2,
                                      options={"init_warmup": 0, "incre_interval": 1, "top_h": 1})
    st, opt, _ = _stepper(model, meth)
    layers = adapted_layers(model)
    assert all(len(m.lora_A) == 1 for m in layers)
    st.step([synthetic_batch("tiny-encoder")])  # step 0: reserves appear (k = 1 for rank 2)
    for m in layers:
        assert len(m.lora_A) == 2 and not m.lora_E[1].requires_grad and float(m.lora_E[1]) == pytest.approx(1e-5)
        assert m.lora_A[1].requires_grad and m.lora_B[1].requires_grad
    st.step([synthetic_batch("tiny-encoder")])  # step 1 > warmup 0: the best module activates its reserve
    grown = [m for m in layers if m.rank() == 2]
    assert len(grown) == 1
    g = grown[0]
    assert g.lora_E[1].requires_grad and len(g.lora_A) == 3 and not g.lora_E[2].requires_grad


def test_growth_rescales_delta_w_by_r_over_r_plus_k():
    model, meth, _, _ = adapted_model("tiny-encoder", "increlora", rank=4,
                                      options={"advance_learn": False, "incre_rank_num": 2, "init_r": 2})
    layers = adapted_layers(model)
    with torch.no_grad():
        for m in layers:
            m.lora_E[0].normal_()
    for m in layers:
        m.add_reserve(2, advance=False)  # e = 0: the reserve adds nothing to ΔW
    before = [m.delta_weight().detach() for m in layers]
    layers[0].activate(2, 2, advance=False)
    after = layers[0].delta_weight().detach()
    torch.testing.assert_close(after, before[0] * (2 + 1e-5) / (4 + 1e-5))
    torch.testing.assert_close(layers[1].delta_weight(), before[1])


def test_score_formula_on_a_hand_computed_case():
    m, meth, _, _ = adapted_model("tiny-encoder", "increlora", rank=2, options={"init_r": 1, "alpha": 1.0})
    layer = adapted_layers(m)[0]
    with torch.no_grad():
        layer.lora_E[0].fill_(2.0)
    layer.train()
    x = torch.randn(3, layer.in_features)
    c = torch.randn(3, layer.out_features)
    y = layer(x)
    (y * c).sum().backward()
    layer.update_score(0.5, 0.5)
    delta = layer.delta_weight().detach()
    grad = c.t() @ x  # ∂L/∂ΔW for y = W0 x + ΔW x
    want = (delta * grad).abs().sum() / math.sqrt(delta.numel())
    torch.testing.assert_close(layer.score, want)
    torch.testing.assert_close(layer.ipt_avg, 0.5 * want)  # Ī = 0.5·0 + 0.5·s
    torch.testing.assert_close(layer.ipt_unc, 0.5 * (want - 0.5 * want).abs())


def _fake(n_modules, rank, **opts):
    meth = IncreLoRA(rank, opts, 0)
    meth.targets = [f"m{i}" for i in range(n_modules)]
    return meth


def _simulate(meth, n_modules, init_total, rounds=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = init_total
    for _ in range(rounds):
        if total >= meth.target():
            break
        total += sum(meth.select(torch.rand(n_modules, generator=g).tolist(), total))
    return total


def test_official_rule_overshoots_qnli_rank_8_and_capped_lands_on_target():
    """QNLI rank-8 script: 72 modules (DeBERTaV3-base, 6 types × 12 layers), lora_r 1, top_h 22, k 4."""
    official = _fake(72, 8, top_h=22, growth_rule="official")
    capped = _fake(72, 8, top_h=22, growth_rule="capped")
    assert official.k == capped.k == 4
    assert _simulate(official, 72, 72) == 600
    assert _simulate(capped, 72, 72) == 576 == 8 * 72
    # ties: the official threshold grows every module at or above it; capped grows exactly n by module order
    tied = [0.5, 0.9, 0.9, 0.9, 0.1]
    assert _fake(5, 2, top_h=2, growth_rule="official").select(tied, 5) == [0, 1, 1, 1, 0]
    assert _fake(5, 2, top_h=2, growth_rule="capped").select(tied, 5) == [0, 1, 1, 0, 0]
    # capped: the last module grows by what is left
    assert _fake(4, 3, top_h=4, incre_rank_num=2).select([4.0, 3.0, 2.0, 1.0], 9) == [2, 1, 0, 0]


def _spec(**over):
    return schedule_spec("increlora", 3, {"init_warmup": 2, "incre_interval": 2, "top_h": 3, "incre_rank_num": 1,
                                                "dropout": 0.1},
                         {"training.grad_accum": 2, "training.max_steps": 14, "training.eval_every": 7,
                          "training.weight_decay": 0.01, "training.warmup_ratio": 0.2}, over)


@pytest.mark.parametrize("rule", ["capped", "official"])
def test_resume_mid_growth_is_exact_and_allocation_is_deterministic(tmp_path, rule):
    spec = _spec()
    spec["method"]["options"]["growth_rule"] = rule
    _, ref = _run(spec, tmp_path / "ref")
    final = _kind(ref, "allocation")[-1]
    assert final["total"] == 18 and final["budget"] == 18  # k = 1: neither rule overshoots
    assert [h["total"] for h in final["history"]] == sorted(h["total"] for h in final["history"])
    _, again = _run(spec, tmp_path / "again")
    assert _kind(again, "allocation")[-1]["history"] == final["history"]  # deterministic given the seed
    for stop in (3, 7, 12):  # before the first growth, between growths, after the budget is reached
        rc, first = _run(spec, tmp_path / f"a{stop}", stop=stop)
        assert rc == 4
        rc, second = _run(spec, tmp_path / f"b{stop}", resume=_kind(first, "preempted")[0]["path"])
        assert rc == 0
        got = {r["step"]: r["loss"] for r in _kind(first, "progress") + _kind(second, "progress")}
        assert got == {r["step"]: r["loss"] for r in _kind(ref, "progress")}
        assert _kind(second, "allocation")[-1]["history"] == final["history"]
        assert _kind(second, "done")[0]["trainable_params"] == _kind(ref, "done")[0]["trainable_params"]


def test_toy_rank_lands_on_the_signal_layers():
    """8 blocks, teacher rank-3 ΔW* in blocks 2 and 5; IncreLoRA init_r 1 → target 2 (budget 16), k 1, top_h 1,
    grow every 20 steps after 20, 300 steps. Recorded (seed 0): ranks [1, 1, 4, 1, 1, 6, 1, 1], i.e. all 8 added
    ranks went to the two signal blocks; final MSE 0.086 against 0.184 for LoRA r = 2 (same final rank budget)."""
    res = toy_run("increlora", rank=2, options={"init_r": 1, "incre_rank_num": 1, "top_h": 1, "init_warmup": 20,
                                                 "incre_interval": 20, "orth_reg_weight": 0.1, "alpha": 1.0},
                  steps=300, lr=2e-2)
    lora = toy_run("lora", rank=2, options={}, steps=300, lr=2e-2)
    ranks = res["ranks"]
    print("increlora toy ranks per block:", ranks, "loss", res["loss"], "lora r=2 loss", lora["loss"])
    assert sum(ranks) == 16
    added = [r - 1 for r in ranks]
    assert (added[2] + added[5]) / 8 >= 0.75 and min(ranks[2], ranks[5]) >= 4
    assert res["loss"] < lora["loss"]
