"""TriAdaptLoRA: triangular core from block strips, counts, the score Δ(‖C‖_F / n_blocks), growth timing and
rules, the R/(R+k) rescale, formula = trainables after every growth, exact resume, the official all-zero init
leaving ΔW ≡ 0 (the pinned deviation), and a toy run where the signal sits in 2 of 8 layers."""

import pytest
import torch

from rankflow_runtime.methods.base import TrainContext, adapted_layers, trainable_numel
from rankflow_runtime.methods.triadaptlora import TriAdaptLoRA
from rankflow_runtime.optim import GroupRules
from rankflow_runtime.step import Stepper
from rankflow_runtime.testing import adapted_model, synthetic_batch

from _rank_toy import toy_run
from _schedule_runs import of_kind as _kind, run_capturing as _run, schedule_spec


def _stepper(model, meth, total=30, lr=2e-2):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    ctx = TrainContext(model=model, step=0, total_steps=total)
    st = Stepper(model, meth, opt, ctx, rules=GroupRules(lr, {}, 0.0), loss_fn=lambda m, b: m(**b).loss)
    meth.on_train_start(ctx)
    return st, opt


def test_core_is_block_triangular_and_counts_match_the_formula():
    model, meth, _, formula = adapted_model("tiny-encoder", "triadaptlora", rank=6,
                                            options={"init_rank": 2, "incre_rank_num": 2})
    m = adapted_layers(model)[0]
    m.add_block(2)
    m.add_block(1)
    with torch.no_grad():
        for p in list(m.lora_C_row) + list(m.lora_C_col):
            p.fill_(1.0)
    c = m.core()
    assert c.shape == (5, 5)
    # row strips give the lower block triangle, column strips the upper one; diagonal blocks appear in both
    want = torch.tensor([[2, 2, 1, 1, 1], [2, 2, 1, 1, 1], [1, 1, 2, 2, 1], [1, 1, 2, 2, 1], [1, 1, 1, 1, 2.]])
    assert torch.equal(c, want)
    d_in, d_out = m.in_features, m.out_features
    assert m.params() == 5 * (d_in + d_out) + 2 * (2 * 2 + 2 * 4 + 1 * 5)  # R(d_in+d_out) + Σ 2·k_t·R_t
    # at build time (one block of init_rank 2 per module): init_rank(d_in + d_out) + 2·init_rank²
    assert formula == sum(2 * (a.in_features + a.out_features) + 2 * 2 * 2 for a in adapted_layers(model))
    # `final` (count): every module at rank 6 with blocks [2, 2, 2]
    assert meth.final_sizes() == [2, 2, 2]
    assert TriAdaptLoRA.block_count(d_out, d_in, [1, 4]) == 5 * (d_in + d_out) + 2 * (1 + 4 * 5)


def test_score_is_the_increase_of_the_normalised_frobenius_norm():
    model, meth, _, _ = adapted_model("tiny-encoder", "triadaptlora", rank=4, options={"incre_rank_num": 1})
    m = adapted_layers(model)[0]
    with torch.no_grad():
        m.lora_C_row[0].fill_(3.0)  # C = [[3 + C_col]] with C_col = 0
    assert m.compute_score() == pytest.approx(3.0)  # ‖C‖ / 1 − 0
    m.add_block(1)
    with torch.no_grad():
        m.lora_C_col[1].fill_(4.0)  # C = [[3, 4], [0, 4]] → ‖C‖ = √41, two blocks
    assert m.compute_score() == pytest.approx(41 ** 0.5 / 2 - 3.0)
    assert m.compute_score() == pytest.approx(0.0)  # unchanged since the last call


def test_growth_rescales_delta_w_by_r_over_r_plus_k():
    model, meth, _, _ = adapted_model("tiny-encoder", "triadaptlora", rank=4,
                                      options={"init_rank": 2, "incre_rank_num": 2})
    m = adapted_layers(model)[0]
    with torch.no_grad():
        m.lora_C_row[0].normal_()
    before = m.delta_weight().detach()
    m.add_block(2)  # new strips are zero
    torch.testing.assert_close(m.delta_weight(), before * (2 + 1e-5) / (4 + 1e-5))


def test_growth_timing_budget_and_formula_after_every_growth():
    model, meth, _, _ = adapted_model("tiny-encoder", "triadaptlora", rank=3,
                                      options={"init_warmup": 3, "incre_interval": 3, "incre_rank_num": 1})
    st, opt = _stepper(model, meth)
    layers = adapted_layers(model)
    n = len(layers)
    totals = []
    for step in range(30):
        st.step([synthetic_batch("tiny-encoder")])
        total = sum(m.rank() for m in layers)
        totals.append(total)
        assert total <= 3 * n  # capped: never above the budget
        assert trainable_numel(model) == sum(m.params() for m in layers)  # the formula, after every growth
        if step <= 3 or step % 3:
            assert total == (totals[-2] if step else n)  # growth only at t > warmup and t % interval == 0
    assert totals[-1] == 3 * n
    assert len(opt.param_groups) == 1 + sum(1 for a, b in zip([n] + totals, totals) if b > a)


def test_official_rule_can_overshoot_and_capped_does_not():
    def fake(rule):
        meth = TriAdaptLoRA(4, {"incre_rank_num": 2, "growth_rule": rule}, 0)
        meth.targets = [f"m{i}" for i in range(5)]  # target 20
        return meth
    scores = [0.5, 0.4, 0.3, 0.2, 0.1]
    assert sum(fake("official").select(scores, 3, 17)) == 6  # 17 + 6 = 23 > 20: (n − 1)·k over at most
    assert sum(fake("capped").select(scores, 3, 17)) == 3  # exactly to 20
    meth = fake("capped")
    meth.total, meth.options.init_warmup = 100, 0
    assert meth.n_grow(50, 10, 5) == 5  # ⌊10 · 0.5⌋ = 5
    meth.options.rank_growth_model = "non-linear"
    assert meth.n_grow(50, 10, 5) == 3  # ⌊10^0.5⌋ = 3
    assert meth.n_grow(1, 19, 5) == 1  # at least one module


def test_official_all_zero_init_leaves_delta_w_zero_for_the_whole_run():
    """The pinned deviation: with the file's init (B, C and later blocks zero) every gradient is zero."""
    model, meth, _, _ = adapted_model("tiny-encoder", "triadaptlora", rank=3,
                                      options={"init": "official", "incre_rank_num": 1, "orth_reg_weight": 0.5})
    st, _ = _stepper(model, meth, total=12)
    layers = adapted_layers(model)
    for _ in range(12):
        st.step([synthetic_batch("tiny-encoder")])
        for m in layers:
            assert torch.count_nonzero(m.delta_weight()) == 0
    assert sum(m.rank() for m in layers) > len(layers)  # it grew, and still nothing learned
    for m in layers:
        assert all(torch.count_nonzero(p) == 0 for p in list(m.lora_B) + list(m.lora_C_row) + list(m.lora_C_col))
    # our init: the same run learns (ΔW ≠ 0)
    model2, meth2, _, _ = adapted_model("tiny-encoder", "triadaptlora", rank=3, options={"incre_rank_num": 1})
    st2, _ = _stepper(model2, meth2, total=12)
    for _ in range(3):
        st2.step([synthetic_batch("tiny-encoder")])
    assert all(torch.count_nonzero(m.delta_weight()) > 0 for m in adapted_layers(model2))


def _spec(**over):
    return schedule_spec("triadaptlora", 3, {"init_warmup": 1, "incre_interval": 2, "incre_rank_num": 1,
                                                   "dropout": 0.1},
                         {"training.lr": 1e-2}, over)


def test_resume_mid_growth_is_exact_and_deterministic(tmp_path):
    _, ref = _run(_spec(), tmp_path / "ref")
    final = _kind(ref, "allocation")[-1]
    assert final["total"] <= final["budget"] == 18 and len(final["history"]) > 2
    assert _kind(_run(_spec(), tmp_path / "again")[1], "allocation")[-1]["history"] == final["history"]
    for stop in (3, 6, 9):
        rc, first = _run(_spec(), tmp_path / f"a{stop}", stop=stop)
        rc, second = _run(_spec(), tmp_path / f"b{stop}", resume=_kind(first, "preempted")[0]["path"])
        assert rc == 0
        got = {r["step"]: r["loss"] for r in _kind(first, "progress") + _kind(second, "progress")}
        assert got == {r["step"]: r["loss"] for r in _kind(ref, "progress")}
        assert _kind(second, "allocation")[-1]["history"] == final["history"]


def test_toy_rank_lands_on_the_signal_layers():
    """8 blocks, teacher rank-3 ΔW* in blocks 2 and 5; reference rank 2 (budget 16) from init 1, k 1, growth every
    20 steps after 100, 300 steps. Recorded (seed 0): linear [1, 1, 4, 2, 1, 5, 1, 1] (7 of the 8 added ranks on
    the signal), MSE 0.0756; non-linear [1, 1, 4, 1, 1, 5, 2, 1], MSE 0.0736; LoRA r = 2: 0.184. The abstract's
    "linear growth is best" is not reproduced on this toy (the two differ by 3 %). With an earlier, denser
    schedule (growth every 10 steps after 20) the file's score spreads the rank ([2, 2, 3, 1, 2, 3, 2, 1]): a
    module that just grew has one more block, its normalised norm drops and its next score is negative."""
    opts = {"init_rank": 1, "incre_rank_num": 1, "init_warmup": 100, "incre_interval": 20, "orth_reg_weight": 0.1,
            "alpha": 1.0}
    lin = toy_run("triadaptlora", rank=2, options=opts, steps=300, lr=2e-2)
    nonlin = toy_run("triadaptlora", rank=2, options={**opts, "rank_growth_model": "non-linear"}, steps=300,
                     lr=2e-2)
    lora = toy_run("lora", rank=2, options={}, steps=300, lr=2e-2)
    for name, r in (("linear", lin), ("non-linear", nonlin)):
        print(f"triadaptlora {name} toy ranks per block:", r["ranks"], "loss", r["loss"])
    print("lora r=2 loss", lora["loss"])
    for r in (lin, nonlin):
        added = [x - 1 for x in r["ranks"]]
        assert sum(r["ranks"]) == 16 and (added[2] + added[5]) / sum(added) >= 0.7
        assert r["loss"] < 0.6 * lora["loss"]
