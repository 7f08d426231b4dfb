"""Client partitions and client sampling: disjoint covers, determinism, the skew they promise, clear errors."""
import numpy as np
import pytest

from rankflow_runtime.errors import ConfigError
from rankflow_runtime.federated.partition import by_domain, partition
from rankflow_runtime.federated.sampling import client_seed, sample_clients


def _is_cover(parts, n):
    allidx = np.concatenate(parts)
    return len(allidx) == n and len(np.unique(allidx)) == n and all(np.all(np.diff(p) > 0) for p in parts)


def test_iid_is_a_balanced_disjoint_cover_and_deterministic():
    parts = partition("iid", 103, 10, seed=3)
    assert _is_cover(parts, 103)
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3
    again = partition("iid", 103, 10, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = partition("iid", 103, 10, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_one_client_holds_the_split_in_file_order():
    (only,) = partition("iid", 50, 1, seed=9)
    assert np.array_equal(only, np.arange(50))


def _label_entropy(labels, parts):
    out = []
    for p in parts:
        counts = np.bincount(labels[p], minlength=labels.max() + 1) / len(p)
        nz = counts[counts > 0]
        out.append(float(-(nz * np.log(nz)).sum()))
    return float(np.mean(out))


def test_dirichlet_skew_grows_as_alpha_shrinks():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=2000)
    h = {a: _label_entropy(labels, partition("dirichlet", 2000, 10, seed=1, labels=labels, alpha=a))
         for a in (0.1, 1.0, 100.0)}
    assert _is_cover(partition("dirichlet", 2000, 10, seed=1, labels=labels, alpha=0.1), 2000)
    # entropy of a client's label distribution: log 4 = 1.386 for IID
    assert h[0.1] < 0.8 < h[1.0] < h[100.0] and h[100.0] > 1.3, h


def test_dirichlet_min_size_and_its_error():
    labels = np.arange(40) % 2
    parts = partition("dirichlet", 40, 4, seed=0, labels=labels, alpha=0.5, min_size=3)
    assert min(len(p) for p in parts) >= 3
    with pytest.raises(ConfigError, match="Dirichlet draws"):
        partition("dirichlet", 40, 4, seed=0, labels=labels, alpha=0.01, min_size=10)


def test_domain_partition_gives_each_client_one_domain():
    domains = np.repeat(np.arange(3), 30)
    parts = partition("domain", 90, 6, seed=0, domains=domains)
    assert _is_cover(parts, 90)
    for k, p in enumerate(parts):
        assert set(domains[p].tolist()) == {k % 3}
        assert len(p) == 15
    with pytest.raises(ConfigError, match="cannot cover the 3 domains"):
        partition("domain", 90, 2, seed=0, domains=domains)


def test_domain_plus_label_skew():
    rng = np.random.default_rng(1)
    domains = np.repeat(np.arange(2), 500)
    labels = rng.integers(0, 4, size=1000)
    parts = by_domain(domains, 4, np.random.default_rng(2), labels=labels, alpha=0.1)
    assert _is_cover(parts, 1000)
    assert all(len(set(domains[p].tolist())) == 1 for p in parts)
    assert _label_entropy(labels, parts) < 1.0


def test_partition_errors_name_the_field():
    with pytest.raises(ConfigError, match="procedure.options.num_clients"):
        partition("iid", 5, 6, seed=0)
    with pytest.raises(ConfigError, match="needs class labels"):
        partition("dirichlet", 10, 2, seed=0)
    with pytest.raises(ConfigError, match="needs a domain per example"):
        partition("domain", 10, 2, seed=0)
    with pytest.raises(ConfigError, match="unknown partition"):
        partition("shards", 10, 2, seed=0)


def test_client_sampling_is_a_function_of_seed_and_round():
    s = [sample_clients(20, 5, seed=7, round_index=t) for t in range(30)]
    assert all(len(x) == 5 and len(set(x)) == 5 and x == sorted(x) and max(x) < 20 for x in s)
    assert s == [sample_clients(20, 5, seed=7, round_index=t) for t in range(30)]
    assert len({tuple(x) for x in s}) > 20  # rounds differ
    counts = np.bincount(np.concatenate(s), minlength=20)
    assert counts.min() >= 1  # every client takes part within 30 rounds here
    assert sample_clients(4, 4, seed=0, round_index=3) == [0, 1, 2, 3]
    assert client_seed(5, 0) == 5 and client_seed(5, 1) != client_seed(6, 0)


def test_synthetic_domains_give_a_feature_shift_per_domain():
    from rankflow_runtime.data import synthetic
    train, _, _ = synthetic.img_cls({"options": {"domains": 3}, "train_size": 60, "eval_size": 6}, 16, 3, 0)
    domains = [int(e["domain"]) for e in train]
    assert domains == [i % 3 for i in range(60)]
    parts = partition("domain", 60, 6, seed=0, domains=domains)
    assert all(len({domains[i] for i in p}) == 1 for p in parts)
    # the domains differ in their input statistics (channel means), the classes do not depend on the domain
    means = [np.mean([train[i]["pixel_values"].mean(dim=(1, 2)).numpy() for i in range(60) if domains[i] == d], 0)
             for d in range(3)]
    assert min(np.abs(means[a] - means[b]).max() for a in range(3) for b in range(a + 1, 3)) > 0.1
    plain, _, _ = synthetic.img_cls({"options": {}, "train_size": 4, "eval_size": 2}, 16, 3, 0)
    assert "domain" not in plain[0]
