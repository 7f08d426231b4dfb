"""SNELL: sparse tuning with a kernelized LoRA and competition-based sparsification (no stored mask).

Paper: Shufan Shen, Junshu Sun, Xiangyang Ji, Qingming Huang, Shuhui Wang, "Expanding Sparse Tuning for Low Memory
Usage", NeurIPS 2024, arXiv:2411.01800.
Official code: github.com/ssfgunner/SNELL (`model/vision_transformer_timm.py`, classes `KLoRA`, `SNELL`,
`TuningModule`, `MlpSNELLParallel`; scripts `scripts/{fgvc,vtab}/snell{8,16,32}`; read at e9d5185).

Method (as the official code does it)
-------------------------------------
Trainable low-rank coordinates In ∈ R^{H×d_in×(q/H)} and Out ∈ R^{H×d_out×(q/H)} (H = `num_kernels` = 2,
q = the rank), Kaiming-uniform (a = √5 on the 3-D tensors: bound 1/√(d·q/H)). The kernelized merge is a signed sum
of Euclidean-distance kernels,

    M = Σ_h c_h · cdist(In_h, Out_h, p)  ∈ R^{d_in×d_out},     c_h = 0.1·(−1)^h (fixed),

whose rank is not bounded by q. Competition-based sparsification with ratio s (`sparsity`, the official
`init_thres`): τ = the s-quantile of |M|; entries with |M| ≤ τ become 0 and the kept ones are multiplied by their own
(detached) magnitude, M_s = M ⊙ (|M|·1[|M| > τ]); the pattern is recomputed from the current M at every forward, so
no mask or index is stored. With s = 0 the official code uses the dense `KLoRA` branch (M itself, no magnitude
factor), and so does this implementation. ΔW = M_sᵀ is applied as a parallel branch on the layer input:

    y = W0 x + DropPath(dropout(x) · M_s),

with dropout 0.1 and DropPath 0.1 (the official defaults; `--no_drop_out` / `--no_drop_path` were not used in the
released scripts) and gradient checkpointing around the branch (official). Dropout placement follows the official
blocks (`AttentionSNELLParallel`, `MlpSNELLParallel`): q, k and v read the same block input and share **one**
dropout draw (`x_drop` is computed once per attention call), each branch draws its own DropPath, and the
attention output projection's branch has **no** input dropout. Here: adapted layers fed the same input tensor in
one forward pass share one dropped input (the first of them draws it; a layer reading the same tensor again starts
a new pass and draws afresh), so q/k/v consume the RNG as the official block does; and targets matching
`dropout_exclude` (default: the attention output projections of the supported architectures, `attn.out`,
`o_proj`, `out_proj`, `attn.proj`, `attention.output.dense`, `to_out.0`, `c_proj`) get no dropout.

Trainable parameters per (d_out, d_in) layer: H·⌊q/H⌋·(d_in + d_out) (= q·(d_in + d_out) for even q).

Defaults: num_kernels 2, kernel_scale 0.1, norm_p 2, dropout 0.1, drop_path 0.1, checkpointing on (all official).
The official CLI default for the sparsity is 0 (dense); the released scripts set it per task (VTAB-1k 0–0.995,
FGVC 0–0.8; median ≈ 0.4); our default 0.5 is a choice. AdamW lr 1e-3, wd 0.01, q = 8/16/32 in the scripts.

Deviations and notes
--------------------
* The threshold is found with `torch.kthvalue` (the (k+1)-th smallest |M|, k = ⌊s·(n−1)⌋) instead of
  `torch.quantile`, which refuses tensors above 2^24 elements (a 4096×11008 layer); for distinct magnitudes
  both keep exactly the entries above the (k+1)-th smallest, i.e. n − k − 1 entries.
* The official code also records `w_mag` (mean kept magnitude) for its allocator variants; it plays no role in
  SNELL training and is not kept.
* Merging folds M_sᵀ (computed from the current coordinates, without dropout) into W0.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .base import AdaptedLinear, Method, matches_target, option, register


@dataclass
class SNELLOptions:
    sparsity: float = option(0.5, help="fraction s of merged entries zeroed by the competition (official init_thres; "
                                       "0 = dense kernelized LoRA)", min=0.0, max=1.0)
    num_kernels: int = option(2, help="H: number of distance kernels, coefficients 0.1·(-1)^h (official num_Hs)", min=1)
    kernel_scale: float = option(0.1, help="|c_h|, the fixed kernel coefficient magnitude (official SCALE_FACTOR_fc)",
                                 min=0.0)
    norm_p: float = option(2.0, help="p of the distance kernel cdist(In_h, Out_h, p)", min=0.0)
    dropout: float = option(0.1, help="dropout on the branch input (official default)", min=0.0, max=1.0)
    drop_path: float = option(0.1, help="DropPath (per sample) on the branch output (official default)",
                              min=0.0, max=1.0)
    checkpoint: bool = option(True, help="recompute the merged matrix in backward (gradient checkpointing, official)")
    dropout_exclude: list = option(["attn.out", "o_proj", "out_proj", "attn.proj", "attention.output.dense",
                                    "to_out.0", "c_proj"],
                                   help="targets whose branch gets no input dropout, as method.targets patterns "
                                        "(official: the attention output projection)")


def competition_sparsify(m: torch.Tensor, s: float) -> torch.Tensor:
    """M ⊙ (|M|·1[|M| > τ]) with τ the s-quantile of |M| (magnitude factor detached); M itself when s == 0."""
    if s <= 0:
        return m
    mag = m.detach().abs()
    flat = mag.flatten()
    k = int(math.floor(s * (flat.numel() - 1)))
    tau = torch.kthvalue(flat, k + 1).values
    return m * torch.where(mag > tau, mag, torch.zeros_like(mag))


class SNELLLinear(AdaptedLinear):
    def __init__(self, base: nn.Linear, method: SNELL, name: str = "", shared=None):
        super().__init__(base, method, shared)
        o = method.options
        H, qh = o.num_kernels, method.rank // o.num_kernels
        kw = dict(device=self.device, dtype=self.adapter_dtype)
        self.In_Qs = nn.Parameter(torch.empty(H, self.in_features, qh, **kw))
        self.Out_Qs = nn.Parameter(torch.empty(H, self.out_features, qh, **kw))
        coeff = torch.tensor([o.kernel_scale * (-1) ** h for h in range(H)], **kw).view(H, 1, 1)
        self.register_buffer("coeff", coeff, persistent=False)
        self.target_name = name
        excluded = any(matches_target(name, pat) for pat in o.dropout_exclude)
        self.dropout = nn.Dropout(o.dropout) if o.dropout > 0 and not excluded else nn.Identity()
        if not self.on_meta:
            with torch.no_grad():
                for p, d in ((self.In_Qs, self.in_features), (self.Out_Qs, self.out_features)):
                    bound = 1.0 / math.sqrt(d * qh)  # kaiming_uniform_(a=√5): fan_in = size(1)·size(2)
                    p.uniform_(-bound, bound)

    def merged_matrix(self) -> torch.Tensor:
        """M_s ∈ R^{d_in×d_out}: the sparsified kernel merge (ΔW = M_sᵀ)."""
        o = self.method.options
        m = (self.coeff * torch.cdist(self.In_Qs, self.Out_Qs, p=o.norm_p)).sum(0)
        return competition_sparsify(m, o.sparsity)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.merged_matrix()

    def _drop_path(self, y: torch.Tensor) -> torch.Tensor:
        p = self.method.options.drop_path
        if p == 0 or not self.training:
            return y
        keep = 1.0 - p
        shape = (y.shape[0],) + (1,) * (y.dim() - 1)
        mask = y.new_empty(shape).bernoulli_(keep)
        return y * mask / keep

    def adapter_forward(self, x, base_out):
        h = self.method.dropped_input(self, x).to(self.In_Qs.dtype)
        if self.method.options.checkpoint and torch.is_grad_enabled() and self.In_Qs.requires_grad:
            delta = checkpoint(self._branch, h, use_reentrant=False)
        else:
            delta = self._branch(h)
        return base_out + self._drop_path(delta).to(base_out.dtype)

    def delta_weight(self):
        return self.merged_matrix().t()


@register
class SNELL(Method):
    name = "snell"
    paper = ("Shen, Sun, Ji, Huang, Wang, Expanding Sparse Tuning for Low Memory Usage (SNELL), NeurIPS 2024 "
             "(arXiv:2411.01800)")
    Options = SNELLOptions
    needs_rank = True
    init_is_identity = False  # the kernel merge is non-zero at initialisation (official)
    mergeable = True
    option_cases = ({"sparsity": 0.0}, {"dropout": 0.0, "drop_path": 0.0}, {"checkpoint": False}, {"num_kernels": 1},
                    {"dropout_exclude": ["fc1", "fc2", "up_proj"]}, {"norm_p": 1.0})
    conformance_ranks = (2, 4, 16)  # rank >= num_kernels
    count_examples = (
        {"shapes": [(4096, 4096)], "rank": 32, "options": {}, "count": 262_144, "source": "methods.md §1"},
        {"shapes": [(1024, 3072)], "rank": 5, "options": {}, "count": 16_384, "source": "2·⌊5/2⌋·(3072+1024)"},
        {"shapes": [(33, 17)], "rank": 8, "options": {"num_kernels": 3}, "count": 300, "source": "3·⌊8/3⌋·(17+33)"},
    )

    def __init__(self, rank=None, options=None, seed=0):
        super().__init__(rank, options, seed)
        self._drop_cache = None  # (weakref to x, x._version, dropout(x), ids of the layers that used it)
        if self.rank // self.options.num_kernels < 1:
            from ..errors import ConfigError
            raise ConfigError(f"method.rank: {self.rank} is below num_kernels={self.options.num_kernels}",
                              hint="use a rank >= num_kernels (each kernel gets rank // num_kernels coordinates)")

    def layer_count(self, d_out, d_in):
        H = self.options.num_kernels
        return H * (self.rank // H) * (d_in + d_out)

    def wrap(self, name, base, shared):
        return SNELLLinear(base, self, name, shared)

    def dropped_input(self, layer: SNELLLinear, x: torch.Tensor) -> torch.Tensor:
        """dropout(x), shared by the layers that read the same tensor x in one pass (official q/k/v)."""
        if isinstance(layer.dropout, nn.Identity) or not layer.training:
            return layer.dropout(x)
        cached = self._drop_cache
        if cached is not None and cached[0]() is x and cached[1] == x._version and id(layer) not in cached[3]:
            cached[3].add(id(layer))
            return cached[2]
        h = layer.dropout(x)
        self._drop_cache = (weakref.ref(x), x._version, h, {id(layer)})
        return h
