"""NOLA: LoRA factors as linear combinations of fixed random bases regenerated from a seed.

Koohpayegani, Navaneet, Nooralinejad, Kolouri, Pirsiavash, "NOLA: Compressing LoRA using Linear Combination of
Random Basis", ICLR 2024, arXiv:2310.02556. Official code: UCDvision/NOLA (`gpt/src/model_nola.py`: `LoRA`
with `NOLALinear` factors and the `GenerateParams` autograd function; the same in `llama/peft/tuners/lora.py`).

A LoRA of rank r whose factors are re-parametrised:

    A = A0 + Σ_{i=1..k_A} α_i · R^A_i   (r × d_in),    B = Σ_{j=1..k_B} β_j · R^B_j   (d_out × r)
    y = W0 x + s · B A dropout(x),   s = α_lora / r

* R^A_i, R^B_j: random matrices with i.i.d. U(−1, 1) entries scaled by 1/√k (as `GenerateParams`), generated
  on the fly from a per-module seed in forward **and again in backward** (∂L/∂c_i = ⟨∂L/∂W, R_i⟩), so they
  are never stored, neither in memory between steps nor in checkpoints; generation is chunked over the bases
  (`chunk_elements`) to bound the temporary memory, as the official `GenerateParamsChunks`.
* Only the coefficients α ∈ R^{k_A}, β ∈ R^{k_B} train; both start at 0.
* A0 is the frozen Kaiming-uniform (a = √5, i.e. U(±1/√d_in)) weight of the official `NOLALinear` for A; B's
  frozen weight is 0. So ΔW = 0 at the start, and **the frozen offset A0 is what gives β a non-zero gradient
  at step 0** (∂L/∂B ∝ A0 x); α's gradient is zero until B moves. A0 is also regenerated from the seed.

Trainable parameters per layer: **k_A + k_B**, independent of the rank and of the layer's shape.

Deviations:
* Random numbers come from a counter-based hash generator (murmur3 finaliser over the element index, keyed by
  the seed through splitmix64) written in plain int32 tensor ops, instead of `torch.manual_seed` + `uniform_` on the global RNG:
  the bases are the same on every device (CPU, CUDA), do not disturb the global RNG, and any chunk can be
  generated independently. The distribution (U(−1, 1)/√k, A0 ~ U(±1/√d_in)) is the official one.
* The per-module seeds derive from the method seed (default: the run seed) and the module name, instead of a
  random integer per module stored in the state dict: a checkpoint holds only the coefficients, and a resume
  (same spec) derives the same seeds, hence the same bases and A0.
* Defaults: `alpha` = r (s = 1) and k_A = k_B = 512 follow the official **GPT-2 Medium** E2E script
  (`gpt/scripts/finetune_gpt2m_e2e_qv_nola.sh`: r = 8, α = 8, NUM_BASIS = 512, lr 5e-3, batch 8). The other
  released settings differ: GPT-2 Large (`finetune_gpt2l_e2e_qv_nola.sh`) uses k = 256, α = 2 (s = 1/4), lr 1e-2,
  batch 4 × grad-accum 4; the LLaMA-2 Alpaca/Guanaco scripts use r = 16, k = 512, α = 4 (s = 1/4); the `LoRA`
  class defaults in `model_nola.py` are k = 1024, α = 1. Set `num_basis_a/b` and `alpha` to reproduce them.
* `cache_mb`: a layer whose bases take at most this much memory (k_A·r·d_in + k_B·d_out·r floats) keeps
  them in memory after the first generation instead of regenerating them twice per step (the official code
  always regenerates). Same numbers, same checkpoints (the cache is never saved); it only trades memory for
  speed, which matters for small layers on the CPU where the hash generator dominates the step time. Set 0 to
  always regenerate.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .base import LowRankLinear, Method, option, register

_M32 = 0xFFFFFFFF


def _signed32(v: int) -> int:
    v &= _M32
    return v - (1 << 32) if v >= (1 << 31) else v


def _fmix32_(h: torch.Tensor, t: torch.Tensor) -> None:
    """murmur3's 32-bit finaliser, in place on an int32 tensor `h` (scratch `t`): multiplication wraps modulo
    2^32, right shifts are made logical by masking."""
    torch.bitwise_right_shift(h, 16, out=t)
    h.bitwise_xor_(t.bitwise_and_(0xFFFF))
    h.mul_(_signed32(0x85EBCA6B))
    torch.bitwise_right_shift(h, 13, out=t)
    h.bitwise_xor_(t.bitwise_and_(0x7FFFF))
    h.mul_(_signed32(0xC2B2AE35))
    torch.bitwise_right_shift(h, 16, out=t)
    h.bitwise_xor_(t.bitwise_and_(0xFFFF))


def _keys(seed: int, hi: int):
    """Two 32-bit keys from a 64-bit seed and the high half of the element index (splitmix64 mixing)."""
    z = (seed + 0x9E3779B97F4A7C15 * (hi + 1)) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    z ^= z >> 31
    return _signed32(z), _signed32(z >> 32)


def default_work(device) -> int:
    """Elements hashed per pass: small enough to stay in the CPU caches, large for GPU kernels."""
    return 1 << 16 if torch.device(device).type == "cpu" else 1 << 22


def hash_uniform(seed: int, start: int, count: int, device, dtype=torch.float32, work: int = 0) -> torch.Tensor:
    """`count` numbers in [−1, 1) for the element indices start..start+count−1 of the stream `seed`: a pure
    function of (seed, index) in integer arithmetic, hence identical on every device. For index i with
    hi = i >> 32, lo = i mod 2^32 and (k1, k2) = keys(seed, hi): h = fmix32(fmix32(lo ^ k1) + k2), and the
    value is (h >> 8) · 2^-23 − 1 (24 random bits)."""
    work = work or default_work(device)
    out = torch.empty(count, dtype=torch.float32, device=device)
    h = torch.empty(min(work, count), dtype=torch.int32, device=device)
    t = torch.empty_like(h)
    pos, end, o = start, start + count, 0
    while pos < end:
        hi, lo = pos >> 32, pos & _M32
        boundary = (hi << 32) + ((1 << 31) if lo < (1 << 31) else (1 << 32))  # int32 sign boundary
        n = min(work, end - pos, boundary - pos)
        k1, k2 = _keys(seed, hi)
        hh, tt = h[:n], t[:n]
        torch.arange(n, out=hh)
        hh.add_(_signed32(lo))  # no overflow: the run stops at the sign boundary
        hh.bitwise_xor_(k1)
        _fmix32_(hh, tt)
        hh.add_(k2)
        _fmix32_(hh, tt)
        hh.bitwise_right_shift_(8).bitwise_and_(0xFFFFFF)
        out[o:o + n].copy_(hh)
        pos, o = pos + n, o + n
    out.mul_(2.0 / 16777216.0).sub_(1.0)
    return out.to(dtype)


def basis_chunk(seed: int, k: int, numel: int, first: int, n: int, device, dtype) -> torch.Tensor:
    """Bases first..first+n−1 of a k-basis family, as an (n, numel) matrix: U(−1, 1) / √k."""
    return hash_uniform(seed, first * numel, n * numel, device, dtype).view(n, numel).mul_(1.0 / math.sqrt(k))


class _Combine(torch.autograd.Function):
    """Σ_i c_i R_i with R_i regenerated chunk by chunk in forward and in backward (nothing saved but c)."""

    @staticmethod
    def forward(ctx, coeffs, seed: int, shape: Tuple[int, int], chunk: int):
        k, numel = coeffs.shape[0], shape[0] * shape[1]
        out = torch.zeros(numel, device=coeffs.device, dtype=coeffs.dtype)
        for first in range(0, k, chunk):
            n = min(chunk, k - first)
            out += coeffs[first:first + n] @ basis_chunk(seed, k, numel, first, n, coeffs.device, coeffs.dtype)
        ctx.seed, ctx.shape, ctx.chunk, ctx.k = seed, shape, chunk, k
        return out.view(shape)

    @staticmethod
    def backward(ctx, grad):
        g = grad.reshape(-1).to(torch.float32 if grad.dtype in (torch.float16, torch.bfloat16) else grad.dtype)
        numel, parts = g.numel(), []
        for first in range(0, ctx.k, ctx.chunk):
            n = min(ctx.chunk, ctx.k - first)
            parts.append(basis_chunk(ctx.seed, ctx.k, numel, first, n, g.device, g.dtype) @ g)
        return torch.cat(parts), None, None, None


@dataclass
class NOLAOptions:
    num_basis_a: int = option(512, help="k_A: number of random bases (trainable coefficients) of the A factor",
                              min=1)
    num_basis_b: int = option(512, help="k_B: number of random bases (trainable coefficients) of the B factor",
                              min=1)
    alpha: Optional[float] = option(None, help="LoRA scaling numerator, s = α/r; default r (s = 1, the official "
                                               "GPT-2 M script; GPT-2 L uses 2, LLaMA-2 4)", min=0.0)
    dropout: float = option(0.0, help="dropout probability on the adapter path input", min=0.0, max=1.0)
    seed: Optional[int] = option(None, help="seed the per-module basis seeds derive from; default: the run seed",
                                 min=0)
    chunk_elements: int = option(1 << 22, help="bound on the number of basis entries generated at once",
                                 min=1)
    cache_mb: float = option(16.0, help="keep a layer's generated bases in memory when they take at most this "
                                        "many MB (0: always regenerate, as the official code; never checkpointed)",
                             min=0.0)


class NOLALinear(LowRankLinear):
    def __init__(self, base: nn.Linear, method: NOLA, name: str):
        super().__init__(base, method, None)
        r, opts = method.rank, method.options
        self.r = r
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.nola_alpha = nn.Parameter(torch.zeros(opts.num_basis_a, **kw))
        self.nola_beta = nn.Parameter(torch.zeros(opts.num_basis_b, **kw))
        self.seeds = method.module_seeds(name)  # plain ints: derived again from the spec on a resume
        self.register_buffer("lora_A0", torch.empty(r, self.in_features, **kw), persistent=False)
        self.scaling = method.alpha() / r
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()
        self.chunk_elements = opts.chunk_elements
        floats = opts.num_basis_a * r * self.in_features + opts.num_basis_b * self.out_features * r
        self.cache_bases = floats * 4 <= opts.cache_mb * 2 ** 20
        self._cache: Dict[tuple, torch.Tensor] = {}
        if not self.on_meta:
            self.reset_offset()

    @torch.no_grad()
    def reset_offset(self) -> None:
        """A0 ~ U(±1/√d_in) (Kaiming-uniform with a = √5), regenerated from the module's third seed."""
        bound = 1.0 / math.sqrt(self.in_features)
        a0 = hash_uniform(self.seeds[2], 0, self.r * self.in_features, self.device, self.lora_A0.dtype)
        self.lora_A0.copy_(a0.view(self.r, self.in_features) * bound)

    def _combine(self, coeffs: torch.Tensor, seed: int, shape: Tuple[int, int]) -> torch.Tensor:
        numel = shape[0] * shape[1]
        if self.cache_bases:
            key = (seed, coeffs.device, coeffs.dtype, coeffs.shape[0])
            if key not in self._cache:
                for stale in [k for k in self._cache if k[0] == seed]:  # moved to another device or dtype
                    del self._cache[stale]
                self._cache[key] = basis_chunk(seed, coeffs.shape[0], numel, 0, coeffs.shape[0],
                                               coeffs.device, coeffs.dtype)
            return (coeffs @ self._cache[key]).view(shape)
        chunk = max(1, (self.chunk_elements or default_work(coeffs.device)) // numel)
        return _Combine.apply(coeffs, seed, shape, chunk)

    def factors(self) -> Tuple[torch.Tensor, torch.Tensor]:
        a = self.lora_A0 + self._combine(self.nola_alpha, self.seeds[0], (self.r, self.in_features))
        b = self._combine(self.nola_beta, self.seeds[1], (self.out_features, self.r))
        return a, b


@register
class NOLA(Method):
    name = "nola"
    paper = ("Koohpayegani et al., NOLA: Compressing LoRA using Linear Combination of Random Basis, ICLR 2024 "
             "(arXiv:2310.02556)")
    Options = NOLAOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    test_options = {"num_basis_a": 128, "num_basis_b": 128}  # keeps the suite fast; same code path
    option_cases = ({"cache_mb": 0.0}, {"dropout": 0.2}, {"num_basis_a": 16, "num_basis_b": 8, "alpha": 2.0})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 8, "options": {"num_basis_a": 512, "num_basis_b": 512}, "count": 1_024,
         "source": "methods.md §1: k_A + k_B"},
        {"shapes": [(33, 17), (8, 70)], "rank": 3, "options": {"num_basis_a": 7, "num_basis_b": 5}, "count": 24,
         "source": "(7+5) per layer, whatever the shape"},
    )

    def alpha(self) -> float:
        return float(self.options.alpha) if self.options.alpha is not None else float(self.rank)

    def module_seeds(self, name: str) -> Tuple[int, int, int]:
        """Three seeds (A bases, B bases, A0) per module, from the method seed and the module name."""
        base = int(self.options.seed if self.options.seed is not None else self.seed)
        h = zlib.crc32(name.encode())
        mixed = (base * 0x9E3779B97F4A7C15 + h * 0xBF58476D1CE4E5B9) % (1 << 61)
        return mixed * 4 + 1, mixed * 4 + 2, mixed * 4 + 3

    def layer_count(self, d_out, d_in):
        return self.options.num_basis_a + self.options.num_basis_b

    def wrap(self, name, base, shared):
        return NOLALinear(base, self, name)
