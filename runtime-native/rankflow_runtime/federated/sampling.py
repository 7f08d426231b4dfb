"""Which clients take part in a round, and the per-client random streams.

The sample of round t is a function of (seed, t) only: m of the K clients uniformly without replacement (all of
them when m = K), in ascending order. Resuming at any round boundary therefore samples the same clients; the
procedure also records every round's sample in its checkpoints and checks it on resume.
"""
from __future__ import annotations

from typing import List


from .partition import rng_for

CLIENT_SEED_STRIDE = 1_000_003


def sample_clients(num_clients: int, per_round: int, seed: int, round_index: int) -> List[int]:
    if per_round >= num_clients:
        return list(range(num_clients))
    rng = rng_for(seed, 1_000 + int(round_index))
    return sorted(int(k) for k in rng.choice(num_clients, size=per_round, replace=False))


def client_seed(seed: int, client: int) -> int:
    """The seed of client k's own streams (data order, dropout): client 0 of a run has the run's seed, so a
    one-client federation draws exactly the batches and dropout masks of centralised training."""
    return int(seed) + CLIENT_SEED_STRIDE * int(client)
