"""AdaLoRA: cross-check against Hugging Face PEFT's AdaLoraModel (counts, forward, the masks chosen by
update_and_allocate over a short run), the published Llama-3.2-3B count, PEFT export, the procedure's
properties and a toy run where the signal sits in 2 of 8 layers."""
import ast
import warnings

import pytest
import torch

from rankflow_runtime.build import count
from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods._allocation import cubic_budget
from rankflow_runtime.methods.base import TrainContext, adapted_layers, trainable_numel
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.step import Stepper
from rankflow_runtime.testing import TINY_TARGETS, adapted_model, base_model, synthetic_batch

from _rank_toy import toy_run
from _schedule_runs import of_kind as _kind, run_capturing as _run, schedule_spec

peft = pytest.importorskip("peft")


def _pair(model="tiny-encoder", init_r=4, target_r=2, **opts):
    """Our AdaLoRA and PEFT's on the same base weights, with our initial A, E, B copied into PEFT's."""
    o = {"init_r": init_r, "alpha": 8.0, "orth_reg_weight": 0.5, **opts}
    ours, meth, _, _ = adapted_model(model, "adalora", rank=target_r, options=o)
    peft_opts = {k: v for k, v in o.items() if k in ("tinit", "tfinal", "beta1", "beta2", "orth_reg_weight")}
    cfg = peft.AdaLoraConfig(init_r=init_r, target_r=target_r, lora_alpha=8, target_modules=TINY_TARGETS[model],
                             total_step=o.get("total_step", 10), deltaT=o.get("delta_t", 1), **peft_opts)
    pm = peft.get_peft_model(base_model(model)[0], cfg)
    pairs = [(ours.get_submodule(t), pm.base_model.model.get_submodule(t)) for t in meth.targets]
    with torch.no_grad():
        for a, b in pairs:
            for piece in ("A", "E", "B"):
                getattr(b, "lora_" + piece)["default"].copy_(getattr(a, "lora_" + piece))
    return ours, meth, pm, pairs


def test_count_and_forward_match_peft():
    ours, meth, pm, pairs = _pair()
    assert trainable_numel(ours) == sum(p.numel() for p in pm.parameters() if p.requires_grad) == 1688
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # E ≠ 0 so ΔW ≠ 0
        for a, b in pairs:
            a.lora_E.copy_(torch.randn(a.lora_E.shape, generator=g))
            b.lora_E["default"].copy_(a.lora_E)
    batch = synthetic_batch("tiny-encoder")
    ours.eval(), pm.eval()
    with torch.no_grad():
        ctx = TrainContext(model=ours, step=0, total_steps=10)
        torch.testing.assert_close(ours(**batch).logits, pm(**batch).logits)
        ours_loss = ours(**batch).loss + meth.extra_loss(ctx)
        torch.testing.assert_close(ours_loss, pm.base_model(**batch).loss)  # AdaLoraModel.forward adds the regulariser
    for a, b in pairs:
        torch.testing.assert_close(a.delta_weight(), b.get_delta_weight("default"))


@pytest.mark.parametrize("model", ["tiny-encoder", "tiny-decoder"])
def test_masks_chosen_over_a_short_run_equal_peft(model):
    """Same weights, same batches, AdamW and clipping on both sides: after every step the kept triplets of
    every module equal the non-zero E entries PEFT keeps, through the falling budget and the frozen phase."""
    T = 12
    ours, meth, pm, pairs = _pair(model, init_r=4, target_r=2, tinit=2, tfinal=3, total_step=T)
    opt_o = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=2e-2)
    opt_p = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=2e-2)
    ctx = TrainContext(model=ours, step=0, total_steps=T)
    st = Stepper(ours, meth, opt_o, ctx, max_grad_norm=1.0, loss_fn=lambda m, b: m(**b).loss)
    meth.on_train_start(ctx)
    ours.train(), pm.train()
    kept_history = []
    for step in range(1, T + 1):
        batch = synthetic_batch(model, seed=step)
        torch.manual_seed(step)
        st.step([batch])
        torch.manual_seed(step)
        loss = pm.base_model(**batch).loss  # with the orth. regulariser, as PEFT trains
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pm.parameters(), 1.0)
        opt_p.step()
        pm.base_model.update_and_allocate(step)
        opt_p.zero_grad()
        kept_o = [a.rank_mask.bool().tolist() for a, _ in pairs]
        kept_p = [(b.lora_E["default"].view(-1) != 0).tolist() for _, b in pairs]
        assert kept_o == kept_p, f"step {step}"
        for a, b in pairs:
            torch.testing.assert_close(a.lora_E, b.lora_E["default"], rtol=1e-4, atol=1e-6)
        kept_history.append(sum(map(sum, kept_o)))
    n = len(pairs)
    budgets = [cubic_budget(s, 4 * n, 2 * n, 2, 3, T, 1)[0] for s in range(1, T + 1)]
    assert kept_history[:2] == [4 * n, 4 * n] and kept_history[-1] == 2 * n
    assert all(k <= b for k, b in zip(kept_history[2:], budgets[2:]))  # the budget holds at every step


def test_budget_schedule_equals_peft_at_every_step():
    from peft.tuners.adalora.layer import RankAllocator
    m, _ = base_model("tiny-encoder")
    pm = peft.get_peft_model(m, peft.AdaLoraConfig(init_r=6, target_r=2, tinit=10, tfinal=20, deltaT=3,
                                                   total_step=100, target_modules=["query", "value"]))
    ra = pm.base_model.rankallocator
    assert isinstance(ra, RankAllocator)
    for t in range(0, 101):
        assert cubic_budget(t, ra.init_bgt, ra.target_bgt, 10, 20, 100, 3) == ra.budget_schedule(t), t
    # hand values: at tinit the full budget, half way (1 − ½)³ of the gap above the target, at T − tfinal the target
    assert cubic_budget(10, 24, 8, 10, 20, 100, 1) == (24, False)
    assert cubic_budget(45, 24, 8, 10, 20, 100, 1) == (int(16 * 0.125 + 8), True)
    assert cubic_budget(80, 24, 8, 10, 20, 100, 1) == (8, True)


def test_llama_3_2_3b_q_v_count_equals_peft_published():
    spec = example_spec(**{"model.name": "llama-3.2-3b", "model.source": "hf", "model.task": "causal-lm",
                           "dataset.name": "synthetic/causal-lm", "dataset.metric": "perplexity",
                           "training.train_head": False})
    spec["method"].update(name="adalora", rank=32, options={"init_r": 64}, targets=["q_proj", "v_proj"])
    got = count(parse_spec(spec))
    # PEFT method_comparison/MetaMathQA results/adalora--llama-3.2-3B-rank32.json: 18,353,664 trainable
    assert got["trainable"] == got["formula"] == 18_353_664
    # the final pattern (Σ rank = 32 × 56 modules) at the average module size: q (3072+3072+1), v (3072+1024+1)
    assert got["final"] == 32 * 28 * ((3072 + 3072 + 1) + (3072 + 1024 + 1))


def _spec(**over):
    return schedule_spec("adalora", 2, {"init_r": 4, "tinit": 2, "tfinal": 3, "dropout": 0.1},
                         {"training.lr": 1e-2}, over)


def test_run_reports_budget_and_resumes_mid_schedule_exactly(tmp_path):
    _, ref = _run(_spec(), tmp_path / "ref")
    allocs = _kind(ref, "allocation")
    final = allocs[-1]
    n = len(final["ranks"])
    assert final["final"] and final["total"] == 2 * n and final["budget"] == 2 * n
    assert final["params"] == sum(r * (32 + (48 if "fc1" in k else 32) + 1) for k, r in final["ranks"].items())
    for a in allocs:  # the budget holds at every reported step and the trainable count never changes
        assert a["total"] <= a["budget"] and a["trainable_params"] == allocs[0]["trainable_params"]
    # the history: full budget first, falling, then the target
    totals = [h["total"] for h in final["history"]]
    assert totals[0] == 4 * n and totals == sorted(totals, reverse=True) and totals[-1] == 2 * n
    for stop in (4, 10):  # falling budget / frozen pattern
        rc, first = _run(_spec(), tmp_path / f"a{stop}", stop=stop)
        assert rc == 4
        rc, second = _run(_spec(), tmp_path / f"b{stop}", resume=_kind(first, "preempted")[0]["path"])
        assert rc == 0
        got = {r["step"]: r["loss"] for r in _kind(first, "progress") + _kind(second, "progress")}
        assert got == {r["step"]: r["loss"] for r in _kind(ref, "progress")}
        assert _kind(second, "allocation")[-1]["history"] == final["history"]
        assert _kind(second, "allocation")[-1]["ranks"] == final["ranks"]


def test_allocation_is_deterministic_given_the_seed(tmp_path):
    a = _kind(_run(_spec(), tmp_path / "a")[1], "allocation")[-1]
    b = _kind(_run(_spec(), tmp_path / "b")[1], "allocation")[-1]
    c = _kind(_run({**_spec(), "seed": 3}, tmp_path / "c")[1], "allocation")[-1]
    assert a["history"] == b["history"]
    assert c["total"] == a["total"]  # another seed: the same budget (its pattern may differ)


def test_soft_masking_regrows_between_masks_revives_and_the_frozen_pattern_stays():
    model, meth, _, _ = adapted_model("tiny-encoder", "adalora", rank=1,
                                      options={"init_r": 3, "tinit": 1, "tfinal": 4, "total_step": 14, "delta_t": 3})
    layers = adapted_layers(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    ctx = TrainContext(model=model, step=0, total_steps=14)
    st = Stepper(model, meth, opt, ctx, loss_fn=lambda m, b: m(**b).loss)
    meth.on_train_start(ctx)
    batch = synthetic_batch("tiny-encoder")
    regrew, frozen = False, None
    for step in range(1, 15):
        st.step([batch])
        assert all(m.ranknum == 3.0 for m in layers)  # the denominator never changes
        if step in (4, 5, 7, 8):  # between masks (every 3rd step): masked E are trained again
            regrew |= any((m.lora_E.view(-1)[m.rank_mask == 0] != 0).any().item() for m in layers)
        if step == 10:
            frozen = [m.rank_mask.clone() for m in layers]
        if step > 10:
            for m, f in zip(layers, frozen):
                assert torch.equal(m.rank_mask, f)
                assert (m.lora_E.view(-1)[f == 0] == 0).all()
    assert sum(int(f.sum()) for f in frozen) == 1 * len(layers)
    assert regrew, "masked E stay trainable between masks (soft masking)"
    # revival: a masked triplet whose score rises is kept at the next mask (decisions are not cumulative)
    m0 = layers[0]
    gone = int((m0.rank_mask == 0).nonzero()[0])
    with torch.no_grad():
        for lay in layers:
            lay.ipt_avg_E.fill_(1e-3)
            lay.ipt_unc_E.fill_(1e-3)
        m0.ipt_avg_E[gone] = 10.0
        m0.ipt_unc_E[gone] = 10.0
    meth.mask_to_budget(layers, budget=len(layers))
    assert m0.rank_mask[gone] == 1


def test_no_masking_when_init_r_equals_target_and_bad_schedule_is_refused():
    model, meth, _, _ = adapted_model("tiny-encoder", "adalora", rank=2, options={"init_r": 2, "total_step": 4})
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ctx = TrainContext(model=model, step=0, total_steps=4)
    st = Stepper(model, meth, opt, ctx, loss_fn=lambda m, b: m(**b).loss)
    meth.on_train_start(ctx)
    for _ in range(4):
        st.step([synthetic_batch("tiny-encoder")])  # k = 0: PEFT's kthvalue would raise
    assert all(int(m.rank_mask.sum()) == 2 for m in adapted_layers(model))
    _, meth2, _, _ = adapted_model("tiny-encoder", "adalora", rank=2, options={"tinit": 5, "tfinal": 5})
    with pytest.raises(ConfigError, match="method.options.tinit"):
        meth2.on_train_start(TrainContext(model=model, step=0, total_steps=10))
    with pytest.raises(ConfigError, match="init_r"):
        adapted_model("tiny-encoder", "adalora", rank=4, options={"init_r": 2})


def test_export_loads_in_peft_with_the_rank_pattern(tmp_path):
    from rankflow_runtime.export_peft import export_peft
    model, meth, info, _ = adapted_model("tiny-encoder", "adalora", rank=1,
                                         options={"init_r": 3, "tinit": 1, "tfinal": 2, "total_step": 8})
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    ctx = TrainContext(model=model, step=0, total_steps=8)
    st = Stepper(model, meth, opt, ctx, loss_fn=lambda m, b: m(**b).loss)
    meth.on_train_start(ctx)
    batch = synthetic_batch("tiny-encoder")
    for _ in range(8):
        st.step([batch])
    ranks = [m.rank() for m in adapted_layers(model)]
    assert sum(ranks) == len(ranks) and 0 in ranks  # some module pruned to 0, some kept > 1 (not uniform)
    cfg = export_peft(model, meth, str(tmp_path), head_name=info.head_name)
    assert cfg["peft_type"] == "ADALORA" and sum(sum(v) for v in cfg["rank_pattern"].values()) == sum(ranks)
    # PEFT's own AdaLoRA format (what its save_pretrained writes: the lora_E parameter names without the
    # adapter name), which its load consumes in resize_modules_by_rank_pattern.
    fresh = peft.get_peft_model(base_model("tiny-encoder")[0], peft.AdaLoraConfig(
        init_r=3, target_r=1, total_step=8, target_modules=cfg["target_modules"]))
    native = {n.removeprefix("base_model.model.").removesuffix(".default") for n, _ in fresh.named_parameters()
              if ".lora_E." in n}
    assert set(cfg["rank_pattern"]) == native
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        loaded = peft.PeftModel.from_pretrained(base_model("tiny-encoder")[0], str(tmp_path))
    # PEFT >= 0.21's generic rank_pattern check (peft PR #3588, written for LoRA's {module: rank} patterns)
    # warns that AdaLoRA's {module.lora_E: mask} keys match no module, though AdaLoRA applies them (PEFT's own
    # AdaLoRA save/load round trip warns the same): that one warning must name exactly our keys; any other
    # warning from the load fails the test.
    ignored = "The following rank_pattern keys did not match any targeted module and were ignored: "
    for w in seen:
        msg = str(w.message)
        if msg.startswith(ignored):
            assert sorted(ast.literal_eval(msg[len(ignored):].rstrip("."))) == sorted(cfg["rank_pattern"])
        elif not issubclass(w.category, FutureWarning) or "peft" in w.filename:
            pytest.fail(f"loading the exported AdaLoRA adapter warned: {msg}")
    model.eval(), loaded.eval()
    with torch.no_grad():
        feed = {k: v for k, v in batch.items() if k != "labels"}
        torch.testing.assert_close(model(**feed).logits, loaded(**feed).logits, rtol=1e-5, atol=1e-6)
    loaded_ranks = []
    for name, r in zip(meth.targets, ranks):
        mod = loaded.base_model.model.get_submodule(name)
        assert mod.lora_A["default"].shape[0] == mod.lora_E["default"].shape[0] == mod.lora_B["default"].shape[1]
        loaded_ranks.append(mod.lora_A["default"].shape[0])
    assert loaded_ranks == ranks  # the pattern was applied, pruned-to-0 modules included (not init_r everywhere)


def test_toy_rank_lands_on_the_signal_layers():
    """8 adapted 32×32 blocks; the teacher adds a rank-3 ΔW* to blocks 2 and 5. AdaLoRA init_r 4 → target 1
    (32 triplets pruned to a budget of 8), 200 steps. Recorded (seed 0): ranks [0, 1, 3, 0, 0, 4, 0, 0], 7/8
    of the budget in the two signal blocks, final MSE 0.014, against 0.42 for LoRA r = 1 (the same final rank
    budget, spread evenly) on the same task and steps."""
    res = toy_run("adalora", rank=1, options={"init_r": 4, "tinit": 20, "tfinal": 40, "orth_reg_weight": 0.1},
                  steps=200, lr=2e-2)
    lora = toy_run("lora", rank=1, options={}, steps=200, lr=2e-2)
    ranks = res["ranks"]
    print("adalora toy ranks per block:", ranks, "loss", res["loss"], "lora r=1 loss", lora["loss"])
    assert sum(ranks) == 8
    assert (ranks[2] + ranks[5]) / 8 >= 0.75 and min(ranks[2], ranks[5]) >= 3
    assert res["loss"] < 0.2 * lora["loss"]
