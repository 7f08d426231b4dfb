"""MoS property tests: pools shared per module type, index tables (subset selection, pair dissociation,
privatization, vector sharding) as in the official code, the count r_v·Σ(d_in + d_out), and the reduction to
tied LoRA with privatization off, one shard per vector and a pool of exactly r vectors."""
import pytest
import torch

from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods.base import SHARED_ATTR, adapted_layers, trainable_numel
from rankflow_runtime.testing import adapted_model, synthetic_batch, train_steps


def _by_type(m):
    out = {}
    for lay in adapted_layers(m):
        out.setdefault(lay.key, []).append(lay)
    return out


def test_count_is_a_lora_of_the_valid_rank():
    opts = {"valid_rank": 2, "private_rank": 1, "num_chunks": 2}
    m, meth, _, formula = adapted_model("tiny-decoder", "mos", rank=3, options=opts)
    layers = adapted_layers(m)
    assert trainable_numel(m) == formula == 2 * sum(l.in_features + l.out_features for l in layers)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(SHARED_ATTR + ".pool_") for n in trainable)
    # one pool pair per module type (q_proj, v_proj, up_proj), shared by the 2 layers of that type
    assert len(_by_type(m)) == 3 and len(getattr(m, SHARED_ATTR).pool_A) == 3


def test_index_tables_follow_the_official_layout():
    r, rv, rp, c = 4, 3, 1, 2
    m, meth, _, _ = adapted_model("tiny-encoder", "mos", rank=r,
                                  options={"valid_rank": rv, "private_rank": rp, "num_chunks": c})
    for key, layers in _by_type(m).items():
        L = len(layers)
        P = (rv - rp) * L * c
        assert getattr(m, SHARED_ATTR).pool_A[key].shape[0] == rv * L * c
        for l, lay in enumerate(layers):
            for idx in (lay.index_A, lay.index_B):
                assert idx.dtype == torch.long and idx.numel() == r * c
                pub, priv = idx[: (r - rp) * c], idx[(r - rp) * c:]
                assert pub.max() < P and len(set(pub.tolist())) == pub.numel()  # a subset of the public segment
                assert priv.tolist() == list(range(P + l * rp * c, P + (l + 1) * rp * c))  # privatized shards
        assert not torch.equal(layers[0].index_A, layers[0].index_B)  # pair dissociation
        assert not torch.equal(layers[0].index_A[:(r - rp) * c], layers[1].index_A[:(r - rp) * c])  # per-layer subsets


def test_vector_sharding_concatenates_c_shards_per_rank_vector():
    m, _, _, _ = adapted_model("tiny-encoder", "mos", rank=3, options={"num_chunks": 4, "private_rank": 0,
                                                                      "valid_rank": 2})
    lay = adapted_layers(m)[0]
    pools = getattr(m, SHARED_ATTR)
    with torch.no_grad():
        pools.pool_B[lay.key].normal_()
    a, b = lay.factors()
    pa, pb = pools.pool_A[lay.key], pools.pool_B[lay.key]
    for j in range(3):
        want_a = torch.cat([pa[lay.index_A[j * 4 + i]] for i in range(4)])
        want_b = torch.cat([pb[lay.index_B[j * 4 + i]] for i in range(4)])
        assert torch.equal(a[j], want_a) and torch.equal(b[:, j], want_b)


def test_switches_for_subset_selection_and_pair_dissociation():
    m, _, _, _ = adapted_model("tiny-encoder", "mos", rank=3, options={"subset_selection": False,
                                                                      "pair_dissociation": False})
    for layers in _by_type(m).values():
        for lay in layers:
            assert torch.equal(lay.index_A, lay.index_B)
        pub = [lay.index_A[: (3 - 1) * 2] for lay in layers]
        assert all(torch.equal(p, torch.arange(4)) for p in pub)


def test_reduces_to_tied_lora():
    # privatization off, one shard per vector, pool of exactly r vectors (r_v·L = 4 with L = 2), no dissociation:
    # each layer's (A_l, B_l) is the pool with one permutation on both sides, so B_l A_l = B A for all layers.
    r = 4
    m, meth, _, _ = adapted_model("tiny-encoder", "mos", rank=r, options={
        "private_rank": 0, "num_chunks": 1, "valid_rank": 2, "pair_dissociation": False})
    pools = getattr(m, SHARED_ATTR)
    with torch.no_grad():
        for p in pools.pool_B.values():
            p.normal_()
    for key, layers in _by_type(m).items():
        A, B = pools.pool_A[key], pools.pool_B[key].t()  # tied LoRA: A ∈ R^{r×d_in}, B ∈ R^{d_out×r}
        assert A.shape[0] == r
        tied = B @ A * (16.0 / r)
        for lay in layers:
            torch.testing.assert_close(lay.delta_weight(), tied, atol=1e-6, rtol=1e-6)
            x = torch.randn(3, lay.in_features)
            lay.eval()
            with torch.no_grad():
                torch.testing.assert_close(lay(x), lay.base(x) + x @ tied.t(), atol=1e-5, rtol=1e-5)


def test_gradients_reach_only_the_selected_shards():
    m, meth, _, _ = adapted_model("tiny-encoder", "mos", rank=2, options={
        "valid_rank": 4, "private_rank": 1, "num_chunks": 1, "dropout": 0.0})
    pools = getattr(m, SHARED_ATTR)
    with torch.no_grad():
        for p in pools.pool_B.values():
            p.normal_()
    out = m(**synthetic_batch("tiny-encoder")).loss
    out.backward()
    for key, layers in _by_type(m).items():
        used = set()
        for lay in layers:
            used |= set(lay.index_A.tolist())
        g = pools.pool_A[key].grad
        rows_with_grad = {i for i in range(g.shape[0]) if g[i].abs().sum() > 0}
        assert rows_with_grad <= used and rows_with_grad
        assert len(used) < g.shape[0]  # the pool is larger than what the layers selected


def test_bad_sharing_configuration_is_a_config_error():
    with pytest.raises(ConfigError, match="public rank vectors"):
        adapted_model("tiny-encoder", "mos", rank=8, options={"valid_rank": 2, "private_rank": 1})
    with pytest.raises(ConfigError, match="num_chunks"):
        adapted_model("tiny-encoder", "mos", rank=2, options={"num_chunks": 5})


def test_training_updates_shared_pools():
    m, meth, _, _ = adapted_model("tiny-decoder", "mos", rank=4)
    pools = getattr(m, SHARED_ATTR)
    before = {k: p.detach().clone() for k, p in pools.pool_B.items()}
    idx = [lay.index_A.clone() for lay in adapted_layers(m)]
    train_steps(m, meth, synthetic_batch("tiny-decoder"), steps=3, lr=1e-2)
    assert all(not torch.equal(before[k], p) for k, p in pools.pool_B.items())
    assert all(torch.equal(i, lay.index_A) for i, lay in zip(idx, adapted_layers(m)))  # routing is fixed
