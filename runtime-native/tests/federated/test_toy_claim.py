"""LoRA-FAIR's toy claim on the linear toy of procedures.md §8(4): 10 feature-non-IID clients (client-specific
input covariance and client-specific target update W_k*), a rank-2 LoRA on a 4→8 linear map, 20 rounds × 5 local
SGD steps, FedIT vs LoRA-FAIR vs FLoRA-style re-initialisation, over 6 seeds.

What holds, and is asserted: within every round the correction raises the cosine similarity of the broadcast
B̄′Ā to ΔW* (never lowers it); over the later rounds (≥ 5) it also lowers the aggregation error
‖B̄′Ā − ΔW*‖/‖ΔW*‖ of the round's uploads below FedIT's ‖B̄Ā − ΔW*‖/‖ΔW*‖ on average; `solver: ridge` (the
Frobenius variant) lowers it in every round. Over the 6 seeds LoRA-FAIR's mean aggregation error and
mean final global loss are below FedIT's (asserted; numbers in the runtime README), but the loss is lower on only 3
of the 6 seeds: the gain is within the seed-to-seed spread. What does not hold: the cosine objective lowering the
Frobenius error in every round (it raises it in some early rounds: the cosine ignores the scale).
"""
import math
import statistics

import torch

from rankflow_runtime.federated import aggregate as agg

F64 = torch.float64


def _run(mode, seed, clients=10, d_in=4, d_out=8, r=2, rounds=20, local=5, lr=0.1, n=32, solver="gd"):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(d_out, d_in, generator=g, dtype=F64) / math.sqrt(d_in)
    common = torch.randn(d_out, r, generator=g, dtype=F64) @ torch.randn(r, d_in, generator=g, dtype=F64) / 2.8
    xs, ys = [], []
    for _ in range(clients):
        cov = torch.randn(d_in, d_in, generator=g, dtype=F64) / 2 + 0.5 * torch.eye(d_in, dtype=F64)
        x = torch.randn(n, d_in, generator=g, dtype=F64) @ cov
        wk = common + torch.randn(d_out, 1, generator=g, dtype=F64) @ torch.randn(1, d_in, generator=g, dtype=F64) / 2
        xs.append(x)
        ys.append(x @ (w0 + wk).t())
    a, b = agg.lora_init_a(r, d_in, g), torch.zeros(d_out, r, dtype=F64)
    merged = torch.zeros(d_out, d_in, dtype=F64)

    def loss(k, a, b):
        return ((xs[k] @ (w0 + merged + b @ a).t() - ys[k]) ** 2).mean()

    errors, reductions, cosines = [], [], []
    for _ in range(rounds):
        ups = []
        for k in range(clients):
            ak, bk = a.clone().requires_grad_(), b.clone().requires_grad_()
            for _ in range(local):
                ga, gb = torch.autograd.grad(loss(k, ak, bk), [ak, bk])
                with torch.no_grad():
                    ak -= lr * ga
                    bk -= lr * gb
            ups.append((ak.detach(), bk.detach()))
        p = agg.client_weights([n] * clients)
        layer = agg.aggregate_layer([u[0] for u in ups], [u[1] for u in ups], p)
        if mode == "reinit":
            merged = merged + agg.ideal_delta([u[0] for u in ups], [u[1] for u in ups], p)
            a, b = agg.lora_init_a(r, d_in, g), torch.zeros(d_out, r, dtype=F64)
            errors.append(0.0)
            continue
        delta = agg.correction(layer, 0.01, solver) if mode == "lora-fair" else torch.zeros_like(layer.b_bar)
        a, b = layer.a_bar, layer.b_bar + delta
        rep = agg.report([layer], [b])
        errors.append(rep.error_after)
        reductions.append(rep.error_before - rep.error_after)
        cosines.append(rep.cosine_after - rep.cosine_before)
    final = sum(float(loss(k, a, b)) for k in range(clients)) / clients
    return final, statistics.mean(errors), reductions, cosines


def test_lora_fair_lowers_the_aggregation_error_on_feature_non_iid_clients():
    seeds = range(6)
    res = {m: [_run(m, s) for s in seeds] for m in ("fedit", "lora-fair", "reinit")}
    ridge = [_run("lora-fair", s, solver="ridge") for s in seeds]
    for _, _, reductions, cosines in res["lora-fair"]:
        assert min(cosines) >= 0.0
        assert statistics.mean(reductions[5:]) > 0
    for _, _, reductions, _ in ridge:
        assert min(reductions) >= -1e-12
    early = [x for _, _, red, _ in res["lora-fair"] for x in red[:5]]
    print("rounds 1-5 where the cosine correction raised the Frobenius error:", sum(x < 0 for x in early), "of",
          len(early))
    mean_err = {m: statistics.mean(x[1] for x in v) for m, v in res.items()}
    mean_loss = {m: statistics.mean(x[0] for x in v) for m, v in res.items()}
    print("mean aggregation error over rounds:", {m: round(v, 5) for m, v in mean_err.items()},
          "ridge", round(statistics.mean(x[1] for x in ridge), 5))
    print("final global loss (mean over seeds):", {m: round(v, 5) for m, v in mean_loss.items()})
    print("final global loss per seed:", {m: [round(x[0], 4) for x in v] for m, v in res.items()})
    assert mean_err["reinit"] == 0.0
    # the claim on these 6 seeds (deterministic, float64): lower mean aggregation error and lower mean final global
    # loss than FedIT (FLoRA-style re-init is exact but pays the initialisation lag); 3 of 6 seeds individually
    assert mean_err["lora-fair"] < mean_err["fedit"]
    assert mean_loss["lora-fair"] < mean_loss["fedit"] < mean_loss["reinit"]
