"""The `lora-fair` procedure end to end in-process: one client with FedIT equals centralised LoRA training bit for
bit; a run preempted between two clients of a round resumes to the uninterrupted run's result bit for bit (client
RNG, data positions, optimizer states, sampled clients); per-round events carry the metrics and the aggregation
report; config errors."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from _runs import run_capturing as _run
from rankflow_runtime.errors import ConfigError
from rankflow_runtime.spec import example_spec

VIT = {"image_size": 16, "patch_size": 8, "hidden_size": 32, "num_heads": 2, "intermediate_size": 48}


def _spec(procedure=None, steps=6, **dataset_options):
    s = example_spec(**{
        "model": {"name": "tiny-vit", "source": "builtin", "task": "img-cls", "config": VIT, "random_init": True},
        "dataset": {"name": "synthetic/img-cls", "data_root": None, "max_length": 16, "train_size": 64,
                    "eval_size": 32, "eval_split": "validation", "metric": "accuracy", "options": dataset_options},
        "method": {"name": "lora", "rank": 4, "options": {"dropout": 0.1}, "targets": []},
        "training.max_steps": steps, "training.batch_size": 8, "training.eval_every": None,
        "training.warmup_ratio": 0.2})
    if procedure is not None:
        s["procedure"] = {"name": "lora-fair", "options": procedure}
    return s


def _final_adapter(rec):
    ck = [r for r in rec if r["event"] == "checkpoint"][-1]
    return load_file(os.path.join(ck["path"], "adapter.safetensors"))


def test_one_client_fedit_equals_centralised_training(tmp_path):
    rc, central = _run(_spec(), tmp_path / "central")
    assert rc == 0
    fed = {"num_clients": 1, "local_steps": 3, "aggregation": "fedit", "client_state": "keep"}
    rc, rounds = _run(_spec(fed), tmp_path / "fed")
    assert rc == 0
    a, b = _final_adapter(central), _final_adapter(rounds)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    done_c = [r for r in central if r["event"] == "done"][0]
    done_f = [r for r in rounds if r["event"] == "done"][0]
    assert done_c["metrics"] == done_f["metrics"]
    # LoRA-FAIR's correction with one client is zero: the same run again
    fair = dict(fed, aggregation="lora-fair", solver_steps=50)
    rc, again = _run(_spec(fair), tmp_path / "fair")
    c = _final_adapter(again)
    assert all(torch.allclose(a[k], c[k], atol=1e-6, rtol=0) for k in a)
    rep = [r for r in again if r["event"] == "round"][-1]["aggregation"]
    assert rep["aggregation_error_fedit"] < 1e-6 and rep["delta_b_ratio"] < 1e-9


FED = {"num_clients": 4, "clients_per_round": 2, "local_steps": 2, "aggregation": "lora-fair", "solver_steps": 50,
       "client_state": "keep"}


def test_preempted_between_clients_resumes_bit_for_bit(tmp_path):
    rc, full = _run(_spec(FED), tmp_path / "full")
    assert rc == 0
    rc, first = _run(_spec(FED), tmp_path / "a", stop=3)  # round 2's first client done, its second not
    assert rc == 4
    pre = [r for r in first if r["event"] == "preempted"][0]
    manifest = json.load(open(os.path.join(pre["path"], "manifest.json")))
    assert manifest["round"] == 1 and list(manifest["partial"]) == [str(full_round_clients(full)[1][0])]
    rc, rest = _run(_spec(FED), tmp_path / "b", resume=pre["path"])
    assert rc == 0
    a, b = _final_adapter(full), _final_adapter(rest)
    assert all(torch.equal(a[k], b[k]) for k in a)
    rounds_full = [r for r in full if r["event"] == "round"]
    rounds_rest = [r for r in rest if r["event"] == "round"]
    assert [r["round"] for r in rounds_rest] == [1, 2, 3]  # round 1 replayed from the checkpoint's records
    for x, y in zip(rounds_full, rounds_rest):
        assert x["clients"] == y["clients"] and x["client_loss"] == y["client_loss"] and x["metrics"] == y["metrics"]
        assert x["aggregation"] == y["aggregation"]


def full_round_clients(rec):
    return [r["clients"] for r in rec if r["event"] == "round"]


def test_round_events_and_the_correction_raises_the_similarity(tmp_path):
    rc, rec = _run(_spec(dict(FED, solver_steps=200), steps=6), tmp_path / "r")
    assert rc == 0
    rounds = [r for r in rec if r["event"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2, 3] and all(len(r["clients"]) == 2 for r in rounds)
    for r in rounds:
        agg = r["aggregation"]
        assert {"accuracy", "loss"} <= set(r["metrics"])
        assert agg["cosine_after"] >= agg["cosine_before"]  # (the Frobenius error may rise: test_toy_claim.py)
    assert len(full_round_clients(rec)) == 3 and full_round_clients(rec) != [[0, 1]] * 3
    done = [r for r in rec if r["event"] == "done"][0]
    assert done["step"] == 3 * 2 * 2 and done["stats"]["payload_numel"] > 0


def test_reinit_merges_and_fedit_runs(tmp_path):
    for agg, extra in (("reinit", {}), ("fedit", {}), ("lora-fair", {"solver": "ridge"})):
        rc, rec = _run(_spec(dict(FED, aggregation=agg, **extra), steps=4), tmp_path / agg)
        assert rc == 0
        for r in [r for r in rec if r["event"] == "round"]:
            a = r["aggregation"]
            if agg == "reinit":
                assert a["aggregation_error"] == 0.0 and a["cosine_after"] == 1.0
            elif agg == "fedit":
                assert a["aggregation_error"] == a["aggregation_error_fedit"] and a["delta_b_ratio"] == 0.0
            else:  # the ridge solve minimises the Frobenius error (plus λ‖ΔB‖²): it never rises
                assert a["aggregation_error"] <= a["aggregation_error_fedit"] + 1e-12


def test_config_errors():
    with pytest.raises(ConfigError, match="multiple of procedure.options.local_steps"):
        _run(_spec(dict(FED, local_steps=4), steps=6), "/tmp/unused-fed")
    bad = _spec(FED)
    bad["method"]["name"] = "dora"
    with pytest.raises(ConfigError, match="procedure lora-fair runs lora"):
        _run(bad, "/tmp/unused-fed")
    with pytest.raises(ConfigError, match="needs a domain per example"):
        _run(_spec(dict(FED, partition="domain")), "/tmp/unused-fed")


def test_deterministic_given_the_seed(tmp_path):
    """The same spec twice: the same sampled clients, round records and adapter bits; another seed differs."""
    spec = _spec(dict(FED, client_state="reset"), steps=4)
    runs = []
    for i, seed in enumerate((spec["seed"], spec["seed"], spec["seed"] + 1)):
        rc, rec = _run(dict(spec, seed=seed), tmp_path / f"d{i}")
        assert rc == 0
        rounds = [(r["clients"], r["client_loss"], r["metrics"], r["aggregation"]) for r in rec if r["event"] == "round"]
        runs.append((rounds, _final_adapter(rec)))
    (r0, a0), (r1, a1), (r2, a2) = runs
    assert r0 == r1 and set(a0) == set(a1) and all(torch.equal(a0[k], a1[k]) for k in a0)
    assert r0 != r2 and any(not torch.equal(a0[k], a2[k]) for k in a0)
