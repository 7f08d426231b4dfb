"""linear-probe is one linear map on frozen features on every model (or a clear refusal); head-only trains the
model's own head. Real transformers classes (tiny configs) and the bundled architectures on the meta device."""
import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers", reason="transformers is a test-only dependency of the runtime")

from rankflow_runtime.build import build, count, resolve_info  # noqa: E402
from rankflow_runtime.errors import ConfigError  # noqa: E402
from rankflow_runtime.methods.base import adapt_model, trainable_numel  # noqa: E402
from rankflow_runtime.methods.linear_probe import FirstTokenProbe, LinearProbe  # noqa: E402
from rankflow_runtime.spec import example_spec, parse_spec  # noqa: E402
from rankflow_runtime.testing import synthetic_batch, train_steps  # noqa: E402

TINY_ROBERTA = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37,
                "vocab_size": 120, "max_position_embeddings": 40}
TINY_LLAMA = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 2,
              "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 64, "tie_word_embeddings": True}


def _spec(model, method, task="seq-cls", config=None, dataset="synthetic/seq-cls", metric="accuracy", head=True):
    s = example_spec(**{"model.name": model, "model.source": "hf", "model.task": task, "model.config": config or {},
                        "dataset.name": dataset, "dataset.metric": metric, "dataset.max_length": 16,
                        "training.train_head": head})
    s["method"].update(name=method, rank=None if method in ("linear-probe", "head-only") else 4)
    return parse_spec(s)


def _built(spec, num_labels):
    torch.manual_seed(0)
    return build(spec, resolve_info(spec), num_labels)


def _frozen(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


def test_bundled_counts_are_a_linear_probe():
    """The issue's numbers: roberta-base's two-layer head is 592,130 parameters (head-only); the linear probe is
    768·2 + 2 = 1,538. Llama-3.2-3B's head is tied to the input embedding: the probe is its own copy."""
    assert count(_spec("FacebookAI/roberta-base", "linear-probe"))["trainable"] == 768 * 2 + 2
    assert count(_spec("FacebookAI/roberta-base", "head-only"))["trainable"] == 768 * 768 + 768 + 768 * 2 + 2
    lm = count(_spec("llama-3.2-3b", "linear-probe", task="causal-lm", dataset="synthetic/causal-lm",
                     metric="perplexity", head=False))
    assert lm["trainable"] == lm["formula"] == 128_256 * 3_072 == 394_002_432
    vit = count(_spec("vit-base-patch16-224", "linear-probe", task="img-cls", dataset="synthetic/img-cls"))
    assert vit["trainable"] == 768 * 4 + 4  # synthetic/img-cls: 4 classes, ViT's classifier is one Linear


def test_the_transformers_roberta_family_heads_read_the_first_token():
    """The structural rule (dense + out_proj ⇒ first-token head) is what these classes do."""
    from transformers.models.electra.modeling_electra import ElectraClassificationHead
    from transformers.models.roberta.modeling_roberta import RobertaClassificationHead
    for cls, cfg in ((RobertaClassificationHead, transformers.RobertaConfig(hidden_size=8, num_labels=3)),
                     (ElectraClassificationHead, transformers.ElectraConfig(hidden_size=8, num_labels=3))):
        head = cls(cfg).eval()
        f = torch.randn(2, 5, 8)
        g = f.clone()
        g[:, 1:] = torch.randn(2, 4, 8)
        assert torch.equal(head(f), head(g))


def test_roberta_linear_probe_is_one_linear_map_on_frozen_features():
    spec = _spec("roberta-base", "linear-probe", config=TINY_ROBERTA)
    b = _built(spec, 3)
    m = b.model
    assert isinstance(m.classifier, FirstTokenProbe)
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["classifier.linear.weight",
                                                                      "classifier.linear.bias"]
    assert b.trainable == b.formula == 32 * 3 + 3
    frozen = _frozen(m)
    ids = torch.randint(3, 120, (4, 10))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 2, 0])}
    train_steps(m, b.method, batch, steps=3, lr=1e-2)
    assert all(torch.equal(p, frozen[n]) for n, p in m.named_parameters() if n in frozen)
    m.eval()
    with torch.no_grad():
        feats = m.roberta(input_ids=ids, attention_mask=batch["attention_mask"]).last_hidden_state[:, 0]
        want = feats @ m.classifier.linear.weight.t() + m.classifier.linear.bias
        torch.testing.assert_close(m(input_ids=ids, attention_mask=batch["attention_mask"]).logits, want)
    # head-only keeps RoBERTa's own two-layer head
    h = _built(_spec("roberta-base", "head-only", config=TINY_ROBERTA), 3)
    assert h.trainable == 32 * 32 + 32 + 32 * 3 + 3 and type(h.model.classifier).__name__ == "RobertaClassificationHead"


@pytest.mark.parametrize("method", ["linear-probe", "head-only", "lora"])
def test_tied_lm_head_is_untied_and_the_embedding_stays_frozen(method):
    """A tied lm_head trains as its own copy (PEFT modules_to_save semantics); before, training it moved the
    input embedding (the same tensor)."""
    spec = _spec("llama-2-7b", method, task="causal-lm", config=TINY_LLAMA, dataset="synthetic/causal-lm",
                 metric="perplexity", head=True)
    b = _built(spec, None)
    m = b.model
    emb, head = m.get_input_embeddings().weight, m.lm_head.weight
    assert emb is not head and torch.equal(emb, head) and not emb.requires_grad and head.requires_grad
    if method != "lora":
        assert b.trainable == b.formula == 64 * 32
    before = emb.detach().clone()
    ids = torch.randint(3, 64, (2, 12))
    train_steps(m, b.method, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}, 3, 1e-2)
    assert torch.equal(emb, before) and not torch.equal(head, before)
    assert m.config.tie_word_embeddings is False


class _TwoLayerHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(6, 6)
        self.classifier = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))

    def forward(self, x):
        return self.classifier(self.body(x))


def test_a_head_that_is_not_one_linear_map_is_refused_clearly():
    with pytest.raises(ConfigError, match=r"linear-probe needs one linear map on frozen features, but the head "
                                          r"`classifier` \(Sequential\) has 2 linear layers \(0, 2\)") as e:
        adapt_model(_TwoLayerHead(), LinearProbe(None, {}), [], "classifier", True)
    assert "head-only" in e.value.hint
    m = _TwoLayerHead()
    from rankflow_runtime.methods import get_method
    _, formula = adapt_model(m, get_method("head-only")(None, {}), [], "classifier", True)
    assert formula == trainable_numel(m) == 6 * 6 + 6 + 6 * 2 + 2


def test_builtin_models_probe_their_linear_classifier():
    from rankflow_runtime.testing import adapted_model
    for model, n in (("tiny-encoder", 3), ("tiny-vit", 4)):
        m, meth, info, formula = adapted_model(model, "linear-probe")
        assert formula == trainable_numel(m) == 32 * n + n
        train_steps(m, meth, synthetic_batch(model), steps=1, lr=1e-2)
