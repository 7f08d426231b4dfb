"""Client partitions of a training set: deterministic functions of (labels / domains, client count, seed).

Every function returns one sorted index array per client (indices into the training split); together they are
disjoint and, except for examples left out by `min_size` re-draws never, cover the whole split.

* `iid`: a random permutation cut into `num_clients` near-equal parts.
* `dirichlet`: label skew as in Hsu, Qi & Brown (arXiv:1909.06335): for every class c, proportions
  q_c ~ Dir(α·1_K) split that class's examples among the K clients. Small α gives a few classes per client, large
  α approaches IID. The draw is repeated (a fresh draw from the same stream) until every client holds at least
  `min_size` examples; after 100 draws it is a config error.
* `by_domain`: feature shift (LoRA-FAIR's DomainNet / NICO++ setting): client k holds examples of domain
  k mod D only, each domain's examples split IID among its clients. With `alpha` set, the split inside a domain is
  Dirichlet over labels instead (feature plus label non-IID, the paper's combined setting).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ..errors import ConfigError

KINDS = ("iid", "dirichlet", "domain")
MAX_DRAWS = 100


def rng_for(seed: int, tag: int) -> np.random.Generator:
    """A numpy generator for one purpose (`tag`) of a run seeded by `seed`."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(tag)]))


def _sorted(parts: Sequence[np.ndarray]) -> List[np.ndarray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def iid(n: int, num_clients: int, rng: np.random.Generator) -> List[np.ndarray]:
    if num_clients == 1:  # no shuffling at all: one client holds the split in file order
        return [np.arange(n, dtype=np.int64)]
    return _sorted(np.array_split(rng.permutation(n), num_clients))


def dirichlet(labels: Sequence[int], num_clients: int, alpha: float, rng: np.random.Generator,
              min_size: int = 1, where: str = "procedure.options.alpha") -> List[np.ndarray]:
    labels = np.asarray(labels)
    if alpha <= 0:
        raise ConfigError(f"{where}: the Dirichlet concentration must be positive, got {alpha}",
                          hint="use e.g. 0.5 (strong skew) ... 100 (almost IID)")
    classes = np.unique(labels)
    for _ in range(MAX_DRAWS):
        parts: List[List[int]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = np.flatnonzero(labels == c)
            idx = idx[rng.permutation(len(idx))]
            q = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = (np.cumsum(q)[:-1] * len(idx)).astype(np.int64)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return _sorted([np.asarray(p) for p in parts])
    raise ConfigError(f"{where}: {MAX_DRAWS} Dirichlet draws with alpha={alpha} left a client with fewer than "
                      f"{min_size} examples ({len(labels)} examples, {num_clients} clients)",
                      hint="raise alpha, lower procedure.options.num_clients or raise dataset.train_size")


def by_domain(domains: Sequence[int], num_clients: int, rng: np.random.Generator,
              labels: Optional[Sequence[int]] = None, alpha: Optional[float] = None,
              min_size: int = 1) -> List[np.ndarray]:
    domains = np.asarray(domains)
    names = np.unique(domains)
    if num_clients < len(names):
        raise ConfigError(f"procedure.options.num_clients: {num_clients} clients cannot cover the {len(names)} domains "
                          "of the training split (client k holds domain k mod D)",
                          hint=f"use at least {len(names)} clients, or fewer domains (dataset.options.domains)")
    parts: List[np.ndarray] = [np.empty(0, dtype=np.int64)] * num_clients
    for j, d in enumerate(names):
        members = [k for k in range(num_clients) if k % len(names) == j]
        idx = np.flatnonzero(domains == d)
        if alpha is None:
            split = iid(len(idx), len(members), rng)
        else:
            split = dirichlet(np.asarray(labels)[idx], len(members), alpha, rng, min_size)
        for k, local in zip(members, split):
            parts[k] = idx[local]
    if min(len(p) for p in parts) < min_size:
        raise ConfigError(f"procedure.options.num_clients: with {num_clients} clients a client holds fewer than "
                          f"{min_size} examples", hint="raise dataset.train_size or lower num_clients")
    return _sorted(parts)


def partition(kind: str, n: int, num_clients: int, seed: int, *, labels: Optional[Sequence[int]] = None,
              domains: Optional[Sequence[int]] = None, alpha: Optional[float] = None, min_size: int = 1,
              dataset: str = "the dataset") -> List[np.ndarray]:
    """The client index sets of a run (tag 1 of the run seed's streams)."""
    if num_clients < 1:
        raise ConfigError("procedure.options.num_clients: must be at least 1", hint="set num_clients, e.g. 10")
    if num_clients > n:
        raise ConfigError(f"procedure.options.num_clients: {num_clients} clients but only {n} training examples",
                          hint="lower num_clients or raise dataset.train_size")
    rng = rng_for(seed, 1)
    if kind == "iid":
        parts = iid(n, num_clients, rng)
    elif kind == "dirichlet":
        if labels is None:
            raise ConfigError(f"procedure.options.partition: dirichlet needs class labels, {dataset} has none",
                              hint="use partition iid (or domain) for this dataset")
        parts = dirichlet(labels, num_clients, 0.5 if alpha is None else alpha, rng, min_size)
    elif kind == "domain":
        if domains is None:
            raise ConfigError(f"procedure.options.partition: domain needs a domain per example, {dataset} has none",
                              hint="use a dataset with domains (synthetic: dataset.options.domains) or partition iid")
        parts = by_domain(domains, num_clients, rng, labels, alpha, min_size)
    else:
        raise ConfigError(f"procedure.options.partition: unknown partition {kind!r}", hint=f"use one of {KINDS}")
    if min(len(p) for p in parts) < min_size:
        raise ConfigError(f"procedure.options.num_clients: a client holds fewer than {min_size} examples",
                          hint="raise dataset.train_size or lower num_clients")
    return parts
