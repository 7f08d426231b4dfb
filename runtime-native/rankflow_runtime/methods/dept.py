"""DePT: decomposed prompt tuning, a shorter soft prompt plus a low-rank position-wise update of the input
embeddings, trained with two learning rates.

Paper: Zhengxiang Shi, Aldo Lipani, "DePT: Decomposed Prompt Tuning for Parameter-Efficient Fine-tuning",
ICLR 2024, arXiv:2309.05173. Official code: github.com/ZhengxiangShi/DePT (`peft/tuners/prompt_tuning_lora.py`
`PromptEmbeddingLoRA`, `peft/peft_model.py` PROMPT_TUNING_LORA forward, `train.py` optimizer; read at f0266a7).

Method
------
On top of prompt tuning (see `prompt_tuning.py`: a prompt P ∈ R^{m×d} prepended to the input embeddings, the
attention mask extended, no loss on prompt positions for causal LMs), DePT trains A ∈ R^{s×r} and
B ∈ R^{r×d} and adds their product to the embeddings of the s input positions,

    E' = E + (α/√r)·A B,        model input [P ; E'],

broadcast over the batch; the prompt itself is not updated by A B. Because the update is indexed by position,
every input is padded to exactly s = the data's max_length (the official `pad_to_max_length=True`): the pad
positions get pad-token embeddings, attention mask 0 and label -100; an input longer than s is an error.
A is Kaiming-uniform (a = √5, bound 1/√r), B is zero, so ΔE = 0 at initialisation; scaling α/√r.

Trainable parameters: m·d + s·r + r·d for the whole model (T5-base, m = 60, r = 30, s = 256: 76,800, the same
as prompt tuning with 100 tokens), independent of depth.

Training: two learning rates, the parameter groups `prompt` (P; the official code's main learning rate) and
`lora` (A, B; the official `lora_embedding_lr`), set with `training.lr_groups: {prompt: .., lora: ..}` (a
group not listed uses `training.lr`).

Defaults: m = 60 (`num_virtual_tokens`), α = 8, TEXT init with the released checkpoints' init text
(verbatim, typo included), r = the run's rank (official 30).

Deviations and notes
--------------------
* No weight decay on P, A or B whatever `training.weight_decay` says: the official optimizer is built without
  a `weight_decay` argument, so the weight decay of its arguments is never applied (procedures.md §5); we
  follow the code. A trained task head (T5 has none) keeps the run's weight decay. Its AdamW ε (1e-6, the
  transformers default) is not copied: the run's optimizer is used.
* s is the run's input length (`dataset.max_length`, else the model's limit minus the m prompt positions),
  not a separate option, so the data and the update always agree; padding to s happens in the model's input
  hook, so no data option is needed. The runtime's greedy decoder stops at max_length, so generation stays
  within s.
* Text init tokenises without special tokens (see prompt tuning); the prompt's init options are those of
  prompt tuning (`vocab`, `text`, `random`), default `text` as the released runs.
* Built on the runtime's models (encoders, decoders, HF models with `inputs_embeds`); the paper's T5
  encoder-decoder is not a runtime task.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from .base import SHARED_ATTR, option, register
from .prompt_tuning import PromptTuning, SoftPrompt, _pools_last, input_embedding

DEPT_INIT_TEXT = "Classify this text is postive or not:"  # the released checkpoints' init text (sic)


@dataclass
class DePTOptions:
    num_virtual_tokens: int = option(60, help="m: soft-prompt vectors prepended to the input embeddings", min=1)
    init: str = option("text", help="prompt initialisation: text (embeddings of init_text's tokens), vocab "
                                    "(embeddings of sampled vocabulary tokens), random (uniform ±0.5)",
                       choices=["text", "vocab", "random"])
    init_text: str = option(DEPT_INIT_TEXT, help="text whose token embeddings initialise the prompt (init: text)")
    alpha: float = option(8.0, help="scaling numerator α of the embedding update (α/√r)", min=0.0)


class DecomposedPrompt(SoftPrompt):
    """P plus the position-wise embedding update (α/√r)·A B over s positions."""

    def __init__(self, m: int, d: int, s: int, r: int, alpha: float, device, dtype, left_align: bool,
                 pad_token_id: int):
        super().__init__(m, d, device, dtype, left_align, pad_token_id)
        self.lora_embedding_A = nn.Parameter(torch.empty(s, r, device=device, dtype=dtype))
        self.lora_embedding_B = nn.Parameter(torch.zeros(r, d, device=device, dtype=dtype))
        self.scaling = alpha / math.sqrt(r)

    def pad_length(self) -> Optional[int]:
        return self.lora_embedding_A.shape[0]

    def embedding_delta(self) -> torch.Tensor:
        """ΔE ∈ R^{s×d}."""
        return (self.lora_embedding_A @ self.lora_embedding_B) * self.scaling

    def adjust_embeds(self, embeds: torch.Tensor) -> torch.Tensor:
        s = self.pad_length()
        if embeds.shape[1] != s:
            raise ConfigError(f"dataset.max_length: DePT needs inputs of exactly s = {s} positions, got "
                              f"{embeds.shape[1]}", hint="pass input_ids (they are padded to s) or embeddings of length s")
        return embeds + self.embedding_delta().to(embeds.dtype)[None]


@register
class DePT(PromptTuning):
    name = "dept"
    paper = "Shi & Lipani, DePT: Decomposed Prompt Tuning for Parameter-Efficient Fine-tuning, ICLR 2024 (arXiv:2309.05173)"
    Options = DePTOptions
    needs_rank = True
    lr_groups = ("prompt", "lora")
    test_options = {"num_virtual_tokens": 2, "init": "vocab"}
    option_cases = ({"init": "text", "init_text": "a good movie"}, {"init": "random"}, {"alpha": 2.0})

    def _s(self, ctx) -> int:
        if not ctx.max_length:
            raise ConfigError("dataset.max_length: DePT needs the input length s (its update is position-wise)",
                              hint="set dataset.max_length")
        return int(ctx.max_length)

    def make_prompt(self, d, device, dtype, ctx) -> SoftPrompt:
        o = self.options
        sp = DecomposedPrompt(o.num_virtual_tokens, d, self._s(ctx), self.rank, o.alpha, device, dtype,
                              left_align=_pools_last(ctx), pad_token_id=ctx.pad_token_id or 0)
        if not sp.lora_embedding_A.is_meta:
            nn.init.kaiming_uniform_(sp.lora_embedding_A, a=math.sqrt(5))
        return sp

    def formula(self, model, shapes, ctx) -> int:
        d = input_embedding(model).embedding_dim
        return self.options.num_virtual_tokens * d + self._s(ctx) * self.rank + self.rank * d

    def group_of(self, param_name: str) -> str:
        return "lora" if ".lora_embedding_" in param_name else "prompt"

    def decays(self, param_name: str, param: torch.Tensor) -> bool:
        if param_name.startswith(SHARED_ATTR + "."):
            return False  # the official optimizer applies no weight decay (see the module docstring)
        return super().decays(param_name, param)  # a trained head keeps the run's weight decay
