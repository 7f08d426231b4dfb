"""Three small built-in models for CPU work and tests, in PyTorch only.

* `tiny-encoder`: a BERT-style bidirectional encoder (pre-LayerNorm blocks, learned positions, CLS pooling)
  for sequence classification/regression. Linear names: attn.query/key/value/out, mlp.fc1/fc2; head `classifier`.
* `tiny-vit`: a ViT (patch embedding by a strided convolution, CLS token, pre-LN blocks) for image
  classification; same block and names as the encoder; head `classifier`.
* `tiny-decoder`: a LLaMA-style causal LM (RMSNorm, rotary position embedding, SwiGLU MLP) with the LLaMA
  names q_proj/k_proj/v_proj/o_proj/gate_proj/up_proj/down_proj; head `lm_head` (untied). With `num_labels`
  it is a sequence classifier instead (as `LlamaForSequenceClassification`): head `score` (no bias) on the
  hidden state of the last real token of each row (right padding; the attention mask says which are real).

Every model takes HF-style keyword inputs (text models: `input_ids` or `inputs_embeds`, and
`get_input_embeddings()` gives the token embedding) and returns `ModelOutput(loss, logits)`; the loss follows HF:
cross-entropy (MSE when num_labels == 1) for classification, next-token cross-entropy with -100 ignored
for the causal LM.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelOutput:
    loss: Optional[torch.Tensor]
    logits: torch.Tensor

    def __getitem__(self, key):  # HF-style access
        return getattr(self, key)


def _init_weights(module: nn.Module, std: float = 0.02) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _cls_loss(logits: torch.Tensor, labels: Optional[torch.Tensor], num_labels: int) -> Optional[torch.Tensor]:
    if labels is None:
        return None
    if num_labels == 1:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels.long())


# ---------------------------------------------------------------------------------------------------
# Encoder / ViT
# ---------------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        assert hidden % heads == 0, "hidden_size must be divisible by num_heads"
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        b, t, h = x.shape
        split = lambda y: y.view(b, t, self.heads, h // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(b, t, h))


class MLP(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, dropout: float, eps: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden, eps=eps)
        self.attn = SelfAttention(hidden, heads, dropout)
        self.ln2 = nn.LayerNorm(hidden, eps=eps)
        self.mlp = MLP(hidden, inner)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        x = x + self.drop(self.attn(self.ln1(x), mask))
        return x + self.drop(self.mlp(self.ln2(x)))


ENCODER_DEFAULTS: Dict[str, Any] = dict(vocab_size=1024, hidden_size=64, num_layers=2, num_heads=4,
                                        intermediate_size=128, max_position=128, dropout=0.0,
                                        layer_norm_eps=1e-5, pad_token_id=0)


class TinyEncoder(nn.Module):
    def __init__(self, config: Dict[str, Any], num_labels: int):
        super().__init__()
        c = self.config = dict(config)
        self.num_labels = num_labels
        h = c["hidden_size"]
        self.embed_tokens = nn.Embedding(c["vocab_size"], h)
        self.embed_positions = nn.Embedding(c["max_position"], h)
        self.layers = nn.ModuleList(Block(h, c["num_heads"], c["intermediate_size"], c["dropout"], c["layer_norm_eps"])
                                    for _ in range(c["num_layers"]))
        self.norm = nn.LayerNorm(h, eps=c["layer_norm_eps"])
        self.classifier = nn.Linear(h, num_labels)
        _init_weights(self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None, **_ignored):
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        pos = torch.arange(x.shape[1], device=x.device)
        x = x + self.embed_positions(pos)[None]
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, None, None, :].bool()  # (b, 1, 1, t): attend to real tokens
        for layer in self.layers:
            x = layer(x, mask)
        logits = self.classifier(self.norm(x)[:, 0])
        return ModelOutput(_cls_loss(logits, labels, self.num_labels), logits)


VIT_DEFAULTS: Dict[str, Any] = dict(image_size=32, patch_size=8, channels=3, hidden_size=64, num_layers=2,
                                    num_heads=4, intermediate_size=128, dropout=0.0, layer_norm_eps=1e-6)


class TinyViT(nn.Module):
    def __init__(self, config: Dict[str, Any], num_labels: int):
        super().__init__()
        c = self.config = dict(config)
        self.num_labels = num_labels
        h, p = c["hidden_size"], c["patch_size"]
        if c["image_size"] % p:
            raise ValueError("image_size must be a multiple of patch_size")
        n = (c["image_size"] // p) ** 2
        self.patch_embed = nn.Conv2d(c["channels"], h, kernel_size=p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, h))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, h))
        self.layers = nn.ModuleList(Block(h, c["num_heads"], c["intermediate_size"], c["dropout"], c["layer_norm_eps"])
                                    for _ in range(c["num_layers"]))
        self.norm = nn.LayerNorm(h, eps=c["layer_norm_eps"])
        self.classifier = nn.Linear(h, num_labels)
        _init_weights(self)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, pixel_values, labels=None, **_ignored):
        x = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for layer in self.layers:
            x = layer(x, None)
        logits = self.classifier(self.norm(x)[:, 0])
        return ModelOutput(_cls_loss(logits, labels, self.num_labels), logits)


# ---------------------------------------------------------------------------------------------------
# LLaMA-style decoder
# ---------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary(q, k, positions, theta: float):
    """Rotary position embedding (Su et al., RoFormer), in the half-split layout LLaMA/HF use."""
    d = q.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, device=q.device, dtype=torch.float32) / d))
    ang = positions.float()[..., None] * inv  # (b, t, d/2)
    emb = torch.cat((ang, ang), dim=-1)[:, None]  # (b, 1, t, d)
    cos, sin = emb.cos().to(q.dtype), emb.sin().to(q.dtype)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


class DecoderAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, self.heads, self.kv_heads = c["hidden_size"], c["num_heads"], c["num_kv_heads"]
        self.head_dim = h // self.heads
        self.theta = c["rope_theta"]
        self.q_proj = nn.Linear(h, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, h, bias=False)

    def forward(self, x, positions, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotary(q, k, positions, self.theta)
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = DecoderAttention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = SwiGLU(c)

    def forward(self, x, positions, mask):
        x = x + self.self_attn(self.input_layernorm(x), positions, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


DECODER_DEFAULTS: Dict[str, Any] = dict(vocab_size=1024, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4,
                                        intermediate_size=172, max_position=256, rope_theta=10000.0,
                                        rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=4, eos_token_id=5)


class TinyDecoder(nn.Module):
    def __init__(self, config: Dict[str, Any], num_labels: Optional[int] = None):
        super().__init__()
        c = self.config = dict(config)
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["num_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.num_labels = num_labels
        if num_labels:  # sequence classification: the LLaMA classifier's name and shape
            self.score = nn.Linear(c["hidden_size"], num_labels, bias=False)
        else:
            self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        _init_weights(self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, labels=None, position_ids=None, inputs_embeds=None,
                **_ignored):
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        b, t = x.shape[:2]
        dev = x.device
        if position_ids is None:
            if attention_mask is not None:  # left padding: positions count real tokens only
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            else:
                position_ids = torch.arange(t, device=dev)[None].expand(b, t)
        mask = torch.ones(t, t, dtype=torch.bool, device=dev).tril()[None, None]
        if attention_mask is not None:
            mask = mask & attention_mask[:, None, None, :].bool()
            mask = mask | torch.eye(t, dtype=torch.bool, device=dev)[None, None]  # padded rows attend to themselves
        for layer in self.layers:
            x = layer(x, position_ids, mask)
        if self.num_labels:
            return self._classify(self.norm(x), input_ids, attention_mask, labels)
        logits = self.lm_head(self.norm(x))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   labels[:, 1:].reshape(-1).long(), ignore_index=-100)
        return ModelOutput(loss, logits)

    def _classify(self, hidden, input_ids, attention_mask, labels) -> ModelOutput:
        """Logits of the last real token of each row: the last position whose attention mask is 1 (else,
        without a mask, the last token that is not `pad_token_id`, as transformers does)."""
        if attention_mask is not None:
            real = attention_mask.long()
        else:
            real = (input_ids != self.config["pad_token_id"]).long()
        positions = torch.arange(real.shape[1], device=real.device)
        last = (positions[None] * real).argmax(-1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        logits = self.score(pooled)
        return ModelOutput(_cls_loss(logits, labels, self.num_labels), logits)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, max_new_tokens: int = 32, eos_token_id=None, **_ignored):
        return greedy_generate(self, input_ids, attention_mask, max_new_tokens,
                               self.config["eos_token_id"] if eos_token_id is None else eos_token_id,
                               self.config["pad_token_id"])


@torch.no_grad()
def greedy_generate(model, input_ids, attention_mask=None, max_new_tokens: int = 32,
                    eos_token_id: Optional[int] = None, pad_token_id: int = 0):
    """Greedy decoding without a cache (fine for small models). Expects LEFT-padded prompts; returns
    (b, prompt_len + new) token ids; finished rows are padded with `pad_token_id`."""
    ids = input_ids
    mask = attention_mask if attention_mask is not None else torch.ones_like(ids)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -1]
        nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_token_id), nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        mask = torch.cat([mask, (~done).long()[:, None].to(mask.dtype)], dim=1)
        if eos_token_id is not None:
            done = done | (nxt == eos_token_id)
            if bool(done.all()):
                break
    return ids
