"""RandLoRA: full-rank parameter-efficient fine-tuning from scaled random low-rank bases.

Albert, Zhang, Ma, Saratchandran, Ko, Hengel, Sun, Abbasnejad, "RandLoRA: Full-rank parameter-efficient
fine-tuning of large models", ICLR 2025, arXiv:2502.00987. Official code: PaulAlbert31/RandLoRA (vision,
NLG and a PEFT integration used for the LLM experiments); Hugging Face PEFT `tuners/randlora` (contributed by
the first author). This file follows the PEFT layout so that bases, parameters and exports line up exactly.

Update of a (d_out, d_in) layer, with d_min = min(d_out, d_in), d_max = max(d_out, d_in), N = ⌈d_min / r⌉:

    ΔW = s · Σ_{n=1..N} B_n · diag(λ_n) · A · diag(γ_n)      (transposed when d_min = d_out)

* A ∈ R^{r×d_min} (one A shared by all N terms) and B_n ∈ R^{d_max×r} are frozen random bases **shared by
  every adapted layer**: one A of shape (r, 1, d_min,max) and one B of shape (d_max,max, N_max, r) built once
  per model at the largest sizes and sliced per layer. Generation as PEFT: a CPU generator seeded with `seed`,
  Kaiming-uniform (a = √5) drawn in bfloat16, A first then the N slices of B, each then divided by its global
  standard deviation. Sparse variants (`basis: sparse | very_sparse`): ternary {−1, 0, +1} entries with
  P(±1) = 1/6 each (sparse) or 1/(2√d_min) each (very sparse), divided by their std (a proof of concept in the
  paper: it saves no compute).
* Trainable per layer: λ ∈ R^{r×N} (the diagonal scalings on the rank side) and γ ∈ R^{N×d_min} (the
  diagonal scalings on the smaller layer dimension). Init as PEFT: λ = 0 and γ = 1/max(N, d_min), so ΔW = 0.
* Because N·r ≥ d_min, the sum has full rank min(d_out, d_in) for generic λ, γ.
* Scaling s = α / r (PEFT and the official vision code).

Trainable parameters per layer: **N·(r + d_min)**, N = ⌈d_min / r⌉ (decreasing in r, unlike LoRA).

Memory-efficient autograd: the forward builds the scaled bases Ã = λ ⊙ A ⊙ γ (r·N × d_min) only transiently;
backward rebuilds Ã and computes the gradients of λ and γ from the r·N × d_min gradient of Ã, so no
materialised copy of the N scaled bases is kept between forward and backward (PEFT's `UniqueBaseGrad` saves the
bases but still keeps Ã alive for the following matmul). Two numerically equivalent paths (`compute`):
* factored (`_RandLoRAFunction`): y = W0 x + s·B (Ã x), five token-sized matmuls with width r·N ≈ d_min per
  step, the dominant cost of RandLoRA (r·N ≈ d_min makes each as costly as the base matmul);
* dense (`_RandLoRADenseFunction`): y = (W0 + ΔW) x with ΔW = s·B Ã rebuilt in forward and in backward, which
  replaces the token-sized adapter matmuls by two d_out×d_in×r·N products plus one token-sized product for the
  gradient of ΔW; nothing but x is saved. With adapter dropout while training, y = W0 x + ΔW·dropout(x) (the
  same single dropout call as the factored path, so both consume the RNG alike and agree exactly), which costs
  one more token-sized product in forward and in backward.
`auto` (default) picks the one with fewer multiply-adds for the current number of tokens (dense once the
tokens exceed about 3/4 of the layer width, i.e. for nearly every training batch).

Deviations and choices:
* Pairing of B columns with Ã rows follows PEFT: B is flattened as (basis, rank) and Ã as (rank, basis). This
  is a fixed permutation of the paper's Σ_n B_n Λ_n A Γ_n pairing; with i.i.d. random bases the distribution is
  the same, and it makes exports load exactly in PEFT.
* Init follows PEFT (λ = 0, γ = 1/max(N, d_min)); the official vision code puts the zero on the d_min side
  instead (both give ΔW = 0).
* N = ⌈d_min / r⌉ as PEFT; the official vision code uses min(n, d_in//r + 1, d_out//r + 1).
* `alpha` defaults to 20·r (PEFT's documented rule, "typically 20 times the rank"; PEFT's literal default is
  640, i.e. r = 32). `seed` defaults to the run seed (PEFT's `projection_prng_key` defaults to 0).
* Bases are regenerated from the seed at setup, not stored in checkpoints, unless `save_bases` is set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .base import AdaptedLinear, Method, option, register


@dataclass
class RandLoRAOptions:
    alpha: Optional[float] = option(None, help="scaling numerator α, s = α/r; default 20·r (PEFT: 640 at r = 32)",
                                    min=0.0)
    dropout: float = option(0.0, help="dropout probability on the adapter path input", min=0.0, max=1.0)
    basis: str = option("dense", help="random bases: dense Kaiming-uniform, or ternary sparse/very_sparse",
                        choices=["dense", "sparse", "very_sparse"])
    seed: Optional[int] = option(None, help="seed of the shared random bases (PEFT projection_prng_key); "
                                            "default: the run seed", min=0)
    save_bases: bool = option(False, help="store the shared bases in checkpoints (regenerated from the seed "
                                          "otherwise)")
    compute: str = option("auto", help="factored: x·Ã^T·B^T (cheap for few tokens); dense: x·(W0 + ΔW)^T with ΔW "
                                       "rebuilt in forward and backward (cheap for many tokens); auto: the one "
                                       "with fewer multiply-adds for the batch at hand", choices=["auto", "factored", "dense"])


def num_bases(d_out: int, d_in: int, r: int) -> int:
    """N = ⌈min(d_out, d_in) / r⌉: enough rank-r terms for a full-rank update."""
    return -(-min(d_out, d_in) // r)


def generate_bases(r: int, max_dim: int, min_dim: int, seed: int, basis: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """The shared bases A (r, 1, min_dim) and B (max_dim, N, r), on the CPU, as PEFT generates them."""
    n = num_bases(max_dim, min_dim, r)
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    if basis == "dense":
        def kaiming(shape):
            t = torch.empty(shape, dtype=torch.bfloat16)
            return nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=g)

        with torch.no_grad():
            a = kaiming((r, 1, min_dim))
            b = torch.cat([kaiming((max_dim, 1, r)) for _ in range(n)], dim=1)
            return (a / a.std()).float(), (b / b.std()).float()
    sparsity = 3.0 if basis == "sparse" else math.sqrt(min_dim)
    ua = torch.rand((r, 1, min_dim), generator=g)
    ub = torch.rand((max_dim, n, r), generator=g)

    def ternary(u):
        t = torch.zeros(u.shape)
        t[u < 1 / (2 * sparsity)] = -1
        t[u > 1 - 1 / (2 * sparsity)] = 1
        return t / t.std()

    return ternary(ua), ternary(ub)


class RandLoRAShared(nn.Module):
    """The frozen bases shared by all RandLoRA layers of one model, plus cached dtype casts of them."""

    def __init__(self, r: int, max_dim: int, min_dim: int, seed: int, basis: str, device, dtype, persistent: bool):
        super().__init__()
        n = num_bases(max_dim, min_dim, r)
        if torch.device(device).type == "meta":
            a = torch.empty(r, 1, min_dim, device="meta", dtype=dtype)
            b = torch.empty(max_dim, n, r, device="meta", dtype=dtype)
        else:
            a, b = generate_bases(r, max_dim, min_dim, seed, basis)
            a, b = a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)
        self.register_buffer("randlora_A", a, persistent=persistent)
        self.register_buffer("randlora_B", b, persistent=persistent)
        self._casts: Dict[tuple, Tuple[torch.Tensor, torch.Tensor]] = {}

    def bases(self, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        a, b = self.randlora_A, self.randlora_B
        if a.dtype == dtype:
            return a, b
        key = (dtype, a.device, a.data_ptr(), b.data_ptr())
        if key not in self._casts:
            self._casts.clear()
            self._casts[key] = (a.to(dtype), b.to(dtype))
        return self._casts[key]


def _scaled_a(lam: torch.Tensor, gam: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Ã (r·N, d_min): row i·N + n is λ[i, n] · A[i] ⊙ γ[n]."""
    return (lam[:, :, None] * a[:, None, :] * gam[None, :, :]).reshape(-1, a.shape[1])


class _RandLoRAFunction(torch.autograd.Function):
    """s · x Ã^T B^T (d_min = d_in) or s · x B Ã (d_min = d_out), without keeping Ã for backward.

    The scaling s is folded into λ (an r×N tensor) instead of multiplying the (tokens × d_out) output, and the
    gradients of λ and γ are contractions of the r·N × d_min gradient of Ã."""

    @staticmethod
    def forward(ctx, x2, lam, gam, a, b_flat, scaling: float, in_is_min: bool):
        with torch.autocast(device_type=x2.device.type, enabled=False):
            w = _scaled_a(lam * scaling, gam, a)
            if in_is_min:
                out = (x2 @ w.t()) @ b_flat.t()
                ctx.save_for_backward(x2, lam, gam, a, b_flat)
            else:
                h = x2 @ b_flat
                out = h @ w
                ctx.save_for_backward(h, lam, gam, a, b_flat)
        ctx.scaling, ctx.in_is_min = scaling, in_is_min
        return out

    @staticmethod
    def backward(ctx, grad_out):
        saved, lam, gam, a, b_flat = ctx.saved_tensors
        g = grad_out.to(lam.dtype)
        lam_s = lam * ctx.scaling
        grad_x = None
        if ctx.in_is_min:
            gh = g @ b_flat  # (M, r·N)
            if ctx.needs_input_grad[0]:
                grad_x = gh @ _scaled_a(lam_s, gam, a)
            gw = gh.t() @ saved  # (r·N, d_min): gradient of Ã (unscaled)
        else:
            gw = saved.t() @ g  # h^T g
            if ctx.needs_input_grad[0]:
                grad_x = (g @ _scaled_a(lam_s, gam, a).t()) @ b_flat.t()
        r, n = lam.shape
        t = gw.view(r, n, -1) * a[:, None, :]
        grad_lam = torch.einsum("ind,nd->in", t, gam) * ctx.scaling if ctx.needs_input_grad[1] else None
        grad_gam = torch.einsum("ind,in->nd", t, lam_s) if ctx.needs_input_grad[2] else None
        return grad_x, grad_lam, grad_gam, None, None, None, None


class _RandLoRADenseFunction(torch.autograd.Function):
    """x W0^T + xd ΔW^T + bias with ΔW = s·B Ã built transiently in forward and rebuilt in backward; xd is the
    adapter path's input (dropout(x) while training with dropout), `None` when it is x itself, and then the two
    products are fused into one, x (W0 + ΔW)^T.

    Cheaper than the factored path when the layer sees more tokens than ~3/4 of its width (one d_out×d_in×r·N
    product per pass instead of matmuls with the token dimension), and it keeps nothing but x (or xd) for
    backward."""

    @staticmethod
    def _delta(lam_s, gam, a, b_flat, in_is_min):
        d = b_flat @ _scaled_a(lam_s, gam, a)  # (d_max, d_min)
        return d if in_is_min else d.t()

    @staticmethod
    def forward(ctx, x2, xd2, lam, gam, a, b_flat, w0, bias, scaling: float, in_is_min: bool):
        with torch.autocast(device_type=x2.device.type, enabled=False):
            delta = _RandLoRADenseFunction._delta(lam * scaling, gam, a, b_flat, in_is_min)
            b = None if bias is None else bias.to(lam.dtype)
            if xd2 is None:
                out = torch.nn.functional.linear(x2, w0.to(lam.dtype) + delta, b)
            else:
                out = torch.nn.functional.linear(x2, w0.to(lam.dtype), b) + xd2 @ delta.t()
        ctx.fused = xd2 is None
        ctx.save_for_backward(x2 if xd2 is None else xd2, lam, gam, a, b_flat, w0)  # w0: the parameter itself
        ctx.scaling, ctx.in_is_min = scaling, in_is_min
        return out

    @staticmethod
    def backward(ctx, grad_out):
        xa, lam, gam, a, b_flat, w0 = ctx.saved_tensors  # xa: the adapter path's input
        g = grad_out.to(lam.dtype)
        lam_s = lam * ctx.scaling
        grad_x = grad_xd = None
        need_x, need_xd = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if need_x or need_xd:
            delta = _RandLoRADenseFunction._delta(lam_s, gam, a, b_flat, ctx.in_is_min)
            if ctx.fused:
                grad_x = g @ (w0.to(lam.dtype) + delta) if need_x else None
            else:
                grad_x = g @ w0.to(lam.dtype) if need_x else None
                grad_xd = g @ delta if need_xd else None
        g_w = g.t() @ xa  # (d_out, d_in): gradient of ΔW
        gw = b_flat.t() @ (g_w if ctx.in_is_min else g_w.t())  # (r·N, d_min): gradient of Ã
        r, n = lam.shape
        t = gw.view(r, n, -1) * a[:, None, :]
        grad_lam = torch.einsum("ind,nd->in", t, gam) * ctx.scaling if ctx.needs_input_grad[2] else None
        grad_gam = torch.einsum("ind,in->nd", t, lam_s) if ctx.needs_input_grad[3] else None
        return grad_x, grad_xd, grad_lam, grad_gam, None, None, None, None, None, None


def _compute_dtype(x: torch.Tensor, default: torch.dtype) -> torch.dtype:
    dev = x.device.type
    try:
        if torch.is_autocast_enabled(dev):
            return torch.get_autocast_dtype(dev)
    except (TypeError, AttributeError):  # older torch: CUDA-only autocast query
        if dev == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
    return default


class RandLoRALinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: RandLoRA, shared: RandLoRAShared):
        super().__init__(base, method, shared)
        r, opts = method.rank, method.options
        self.r = r
        self.d_min = min(self.in_features, self.out_features)
        self.d_max = max(self.in_features, self.out_features)
        self.n_bases = num_bases(self.out_features, self.in_features, r)
        self.in_is_min = self.d_min == self.in_features
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.randlora_lambda = nn.Parameter(torch.zeros(r, self.n_bases, **kw))
        self.randlora_gamma = nn.Parameter(torch.full((self.n_bases, self.d_min),
                                                      1.0 / max(self.n_bases, self.d_min), **kw))
        self.scaling = method.alpha() / r
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()

    def _sliced(self, dtype):
        a, b = self.shared.bases(dtype)
        a = a[:, 0, : self.d_min]  # (r, d_min), a view
        b = b[: self.d_max, : self.n_bases, :].reshape(self.d_max, self.n_bases * self.r)  # view: (n, i) merge
        return a, b

    def use_dense(self, tokens: int) -> bool:
        """Dense when its extra multiply-adds (3·K·d_in·d_out + M·d_in·d_out, K = r·N) are fewer than the factored
        path's (M·K·(3·d_in + 2·d_out), case d_min = d_in; symmetric otherwise), M = tokens."""
        mode = self.method.options.compute
        if mode != "auto":
            return mode == "dense"
        k, di, do = self.r * self.n_bases, self.in_features, self.out_features
        factored = tokens * k * ((3 * di + 2 * do) if self.in_is_min else (2 * di + 3 * do))
        # With dropout while training the adapter path sees dropout(x) and the base x: the products cannot be
        # fused, which costs one more token-sized product in forward and one in backward.
        dense = 3 * k * di * do + (3 if self._dropout_active() else 1) * tokens * di * do
        return dense < factored

    def _dropout_active(self) -> bool:
        return self.training and not isinstance(self.dropout, nn.Identity)

    def forward(self, x):
        if self.merged:
            return self.base(x)
        tokens = x.numel() // self.in_features
        if not self.use_dense(tokens):
            return self.adapter_forward(x, self.base(x))
        autocast_dtype = _compute_dtype(x, None)
        cd = autocast_dtype or self.randlora_lambda.dtype
        a, b = self._sliced(cd)
        xd = self.dropout(x).reshape(-1, self.in_features).to(cd) if self._dropout_active() else None
        out = _RandLoRADenseFunction.apply(x.reshape(-1, self.in_features).to(cd), xd, self.randlora_lambda.to(cd),
                                           self.randlora_gamma.to(cd), a, b, self.base.weight, self.base.bias,
                                           self.scaling, self.in_is_min)
        # the dtype the base layer would have returned (autocast's, else the weight's)
        return out.reshape(*x.shape[:-1], self.out_features).to(autocast_dtype or self.base.weight.dtype)

    def adapter_forward(self, x, base_out):
        cd = _compute_dtype(x, self.randlora_lambda.dtype)
        a, b = self._sliced(cd)
        h = self.dropout(x)
        x2 = h.reshape(-1, self.in_features).to(cd)
        out = _RandLoRAFunction.apply(x2, self.randlora_lambda.to(cd), self.randlora_gamma.to(cd), a, b,
                                      self.scaling, self.in_is_min)
        return base_out + out.reshape(*x.shape[:-1], self.out_features).to(base_out.dtype)

    def delta_weight(self):
        a, b = self._sliced(self.randlora_lambda.dtype)
        full = b @ _scaled_a(self.randlora_lambda, self.randlora_gamma, a)  # (d_max, d_min)
        return (full if self.in_is_min else full.t()) * self.scaling


@register
class RandLoRA(Method):
    name = "randlora"
    paper = ("Albert et al., RandLoRA: Full-rank parameter-efficient fine-tuning of large models, ICLR 2025 "
             "(arXiv:2502.00987)")
    Options = RandLoRAOptions
    needs_rank = True
    init_is_identity = True
    mergeable = True
    option_cases = ({"basis": "sparse"}, {"basis": "very_sparse"}, {"compute": "factored"}, {"compute": "dense"},
                    {"dropout": 0.2}, {"dropout": 0.2, "compute": "dense"}, {"save_bases": True})
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 528_384,
         "source": "methods.md §1: N = 128, 128·(32+4096)"},
        {"shapes": [(3072, 3072), (1024, 3072)] * 28, "rank": 32, "options": {}, "count": 9_289_728,
         "source": "PEFT's logged Llama-3.2-3B q/v count at r = 32"},
        {"shapes": [(33, 17)], "rank": 5, "options": {}, "count": 88, "source": "N = ⌈17/5⌉ = 4, 4·(5+17)"},
    )

    def alpha(self) -> float:
        return float(self.options.alpha) if self.options.alpha is not None else 20.0 * self.rank

    def base_seed(self) -> int:
        return int(self.options.seed if self.options.seed is not None else self.seed)

    def layer_count(self, d_out, d_in):
        n = num_bases(d_out, d_in, self.rank)
        return n * (self.rank + min(d_out, d_in))

    def create_shared(self, shapes, device, dtype):
        # As PEFT: the elementwise-largest (d_out, d_in), then its min/max sides.
        max_out = max(o for o, _ in shapes)
        max_in = max(i for _, i in shapes)
        bdtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        return RandLoRAShared(self.rank, max(max_out, max_in), min(max_out, max_in), self.base_seed(),
                              self.options.basis, device, bdtype, self.options.save_bases)

    def wrap(self, name, base, shared):
        return RandLoRALinear(base, self, shared)
