"""Tiny Hugging Face models saved to folders the way a researcher's downloads look (`save_pretrained`):
RoBERTa with a byte-level BPE tokenizer, ViT with its `preprocessor_config.json` (mean/std 0.5), and a LLaMA
with grouped-query attention and no pad token (its tokenizer has none either). Random weights, built from
configs; nothing is downloaded. Used by the pytest suite and, as a script, by the end-to-end test:

    python tests/hf_fixtures.py --out DIR     # writes DIR/roberta, DIR/vit, DIR/llama; prints their paths
"""
from __future__ import annotations

import argparse
import json
import os

import torch

CORPUS = [
    "a charming , funny film", "dull and lifeless", "the best movie of the year", "a waste of time",
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?",
    "Answer: 3 + 4 = 7 #### 7", "premise hypothesis entailment neutral contradiction",
    "0 1 2 3 4 5 6 7 8 9 10 + - * / = ? . , ! the cat sat on the mat",
]


def _bpe_files(vocab_size: int, specials: list[str]):
    from tokenizers import ByteLevelBPETokenizer
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=vocab_size, min_frequency=1, special_tokens=specials)
    return bpe


def save_roberta(path: str, num_hidden_layers: int = 2, seed: int = 0) -> str:
    """RoBERTa (masked-LM weights, as the hub's roberta-base) with a BPE tokenizer of 300 ids."""
    import transformers as tf
    bpe = _bpe_files(300, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    os.makedirs(path, exist_ok=True)
    bpe.save_model(path)
    with open(os.path.join(path, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(path, "merges.txt"), encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f if line.strip() and not line.startswith("#")]
    tok = tf.RobertaTokenizer(vocab=vocab, merges=merges)
    tok.save_pretrained(path)
    cfg = tf.RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=num_hidden_layers,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=130,
                           pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, type_vocab_size=1)
    torch.manual_seed(seed)
    tf.RobertaForMaskedLM(cfg).save_pretrained(path)
    return path


def save_vit(path: str, image_size: int = 32, seed: int = 0) -> str:
    """ViT (patch 8) with an image processor that normalises with mean = std = 0.5 (google/vit-base's)."""
    import transformers as tf
    cfg = tf.ViTConfig(image_size=image_size, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(seed)
    os.makedirs(path, exist_ok=True)
    tf.ViTModel(cfg, add_pooling_layer=False).save_pretrained(path)
    pre = {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
           "image_std": [0.5, 0.5, 0.5], "image_processor_type": "ViTImageProcessor", "resample": 2,
           "rescale_factor": 1 / 255, "size": {"height": image_size, "width": image_size}}
    with open(os.path.join(path, "preprocessor_config.json"), "w", encoding="utf-8") as f:
        json.dump(pre, f, indent=2)
    return path


def save_llama(path: str, seed: int = 0) -> str:
    """LLaMA with grouped-query attention (4 heads, 2 key/value heads) and no pad token anywhere."""
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(vocab_size=320, special_tokens=["<unk>", "<s>", "</s>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = tf.PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    assert tok.pad_token_id is None
    os.makedirs(path, exist_ok=True)
    tok.save_pretrained(path)
    cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=None,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    tf.LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    a = p.parse_args()
    out = {"roberta": save_roberta(os.path.join(a.out, "roberta")), "vit": save_vit(os.path.join(a.out, "vit")),
           "llama": save_llama(os.path.join(a.out, "llama"))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
