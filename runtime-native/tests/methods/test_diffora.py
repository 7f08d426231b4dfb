"""DiffoRA: selection count ⌈ρM⌉ with a deterministic tie-break, the bi-level alternation, weight sharing across
the discretisation (same ΔW before and after), unselected modules contribute exactly 0, the formula after the
selection, exact resume across the search / fine-tune boundary, and a toy run where the signal sits in 2 of 8."""

import pytest
import torch

from rankflow_runtime.methods.base import TrainContext, adapted_layers, trainable_numel
from rankflow_runtime.optim import GroupRules
from rankflow_runtime.step import Stepper
from rankflow_runtime.testing import adapted_model, base_model, synthetic_batch

from _rank_toy import toy_run
from _schedule_runs import of_kind as _kind, run_capturing as _run, schedule_spec


def _stepper(model, meth, total=12, lr=2e-2):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    ctx = TrainContext(model=model, step=0, total_steps=total)
    st = Stepper(model, meth, opt, ctx, rules=GroupRules(lr, {}, 0.0), loss_fn=lambda m, b: m(**b).loss)
    meth.on_train_start(ctx)
    return st


@pytest.mark.parametrize("ratio,n_sel", [(0.5, 3), (0.34, 3), (0.33, 2), (0.0, 0), (1.0, 6)])
def test_selects_ceil_rho_m_modules_with_ties_by_module_order(ratio, n_sel):
    model, meth, _, _ = adapted_model("tiny-encoder", "diffora", rank=2, options={"ratio": ratio})
    layers = adapted_layers(model)  # 6 candidates (query, value, fc1 × 2 layers)
    assert meth.n_selected(len(layers)) == n_sel
    meth.select(layers)  # all gates equal (γ = 0): the first modules in order win
    assert [m.is_selected for m in layers] == [True] * n_sel + [False] * (6 - n_sel)


def test_bilevel_alternates_gates_and_adapters():
    model, meth, _, _ = adapted_model("tiny-encoder", "diffora", rank=2, options={"search_steps": 6})
    st = _stepper(model, meth)
    layers = adapted_layers(model)
    batch = synthetic_batch("tiny-encoder")
    for step in range(6):
        gates = [m.dam_gate.detach().clone() for m in layers]
        loras = [torch.cat([m.lora_A.detach().flatten(), m.lora_B.detach().flatten()]) for m in layers]
        st.step([batch])
        gates_moved = any(not torch.equal(g, m.dam_gate) for g, m in zip(gates, layers))
        lora_moved = any(not torch.equal(a, torch.cat([m.lora_A.flatten(), m.lora_B.flatten()]))
                         for a, m in zip(loras, layers))
        if step % 2 == 0:  # gate step (at step 0 B = 0, so ΔW = 0 and the gates' gradient is 0 too)
            assert gates_moved == (step > 0) and not lora_moved, step
        else:
            assert lora_moved and not gates_moved, step


def test_weight_sharing_keeps_delta_w_and_unselected_contribute_zero():
    model, meth, info, _ = adapted_model("tiny-encoder", "diffora", rank=2, options={"search_steps": 4,
                                                                                       "ratio": 0.5})
    st = _stepper(model, meth)
    layers = adapted_layers(model)
    batch = synthetic_batch("tiny-encoder")
    for _ in range(3):
        st.step([batch])
    st.step([batch])  # step 4 ends the search
    assert meth.searched and sum(m.is_selected for m in layers) == 3
    for m in layers:
        assert not m.dam_gate.requires_grad
        if not m.is_selected:
            assert torch.count_nonzero(m.delta_weight()) == 0
            assert not m.lora_A.requires_grad and not m.lora_B.requires_grad
    # the model equals the base model with only the selected modules' ΔW added
    ref, _ = base_model("tiny-encoder")
    with torch.no_grad():
        for name, m in zip(meth.targets, layers):
            if m.is_selected:
                ref.get_submodule(name).weight.add_(m.delta_weight())
    model.eval(), ref.eval()
    feed = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(model(**feed).logits, ref(**feed).logits, rtol=1e-5, atol=1e-6)
    head = sum(p.numel() for p in model.get_submodule(info.head_name).parameters() if p.requires_grad)
    assert trainable_numel(model) - head == sum(2 * (m.in_features + m.out_features) for m in layers
                                                if m.is_selected)


def test_the_switch_preserves_each_selected_module_exactly():
    model, meth, _, _ = adapted_model("tiny-encoder", "diffora", rank=2, options={"ratio": 0.5})
    layers = adapted_layers(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in layers:
            m.lora_B.normal_(generator=g)
            m.dam_gate.normal_(generator=g)
    before = [m.delta_weight().detach().clone() for m in layers]
    meth.select(layers)
    for m, b in zip(layers, before):
        if m.is_selected:
            torch.testing.assert_close(m.delta_weight(), b)
    kept = sorted(range(len(layers)), key=lambda i: -float(layers[i].dam_gate))[:3]
    assert {i for i, m in enumerate(layers) if m.is_selected} == set(kept)


def _spec(**over):
    return schedule_spec("diffora", 2, {"search_steps": 5, "ratio": 0.5, "dropout": 0.1},
                         {"training.lr": 1e-2, "training.lr_groups": {"gate": 5e-2}}, over)


def test_resume_across_the_search_boundary_is_exact(tmp_path):
    _, ref = _run(_spec(), tmp_path / "ref")
    allocs = _kind(ref, "allocation")
    assert [a["step"] for a in allocs] == [0, 5, 12]
    assert sum(1 for r in allocs[-1]["ranks"].values() if r) == 3 and allocs[-1]["budget"] == 6
    assert allocs[1]["trainable_params"] < allocs[0]["trainable_params"]  # the unselected stopped training
    assert _kind(_run(_spec(), tmp_path / "again")[1], "allocation")[-1]["history"] == allocs[-1]["history"]
    for stop in (4, 5, 8):
        rc, first = _run(_spec(), tmp_path / f"a{stop}", stop=stop)
        rc, second = _run(_spec(), tmp_path / f"b{stop}", resume=_kind(first, "preempted")[0]["path"])
        assert rc == 0
        got = {r["step"]: r["loss"] for r in _kind(first, "progress") + _kind(second, "progress")}
        assert got == {r["step"]: r["loss"] for r in _kind(ref, "progress")}
        assert _kind(second, "allocation")[-1]["ranks"] == allocs[-1]["ranks"]
        assert _kind(second, "done")[0]["trainable_params"] == _kind(ref, "done")[0]["trainable_params"]


def test_toy_selects_the_signal_modules():
    """8 candidate blocks, teacher rank-3 ΔW* in blocks 2 and 5; DiffoRA r 4, ρ 0.25 (2 of 8 selected), search 100
    of 300 steps. Recorded (seed 0): selected blocks 2 and 5 (ranks [0, 0, 4, 0, 0, 4, 0, 0]; final gates
    σ⁻¹ 0.15 and 0.26, all others < 0); MSE 0.0002 against 0.0008 for LoRA r 4 on all 8 blocks (4× the
    parameters)."""
    res = toy_run("diffora", rank=4, options={"ratio": 0.25, "search_steps": 100}, steps=300, lr=2e-2)
    lora = toy_run("lora", rank=4, options={}, steps=300, lr=2e-2)
    print("diffora toy ranks per block:", res["ranks"], "loss", res["loss"], "lora(all) loss", lora["loss"])
    assert res["ranks"] == [0, 0, 4, 0, 0, 4, 0, 0]
    assert res["loss"] <= lora["loss"]
