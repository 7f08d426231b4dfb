"""MoS (Mixture of Shards): LoRA whose A/B rank vectors are assembled from global shard pools shared across layers.

Paper: Sheng Wang, Liheng Chen, Pengan Chen, Jingwei Dong, Boyang Xue, Jiyue Jiang, Lingpeng Kong, Chuan Wu, "MoS:
Unleashing Parameter Efficiency of Low-Rank Adaptation with Mixture of Shards", ICLR 2025, arXiv:2410.00938.
Official code: github.com/Forence1999/MoS (`modules/Tied_LoRA.py`, read at cafb8dd; `ft_llama2_7b_*.sh`).

Method (as the official code does it)
-------------------------------------
For each module *type* (the target's leaf name, e.g. q_proj, together with its shape) there is one pair of pools
shared by the L layers of that type (inter-layer sharing):
    pool_A ∈ R^{(r_v·L·c) × (d_in/c)}  (rows are A-shards),   pool_B ∈ R^{(r_v·L·c) × (d_out/c)}  (rows are B-shards),
c = `num_chunks` (vector sharding: a rank vector is c concatenated shards), r_v = `valid_rank` (the LoRA rank with
the same trainable-parameter budget). The shard index space is split into a public segment [0, P),
P = (r_v − r_p)·L·c, and private segments: layer l owns P + [l·r_p·c, (l+1)·r_p·c) (shard privatization,
r_p = `private_rank`). Each layer's frozen index table (length r·c, r = the active rank) is a random subset of the
public segment (subset selection, `randperm(P)[:(r − r_p)·c]`, drawn once) followed by its private indices; the B
table is drawn independently of the A table (pair dissociation). Rank vector j of A_l is the concatenation of
pool_A[idx[j·c + i]], i = 0..c−1; B_l likewise (as columns). Then y = W0 x + (α/r)·B_l A_l dropout(x).
Init: pool_A Kaiming-uniform with fan = d_in, pool_B = 0 (so ΔW = 0 at start).

Trainable parameters: r_v·L·(d_in + d_out) per module type, i.e. r_v·Σ_layers(d_in + d_out): a LoRA of rank r_v.
Constraints: c divides d_in and d_out; r_p ≤ min(r, r_v); r − r_p ≤ (r_v − r_p)·L; if r_p = r_v then r = r_v.

Options: each differentiation strategy can be switched off for ablations: `subset_selection=False` gives every layer
the first (r − r_p)·c public shards (pure sharing), `pair_dissociation=False` uses the A table for B,
`num_chunks=1` disables vector sharding, `private_rank=0` disables privatization. With privatization off, c = 1
and a pool of exactly r vectors (r_v·L = r) and pair dissociation off, every layer computes the same B A: tied
LoRA (Renduchintala et al.), which a property test checks.

Defaults: alpha 16 and dropout 0.1 (the official `ft_*.sh` scripts). The paper's chosen r_v, r_p, c are not in the
released scripts (they are command-line arguments); our defaults are num_chunks = 2, private_rank = 1 and
valid_rank = 0 meaning "auto": the smallest r_v ≥ ceil(r/8) (the abstract's ≈8× saving) that satisfies the
constraints for the type's L, i.e. max(ceil(r/8), r_p + ceil((r − r_p)/L)) (r_v = r when r_p = r).

Deviations and notes
--------------------
* The official "random scaling" vector (`lora_A_vec`) is asserted to the constant 1 and frozen in the released
  code, so it is omitted. pool_B is stored shard-per-row (the official nn.Linear stores its transpose).
* Index tables are persistent int64 buffers drawn from the method's CPU generator (seeded by the run seed and
  the layer's position), so they are identical across devices and saved in checkpoints.
* The official code works on QLoRA LLaMA layers named q/k/v/o/gate/up/down_proj; here any target set works, the
  type being the module's leaf name plus shape, and l its order of appearance among that type's targets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .base import LowRankLinear, Method, find_targets, option, register


@dataclass
class MoSOptions:
    valid_rank: int = option(0, help="r_v: equivalent LoRA rank of the trainable pools (0 = auto: the smallest "
                                     "value >= ceil(rank/8) that fits the sharing constraints)", min=0)
    private_rank: int = option(1, help="r_p: rank vectors per layer built from private shards (shard privatization; "
                                       "0 = off)", min=0)
    num_chunks: int = option(2, help="c: shards per rank vector (vector sharding; 1 = off); must divide d_in and d_out",
                             min=1)
    subset_selection: bool = option(True, help="each layer draws a random subset of the public shards (off: all "
                                               "layers use the same first shards)")
    pair_dissociation: bool = option(True, help="draw the B index table independently of the A table")
    alpha: float = option(16.0, help="LoRA scaling numerator, s = alpha / rank (official scripts: 16)", min=0.0)
    dropout: float = option(0.1, help="dropout on the adapter input (official scripts: 0.1)", min=0.0, max=1.0)


def _type_key(name: str, shape: Tuple[int, int]) -> str:
    return f"{name.rsplit('.', 1)[-1]}_{shape[0]}x{shape[1]}"


class MoSPools(nn.Module):
    """The per-model shared state: one (pool_A, pool_B) pair per module type."""

    def __init__(self, plan: Dict[str, dict], method: MoS, device, dtype):
        super().__init__()
        c = method.options.num_chunks
        self.pool_A = nn.ParameterDict()
        self.pool_B = nn.ParameterDict()
        adt = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        for key, t in plan.items():
            d_out, d_in = t["shape"]
            n = t["valid_rank"] * t["L"] * c
            a = torch.empty(n, d_in // c, device=device, dtype=adt)
            if a.device.type != "meta":
                bound = 1.0 / math.sqrt(d_in)  # kaiming_uniform_(a=√5) with fan = shard length × c = d_in
                a.uniform_(-bound, bound)
            self.pool_A[key] = nn.Parameter(a)
            self.pool_B[key] = nn.Parameter(torch.zeros(n, d_out // c, device=device, dtype=adt))


class MoSLinear(LowRankLinear):
    def __init__(self, base: nn.Linear, method: MoS, shared: MoSPools, key: str, layer_idx: int, t: dict):
        super().__init__(base, method, shared)
        o = method.options
        r = method.rank
        self.key = key
        self.scaling = o.alpha / r
        self.dropout = nn.Dropout(o.dropout) if o.dropout > 0 else nn.Identity()
        idx_a, idx_b = method.index_tables(t, layer_idx)
        dev = None if self.on_meta else self.device
        self.register_buffer("index_A", idx_a.to(dev) if dev is not None else idx_a)
        self.register_buffer("index_B", idx_b.to(dev) if dev is not None else idx_b)

    def factors(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(A_l, B_l): A_l ∈ R^{r×d_in}, B_l ∈ R^{d_out×r}, assembled from the pools by the index tables."""
        r = self.method.rank
        a = self.shared.pool_A[self.key][self.index_A].reshape(r, self.in_features)
        b = self.shared.pool_B[self.key][self.index_B].reshape(r, self.out_features).t()
        return a, b


@register
class MoS(Method):
    name = "mos"
    paper = ("Wang, Chen, Chen, Dong, Xue, Jiang, Kong, Wu, MoS: Unleashing Parameter Efficiency of Low-Rank "
             "Adaptation with Mixture of Shards, ICLR 2025 (arXiv:2410.00938)")
    Options = MoSOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    option_cases = ({"subset_selection": False}, {"pair_dissociation": False}, {"num_chunks": 1}, {"private_rank": 0},
                    {"dropout": 0.0})
    count_examples = (
        {"shapes": [(64, 64)] * 4, "rank": 4, "options": {"valid_rank": 2}, "count": 1_024,
         "source": "pools r_v·L·(d_in+d_out) = 2·4·128"},
        {"shapes": [(64, 64)] * 4, "rank": 8, "options": {}, "count": 1_536,
         "source": "auto r_v = max(⌈8/8⌉, 1 + ⌈7/4⌉) = 3: 3·4·128"},
        {"shapes": [(48, 32)] * 2, "rank": 4, "options": {"valid_rank": 3, "private_rank": 2}, "count": 480,
         "source": "3·2·(32+48)"},
    )

    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        self._plan: Dict[str, dict] = {}
        self._layer_of: Dict[str, Tuple[str, int]] = {}

    # -- planning: module types, layer indices, pool sizes ----------------------------------------------
    def resolve_valid_rank(self, L: int) -> int:
        o, r = self.options, self.rank
        rp = o.private_rank
        if o.valid_rank:
            return o.valid_rank
        if rp >= r:
            return r
        return max(math.ceil(r / 8), rp + math.ceil((r - rp) / L))

    def plan(self, named_shapes: Sequence[Tuple[str, Tuple[int, int]]]) -> Dict[str, dict]:
        o, r = self.options, self.rank
        plan: Dict[str, dict] = {}
        self._layer_of = {}
        for name, shape in named_shapes:
            key = _type_key(name, shape)
            t = plan.setdefault(key, {"shape": shape, "L": 0, "names": []})
            self._layer_of[name] = (key, t["L"])
            t["L"] += 1
            t["names"].append(name)
        c, rp = o.num_chunks, o.private_rank
        for key, t in plan.items():
            d_out, d_in = t["shape"]
            if d_in % c or d_out % c:
                raise ConfigError(f"method.options.num_chunks: {c} does not divide the {key} layer ({d_out}x{d_in})",
                                  hint="choose num_chunks dividing every target's d_in and d_out (e.g. 1 or 2)")
            rv, L = self.resolve_valid_rank(t["L"]), t["L"]
            if rp > min(r, rv):
                raise ConfigError(f"method.options.private_rank: {rp} exceeds min(rank={r}, valid_rank={rv})",
                                  hint="set private_rank <= rank and <= valid_rank")
            if rv == rp and r != rv:
                raise ConfigError(f"method.options.valid_rank: valid_rank = private_rank = {rv} leaves no public shards "
                                  f"but rank is {r}", hint="raise valid_rank above private_rank, or set it to the rank")
            if r - rp > (rv - rp) * L:
                raise ConfigError(
                    f"method.options.valid_rank: the {key} pool has {(rv - rp) * L} public rank vectors, rank {r} "
                    f"needs {r - rp}", hint=f"raise valid_rank to at least {rp + math.ceil((r - rp) / L)} or lower the rank")
            t["valid_rank"] = rv
        self._plan = plan
        return plan

    def index_tables(self, t: dict, layer_idx: int) -> Tuple[torch.Tensor, torch.Tensor]:
        o, r = self.options, self.rank
        c, rp, rv, L = o.num_chunks, o.private_rank, t["valid_rank"], t["L"]
        public = (rv - rp) * L * c
        private = public + torch.arange(layer_idx * rp * c, (layer_idx + 1) * rp * c)
        n_pub = (r - rp) * c
        key_off = sum(ord(ch) * (i + 1) for i, ch in enumerate(t["names"][0])) % 1_000_003

        def draw(which: int) -> torch.Tensor:
            if n_pub == 0:
                pub = torch.zeros(0, dtype=torch.long)
            elif o.subset_selection:
                g = self.generator(offset=key_off * 7919 + layer_idx * 2 + which)
                pub = torch.randperm(public, generator=g)[:n_pub]
            else:
                pub = torch.arange(n_pub)
            return torch.cat([pub, private]).long()

        a = draw(0)
        b = draw(1) if o.pair_dissociation else a.clone()
        return a, b

    # -- the Method interface -----------------------------------------------------------------------
    def adapt(self, model, targets, ctx):
        found = find_targets(model, targets, exclude=ctx.head_name)
        self.plan([(n, (m.out_features, m.in_features)) for n, m in found])
        return super().adapt(model, targets, ctx)

    def create_shared(self, shapes, device, dtype):
        return MoSPools(self._plan, self, device, dtype)

    def wrap(self, name, base, shared):
        key, idx = self._layer_of[name]
        return MoSLinear(base, self, shared, key, idx, self._plan[key])

    def layer_count(self, d_out, d_in):
        return 0  # everything trainable lives in the shared pools

    def shared_count(self, shapes):
        if self._plan:
            return sum(t["valid_rank"] * t["L"] * (t["shape"][0] + t["shape"][1]) for t in self._plan.values())
        # Without the names (types unknown), assume one type per distinct shape.
        by_shape: Dict[Tuple[int, int], int] = {}
        for s in shapes:
            by_shape[tuple(s)] = by_shape.get(tuple(s), 0) + 1
        return sum(self.resolve_valid_rank(L) * L * (o + i) for (o, i), L in by_shape.items())
