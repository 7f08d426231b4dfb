"""Prompt tuning: m trainable soft-prompt vectors prepended to the input embeddings of a frozen model.

Paper: Brian Lester, Rami Al-Rfou, Noah Constant, "The Power of Scale for Parameter-Efficient Prompt Tuning",
EMNLP 2021, arXiv:2104.08691. Reference implementation compared against: Hugging Face PEFT `PromptTuningConfig`
(`tuners/prompt_tuning`, `PeftModelForSequenceClassification` / `PeftModelForCausalLM.forward`, PEFT 0.21).

Method
------
A prompt P ∈ R^{m×d} (d = the token-embedding width) is the only trainable tensor (plus the head with
`train_head`). For token embeddings E = Embed(x) ∈ R^{t×d} the frozen model runs on

    [P ; E] ∈ R^{(m+t)×d},

with the attention mask extended by m ones (prompt positions are attended to), token-type ids by m zeros and,
for causal LMs, the labels by m × -100 (the prompt positions carry no loss). Causal-LM logits are returned for
the t input positions only (the prompt rows are cut off), so evaluation and generation see the model's usual
shapes; classification logits are unchanged in shape. Positions: the prompt takes positions 0..m-1 and the
input m..m+t-1 (as PEFT: the model adds its position embeddings over the whole sequence), so the data's
`max_length` leaves room for m positions (`reserved_positions`; an explicit `dataset.max_length` that does not
fit is a config error).

Initialisation (`init`): `vocab` (default): the embeddings of m token ids drawn uniformly from the vocabulary
(Lester et al.'s "sampled vocabulary"; PEFT `SAMPLE_VOCAB`); `text`: the embeddings of `init_text`'s tokens
under the run's tokenizer, repeated or cut to m (PEFT `TEXT`); `random`: uniform in [-0.5, 0.5] (Lester et
al.'s random init; PEFT `RANDOM` uses N(0, 1)).

Trainable parameters: m·d for the whole model (independent of depth and of the targets, which are ignored).

Implementation: the prompt lives in the module `rankflow_shared` (so it is checkpointed like every adapter
tensor) and a forward pre-hook / forward hook on the model rewrites the inputs (`input_ids` → `inputs_embeds`)
and the outputs; every model that accepts `inputs_embeds` and has `get_input_embeddings()` works (the built-in
encoder and decoder, Hugging Face encoders and decoders).

Deviations and notes
--------------------
* `vocab` samples the whole vocabulary (as PEFT), not Lester et al.'s 5,000 most frequent tokens (the runtime
  has no token frequencies). `text` tokenises without special tokens (PEFT's TEXT init includes the
  tokenizer's BOS/CLS/EOS ids).
* Hugging Face decoder classifiers (a `score` head that pools the last non-pad token) cannot find padding
  through `inputs_embeds` (PEFT has this problem: it pools the last, possibly padded, position). Here the rows
  are re-ordered so that padding comes first and `position_ids` count real tokens only, which gives each row
  the logits it has alone.
* Generation through a transformers KV cache (`dataset.options.generation: hf`) is refused (the prompt would
  be prepended again at every cached step); the runtime's own greedy decoder works.
* Token-level `position_ids` passed by a caller are dropped, as PEFT does.
* Not mergeable (there is no weight to fold the prompt into); PEFT export writes a `PROMPT_TUNING` adapter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .base import SHARED_ATTR, Method, option, register


@dataclass
class PromptTuningOptions:
    num_virtual_tokens: int = option(100, help="m: soft-prompt vectors prepended to the input embeddings "
                                               "(Lester et al.'s default length)", min=1)
    init: str = option("vocab", help="prompt initialisation: vocab (embeddings of sampled vocabulary tokens), "
                                     "text (embeddings of init_text's tokens), random (uniform ±0.5)",
                       choices=["vocab", "text", "random"])
    init_text: str = option("", help="text whose token embeddings initialise the prompt with init: text "
                                     "(repeated or cut to m tokens)")


def input_embedding(model: nn.Module) -> nn.Embedding:
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if not isinstance(emb, nn.Embedding):
        raise ConfigError(f"method.name: the model {type(model).__name__} exposes no token embedding "
                          "(get_input_embeddings)", hint="prompt methods need a text model that accepts inputs_embeds")
    return emb


class SoftPrompt(nn.Module):
    """The prompt state attached to the model as `rankflow_shared`. Subclasses (DePT) add an input-side update
    (`adjust_embeds`) and a fixed input length (`pad_length`)."""

    def __init__(self, m: int, d: int, device, dtype, left_align: bool, pad_token_id: int):
        super().__init__()
        self.prompt = nn.Parameter(torch.empty(m, d, device=device, dtype=dtype))
        self.left_align = left_align
        self.pad_token_id = int(pad_token_id)

    @property
    def num_virtual_tokens(self) -> int:
        return self.prompt.shape[0]

    def pad_length(self) -> Optional[int]:
        """Length every input is padded to (None: inputs keep their length)."""
        return None

    def adjust_embeds(self, embeds: torch.Tensor) -> torch.Tensor:
        """The input token embeddings the model sees (before the prompt is prepended)."""
        return embeds


def _pad_right(x: Optional[torch.Tensor], length: int, fill) -> Optional[torch.Tensor]:
    if x is None or x.dim() != 2 or x.shape[1] >= length:
        return x
    pad = torch.full((x.shape[0], length - x.shape[1]), fill, dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], dim=1)


def _prefix(x: Optional[torch.Tensor], m: int, fill) -> Optional[torch.Tensor]:
    if x is None:
        return None
    return torch.cat([torch.full((x.shape[0], m), fill, dtype=x.dtype, device=x.device), x], dim=1)


class PromptHooks:
    """Forward pre-hook and forward hook that put the soft prompt in front of every input. They find the
    prompt through the model they are called on, so copies of the model carry working hooks."""

    def __init__(self) -> None:
        self._cut: Tuple[int, int] = (0, 0)  # (m, t) of the call in flight: logits rows to keep

    def pre(self, model: nn.Module, args: tuple, kwargs: Dict[str, Any]):
        sp: SoftPrompt = getattr(model, SHARED_ATTR)
        kwargs = dict(kwargs)
        if args:
            if len(args) > 1 or "input_ids" in kwargs:
                raise TypeError("a prompt-tuned model takes its inputs as keyword arguments")
            kwargs["input_ids"] = args[0]
        if kwargs.get("past_key_values") is not None:
            raise ConfigError("dataset.options.generation: a soft prompt cannot be used with a KV-cache generate()",
                              hint="use generation 'greedy' (the runtime's decoder) with prompt methods")
        ids, embeds = kwargs.pop("input_ids", None), kwargs.pop("inputs_embeds", None)
        if embeds is None:
            if ids is None:
                raise TypeError("a prompt-tuned model needs input_ids or inputs_embeds")
            t0 = ids.shape[1]
            ids, kwargs = self._pad(sp, ids, kwargs)
            embeds = input_embedding(model)(ids)
        else:
            t0 = embeds.shape[1]
        embeds = sp.adjust_embeds(embeds)
        b, m = embeds.shape[0], sp.num_virtual_tokens
        if kwargs.get("attention_mask") is None:  # without ids a model cannot find padding: say there is none
            kwargs["attention_mask"] = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        prompt = sp.prompt.to(embeds.dtype)[None].expand(b, -1, -1)
        kwargs["inputs_embeds"] = torch.cat([prompt, embeds], dim=1)
        kwargs["attention_mask"] = _prefix(kwargs.get("attention_mask"), m, 1)
        kwargs["token_type_ids"] = _prefix(kwargs.get("token_type_ids"), m, 0)
        labels = kwargs.get("labels")
        if labels is not None and labels.dim() == 2:  # token labels (causal LM): no loss on the prompt
            kwargs["labels"] = _prefix(labels, m, -100)
        kwargs["position_ids"] = None  # the model counts positions over prompt + input (as PEFT)
        if sp.left_align and kwargs["attention_mask"] is not None:
            kwargs = _left_align(kwargs)
        for key in ("attention_mask", "token_type_ids", "position_ids"):
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
        self._cut = (m, t0)
        return (), kwargs

    @staticmethod
    def _pad(sp: SoftPrompt, ids: torch.Tensor, kwargs: Dict[str, Any]):
        s = sp.pad_length()
        if s is None:
            return ids, kwargs
        t = ids.shape[1]
        if t > s:
            raise ConfigError(f"dataset.max_length: an input of {t} tokens is longer than the method's s = {s}",
                              hint="inputs are truncated to dataset.max_length, which must not exceed s")
        if kwargs.get("attention_mask") is None:
            kwargs["attention_mask"] = torch.ones_like(ids)
        kwargs["attention_mask"] = _pad_right(kwargs["attention_mask"], s, 0)
        kwargs["token_type_ids"] = _pad_right(kwargs.get("token_type_ids"), s, 0)
        labels = kwargs.get("labels")
        if labels is not None and labels.dim() == 2:
            kwargs["labels"] = _pad_right(labels, s, -100)
        return _pad_right(ids, s, sp.pad_token_id), kwargs

    def post(self, model: nn.Module, args: tuple, kwargs: Dict[str, Any], output):
        m, t = self._cut
        logits = getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor) and logits.dim() == 3:  # one row per position: drop the prompt rows
            output.logits = logits[:, m:m + t]
        return output


def _left_align(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Move each row's padding to its front (stable, so the order of real positions is kept) and count
    positions over real tokens only: a decoder that pools the last position then pools the last real token."""
    mask = kwargs["attention_mask"]
    order = torch.sort((mask != 0).to(torch.int8), dim=1, stable=True).indices
    for key in ("attention_mask", "token_type_ids"):
        if kwargs.get(key) is not None:
            kwargs[key] = torch.gather(kwargs[key], 1, order)
    e = kwargs["inputs_embeds"]
    kwargs["inputs_embeds"] = torch.gather(e, 1, order[..., None].expand(-1, -1, e.shape[-1]))
    kwargs["position_ids"] = ((kwargs["attention_mask"] != 0).long().cumsum(-1) - 1).clamp(min=0)
    return kwargs


@register
class PromptTuning(Method):
    name = "prompt-tuning"
    paper = ("Lester, Al-Rfou, Constant, The Power of Scale for Parameter-Efficient Prompt Tuning, EMNLP 2021 "
             "(arXiv:2104.08691)")
    Options = PromptTuningOptions
    needs_rank = False
    init_is_identity = False  # the prompt changes the model's outputs from the start
    mergeable = False
    wraps_targets = False
    model_tasks = ("seq-cls", "causal-lm")
    test_options = {"num_virtual_tokens": 3}
    option_cases = ({"init": "text", "init_text": "a good movie"}, {"init": "random"})

    def reserved_positions(self) -> int:
        return int(self.options.num_virtual_tokens)

    # -- the prompt state --------------------------------------------------------------------------
    def make_prompt(self, d: int, device, dtype, ctx) -> SoftPrompt:
        return SoftPrompt(self.options.num_virtual_tokens, d, device, dtype, left_align=_pools_last(ctx),
                          pad_token_id=ctx.pad_token_id or 0)

    def formula(self, model, shapes, ctx) -> int:
        return self.options.num_virtual_tokens * input_embedding(model).embedding_dim

    def adapt(self, model, targets, ctx):
        emb = input_embedding(model)
        for p in model.parameters():
            p.requires_grad_(False)
        w = emb.weight
        dtype = torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype
        sp = self.make_prompt(emb.embedding_dim, w.device, dtype, ctx)
        if not w.is_meta:
            with torch.no_grad():
                self.init_prompt(sp, emb, ctx)
        model.add_module(SHARED_ATTR, sp)
        hooks = PromptHooks()
        model.register_forward_pre_hook(hooks.pre, with_kwargs=True)
        model.register_forward_hook(hooks.post, with_kwargs=True)
        self.targets = []
        return []

    @torch.no_grad()
    def init_prompt(self, sp: SoftPrompt, emb: nn.Embedding, ctx) -> None:
        o, m = self.options, sp.num_virtual_tokens
        if o.init == "random":
            sp.prompt.copy_(torch.rand(sp.prompt.shape, generator=self.generator()) - 0.5)
            return
        if o.init == "vocab":
            ids = torch.randint(0, emb.num_embeddings, (m,), generator=self.generator())
        else:
            if ctx.tokenize is None:
                raise ConfigError("method.options.init: text initialisation needs the run's tokenizer",
                                  hint="use init: vocab")
            ids_list = ctx.tokenize(o.init_text) if o.init_text else []
            if not ids_list:
                raise ConfigError("method.options.init_text: empty (it gives no tokens to initialise the prompt)",
                                  hint="set init_text, or use init: vocab")
            ids_list = (ids_list * math.ceil(m / len(ids_list)))[:m]
            ids = torch.tensor(ids_list, dtype=torch.long)
        sp.prompt.copy_(emb.weight[ids.to(emb.weight.device)].to(sp.prompt.dtype))


def _pools_last(ctx) -> bool:
    """Decoder classifiers (a `score` head pooling the last non-pad token) need left-aligned rows."""
    return ctx.task == "seq-cls" and ctx.head_name == "score"
