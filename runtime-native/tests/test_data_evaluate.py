"""``evaluate`` and the greedy decoder, with hand-built models whose metrics are known, and with the built-in
models (the planted signals are learnable, batched decoding equals one-at-a-time decoding)."""
import math

import pytest
import torch
from torch import nn

from rankflow_runtime import metrics as M
from rankflow_runtime.data import (EOS_ID, NUM_SPECIAL, ModelInfo, evaluate, greedy_generate, load_task_data)


def spec(name, **kw):
    s = {"name": name, "data_root": None, "max_length": 32, "train_size": 32, "eval_size": 16,
         "eval_split": "validation", "metric": "default", "options": {}}
    s.update(kw)
    return s


SEQ = ModelInfo(task="seq-cls", vocab_size=200, max_length=64)
LM = ModelInfo(task="causal-lm", vocab_size=300, max_length=256)


class KeywordOracle(nn.Module):
    """Class = which keyword token occurs (the planted signal); returns an object with .logits."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask):
        hits = torch.stack([((input_ids == NUM_SPECIAL + c) & attention_mask.bool()).sum(1)
                            for c in range(self.num_classes)], dim=1)
        return type("Out", (), {"logits": hits.float() * 10.0})()


class Constant(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, input_ids, attention_mask):
        return {"logits": self.logits.expand(input_ids.shape[0], -1)}


def test_classification_metrics_of_oracle_and_constant_models():
    td = load_task_data(spec("synthetic/seq-cls"), SEQ, seed=0)
    oracle = evaluate(KeywordOracle(2), td, batch_size=5)
    assert set(oracle) == set(td.metric_names)
    assert oracle["accuracy"] == 1.0 and oracle["f1"] == 1.0 and oracle["mcc"] == pytest.approx(1.0)
    const = evaluate(Constant([0.0, 0.0]), td, batch_size=4)  # ties -> argmax 0
    gold = [int(td.eval[i]["labels"]) for i in range(len(td.eval))]
    assert const["accuracy"] == pytest.approx(gold.count(0) / len(gold))
    assert const["mcc"] == 0.0 and const["f1"] == 0.0
    assert const["loss"] == pytest.approx(math.log(2))


def test_regression_metrics():
    td = load_task_data(spec("synthetic/regression"), SEQ, seed=0)

    class Counter(nn.Module):
        training = False

        def forward(self, input_ids, attention_mask):
            return (1.25 * (input_ids == NUM_SPECIAL).sum(1, keepdim=True)).float()

    out = evaluate(Counter(), td, batch_size=3)
    assert out["pearson"] == pytest.approx(1.0) and out["spearman"] == pytest.approx(1.0)
    assert out["mse"] == pytest.approx(0.0) and out["loss"] == pytest.approx(0.0)


def test_image_oracle_and_train_mode_restored():
    td = load_task_data(spec("synthetic/img-cls"), ModelInfo(task="img-cls", image_size=16), seed=0)

    class Cells(nn.Module):
        def forward(self, pixel_values):
            cells = pixel_values.mean(1).reshape(-1, 4, 4, 4, 4).mean(dim=(2, 4)).reshape(-1, 16)
            return cells[:, :4]

    model = Cells().train()
    out = evaluate(model, td, batch_size=8)
    assert out["accuracy"] == 1.0 and out["top1"] == 1.0 and model.training


def test_lm_metrics_of_a_uniform_model():
    td = load_task_data(spec("synthetic/causal-lm"), LM, seed=0)

    class Uniform(nn.Module):
        def forward(self, input_ids, attention_mask):
            return torch.zeros(*input_ids.shape, 300)

    out = evaluate(Uniform(), td, batch_size=4)
    assert out["loss"] == pytest.approx(math.log(300)) and out["perplexity"] == pytest.approx(300.0)
    assert out["token_accuracy"] == 0.0  # argmax is id 0 (PAD), never a target


# --- greedy decoding --------------------------------------------------------------------------------------
class PlusOne(nn.Module):
    """Predicts token + 1 at every position (EOS after token 20)."""

    def __init__(self, vocab=32):
        super().__init__()
        self.vocab = vocab
        self.calls = 0

    def forward(self, input_ids, attention_mask):
        self.calls += 1
        nxt = torch.where(input_ids >= 20, torch.full_like(input_ids, EOS_ID), (input_ids + 1) % self.vocab)
        return torch.nn.functional.one_hot(nxt, self.vocab).float()


def test_greedy_generate_rows_of_different_lengths():
    out = greedy_generate(PlusOne(), [[10], [7, 8, 9], [18]], max_new_tokens=4, eos_id=EOS_ID)
    assert out == [[11, 12, 13, 14], [10, 11, 12, 13], [19, 20]]  # row 3 stops at EOS (not returned)
    assert greedy_generate(PlusOne(), [[5]], max_new_tokens=10, eos_id=EOS_ID, max_length=4) == [[6, 7, 8]]
    stop = lambda ids: ids[-1] == 12  # noqa: E731
    assert greedy_generate(PlusOne(), [[10]], 10, EOS_ID, stop=stop) == [[11, 12]]
    m = PlusOne()
    greedy_generate(m, [[10], [15]], 3, EOS_ID)
    assert m.calls == 3  # one forward per step for the whole batch


def test_batched_decoding_equals_single_with_the_builtin_decoder():
    from rankflow_runtime.models import build_model, model_info
    mspec = {"name": "tiny-decoder", "source": "builtin", "task": "causal-lm", "config": {"vocab_size": 64},
             "random_init": True}
    torch.manual_seed(0)
    model = build_model(mspec, model_info(mspec, 64), None).eval()
    prompts = [[1, 9, 10, 11, 12, 13], [1, 30], [1, 40, 41, 42]]
    batched = greedy_generate(model, prompts, 6, eos_id=None)
    single = [greedy_generate(model, [p], 6, eos_id=None)[0] for p in prompts]
    assert batched == single and all(len(g) == 6 for g in batched)


class Memorizer(nn.Module):
    """Knows the full token sequences of a dataset and predicts, at each row's last real position, the token that
    follows its prefix (EOS when the prefix is unknown): a perfect or a hopeless 'model' for exact match."""

    def __init__(self, sequences, vocab, wrong=False):
        super().__init__()
        self.vocab = vocab
        self.table = {}
        for seq in sequences:
            for t in range(1, len(seq)):
                self.table[tuple(seq[:t])] = seq[t]
        self.wrong = wrong

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b in range(input_ids.shape[0]):
            n = int(attention_mask[b].sum())
            nxt = EOS_ID if self.wrong else self.table.get(tuple(input_ids[b, :n].tolist()), EOS_ID)
            logits[b, n - 1, nxt] = 1.0
        return logits


def test_gsm8k_like_exact_match_with_a_memorizing_model():
    td = load_task_data(spec("synthetic/gsm8k-like", max_length=160, eval_size=6), LM, seed=0)
    seqs = [td.eval[i]["input_ids"].tolist() for i in range(len(td.eval))]
    out, texts = evaluate(Memorizer(seqs, 300), td, batch_size=4, return_outputs=True)
    assert out["exact_match"] == 1.0 and out["exact_match_strict"] == 1.0
    for text, ref in zip(texts, td.generation["references"]):
        assert M.gsm8k_extract_strict(text) == M.gsm8k_reference_answer(ref)
    bad = evaluate(Memorizer(seqs, 300, wrong=True), td, batch_size=4)
    assert bad["exact_match"] == 0.0 and bad["exact_match_strict"] == 0.0


def test_max_new_tokens_override_truncates_answers():
    td = load_task_data(spec("synthetic/gsm8k-like", max_length=160, eval_size=4), LM, seed=0)
    seqs = [td.eval[i]["input_ids"].tolist() for i in range(len(td.eval))]
    out, texts = evaluate(Memorizer(seqs, 300), td, batch_size=4, max_new_tokens=5, return_outputs=True)
    assert all(len(t) <= 5 for t in texts) and out["exact_match_strict"] == 0.0


def test_planted_signal_is_learnable_by_the_builtin_encoder():
    from rankflow_runtime.models import build_model, model_info
    torch.manual_seed(0)
    mspec = {"name": "tiny-encoder", "source": "builtin", "task": "seq-cls",
             "config": {"vocab_size": 128, "hidden_size": 32, "num_layers": 1, "intermediate_size": 64},
             "random_init": True}
    info = model_info(mspec, 16)
    td = load_task_data(spec("synthetic/seq-cls", max_length=16, train_size=160, eval_size=64), info, seed=0)
    model = build_model(mspec, info, td.num_labels)
    before = evaluate(model, td, batch_size=64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(td.train, batch_size=32, shuffle=True, collate_fn=td.collate,
                                         generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        for batch in loader:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = td.loss(logits, batch["labels"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    after = evaluate(model, td, batch_size=64)
    assert after["loss"] < before["loss"] and after["accuracy"] >= 0.9


def test_hf_generate_backend_gives_the_same_answers_as_the_greedy_decoder():
    transformers = pytest.importorskip("transformers", reason="transformers is a test-only dependency")
    cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                                   pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    info = ModelInfo(task="causal-lm", vocab_size=300, max_length=128)
    ours = load_task_data(spec("synthetic/gsm8k-like", max_length=64, eval_size=6, options={"max_new_tokens": 12}),
                          info, seed=0)
    theirs = load_task_data(spec("synthetic/gsm8k-like", max_length=64, eval_size=6,
                                 options={"max_new_tokens": 12, "generation": "hf"}), info, seed=0)
    a, out_a = evaluate(model, ours, batch_size=4, return_outputs=True)
    b, out_b = evaluate(model, theirs, batch_size=4, return_outputs=True)
    assert out_a == out_b and a == pytest.approx(b)
    assert any(len(o) > 0 for o in out_a)
