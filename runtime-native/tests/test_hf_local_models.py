"""Local Hugging Face model folders as a researcher has them (save_pretrained): decoder classification without a
pad token, counting without loading weights, custom code only on opt-in, the model's own image normalisation."""
import json
import os
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is a test-only dependency of the runtime")

import hf_fixtures  # noqa: E402
from rankflow_runtime import events  # noqa: E402
from rankflow_runtime.build import build, count, data_model_info, resolve_info  # noqa: E402
from rankflow_runtime.data import load_task_data  # noqa: E402
from rankflow_runtime.errors import ConfigError  # noqa: E402
from rankflow_runtime.spec import example_spec, parse_spec  # noqa: E402
from rankflow_runtime.train import run_training  # noqa: E402

RUNTIME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-models")
    return {"llama": hf_fixtures.save_llama(str(root / "llama")), "vit": hf_fixtures.save_vit(str(root / "vit")),
            "roberta": hf_fixtures.save_roberta(str(root / "roberta"))}


@pytest.fixture(scope="module")
def sst2_root(tmp_path_factory):
    """GLUE SST-2 in the official TSV layout, big enough for a few batches."""
    root = tmp_path_factory.mktemp("glue-data")
    d = root / "glue" / "SST-2"
    d.mkdir(parents=True)
    pos = ["a charming , funny film", "the best movie of the year", "funny and charming"]
    neg = ["dull and lifeless", "a waste of time", "lifeless and dull film"]
    rows = [(t, 1) for t in pos] + [(t, 0) for t in neg]
    (d / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t} \t{y}\n" for t, y in rows * 4))
    (d / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{t} \t{y}\n" for t, y in rows))
    return str(root)


def cls_spec(model, root, **over):
    s = example_spec(**{"model.name": model, "model.source": "hf", "model.task": "seq-cls",
                        "model.random_init": False, "dataset.name": "glue/sst2", "dataset.data_root": root,
                        "dataset.max_length": 32, "dataset.train_size": None, "dataset.eval_size": None,
                        "dataset.metric": "accuracy", "training.max_steps": 6, "training.batch_size": 4,
                        "training.eval_every": None, "training.log_every": 1, "training.lr": 1e-2})
    for k, v in over.items():
        a, _, b = k.partition(".")
        s[a][b] = v
    return s


# --- decoder classification (bug: "Cannot handle batch sizes > 1 if no padding token is defined") ---------

def test_llama_without_pad_token_classifies_glue(models, sst2_root, tmp_path):
    spec = parse_spec(cls_spec(models["llama"], sst2_root))
    with events.capture() as recs:
        assert run_training(spec, str(tmp_path)) == 0
    assert [r["event"] for r in recs if r["event"] == "error"] == []
    assert recs[-1]["event"] == "done" and "accuracy" in recs[-1]["metrics"]
    # one pad id for the data and the model: the EOS id (the model and its tokenizer have no pad token)
    info = resolve_info(spec)
    td = load_task_data(dict(spec.dataset), data_model_info(info), 0)
    b = build(spec, info, td.num_labels)
    assert b.model.config.pad_token_id == td.collate.pad_id == b.model.config.eos_token_id == 2
    assert info.head_name == "score"


def test_llama_classifier_pools_the_last_real_token(models, sst2_root):
    """Right padding with the pad id must not change a row's logits (the classifier pools its last token)."""
    spec = parse_spec(cls_spec(models["llama"], sst2_root))
    info = resolve_info(spec)
    td = load_task_data(dict(spec.dataset), data_model_info(info), 0)
    model = build(spec, info, td.num_labels).model.eval()
    examples = [td.train[i] for i in range(4)]
    batch = td.collate(examples)
    assert (batch["attention_mask"] == 0).any(), "the fixture should need padding"
    together = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for i, ex in enumerate(examples):
        alone = model(input_ids=ex["input_ids"][None], attention_mask=ex["attention_mask"][None]).logits
        torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-4)


def test_builtin_decoder_classifies(sst2_root, tmp_path):
    s = example_spec(**{"model.name": "tiny-decoder", "model.task": "seq-cls", "training.max_steps": 30,
                        "training.log_every": 1, "training.lr": 3e-3})
    with events.capture() as recs:
        assert run_training(parse_spec(s), str(tmp_path)) == 0
    losses = [r["loss"] for r in recs if r["event"] == "progress"]
    assert losses[-1] < losses[0]
    info = resolve_info(parse_spec(s))
    assert info.task == "seq-cls" and info.head_name == "score"
    got = count(parse_spec(s))
    assert got["trainable"] == got["formula"]
    with pytest.raises(ConfigError, match="model.task"):
        resolve_info(parse_spec(example_spec(**{"model.name": "tiny-decoder", "model.task": "img-cls"})))


# --- count never loads weights -----------------------------------------------------------------------------

def test_count_local_model_with_weights_builds_from_the_config(models, sst2_root):
    with_weights = count(parse_spec(cls_spec(models["llama"], sst2_root)))
    random = count(parse_spec(cls_spec(models["llama"], sst2_root, **{"model.random_init": True})))
    assert with_weights == random and with_weights["trainable"] == with_weights["formula"] > 0
    lm = count(parse_spec(cls_spec(models["llama"], sst2_root, **{"model.task": "causal-lm",
                                                                   "dataset.name": "synthetic/causal-lm",
                                                                   "dataset.metric": "perplexity"})))
    assert lm["total"] > lm["trainable"] > 0


# --- custom code (auto_map) ----------------------------------------------------------------------------------

def _custom_code_folder(base: str, path: str, model_type: str) -> str:
    """The LLaMA folder with its model declared as custom code (`auto_map`), as hub repos with their own code."""
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(base):
        if f != "config.json":
            os.link(os.path.join(base, f), os.path.join(path, f))
    with open(os.path.join(base, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(model_type=model_type, auto_map={"AutoConfig": "configuration_mine.MineConfig",
                                                "AutoModelForCausalLM": "modeling_mine.MineForCausalLM"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(path, "configuration_mine.py"), "w") as f:
        f.write("from transformers import LlamaConfig\n\n\nclass MineConfig(LlamaConfig):\n"
                f"    model_type = {model_type!r}\n")
    with open(os.path.join(path, "modeling_mine.py"), "w") as f:
        f.write("from transformers import LlamaForCausalLM\nfrom .configuration_mine import MineConfig\n\n\n"
                "class MineForCausalLM(LlamaForCausalLM):\n    config_class = MineConfig\n")
    return path


def lm_spec(model, **over):
    s = example_spec(**{"model.name": model, "model.source": "hf", "model.task": "causal-lm",
                        "model.random_init": False, "dataset.name": "synthetic/causal-lm",
                        "dataset.metric": "perplexity", "training.train_head": False})
    s["model"].update(over)
    return s


def test_custom_code_is_a_config_error_without_opt_in_and_never_prompts(models, tmp_path):
    folder = _custom_code_folder(models["llama"], str(tmp_path / "mine"), "mine-lm")
    with pytest.raises(ConfigError, match="trust_remote_code: true"):
        count(parse_spec(lm_spec(folder)))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(lm_spec(folder)))
    p = subprocess.run([sys.executable, "-m", "rankflow_runtime", "count", "--spec", str(spec)], cwd=RUNTIME,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    err = json.loads(p.stdout.strip().splitlines()[-1])
    assert err["event"] == "error" and err["kind"] == "config" and "trust_remote_code" in err["hint"]
    assert "[y/N]" not in p.stderr and "Traceback" not in p.stderr


def test_custom_code_runs_with_opt_in(models, tmp_path):
    folder = _custom_code_folder(models["llama"], str(tmp_path / "mine"), "mine-lm")
    spec = parse_spec(lm_spec(folder, trust_remote_code=True))
    model = build(spec, resolve_info(spec), None).model
    assert type(model).__name__ == "MineForCausalLM"
    assert count(spec)["trainable"] > 0


def test_custom_code_of_a_known_architecture_uses_transformers_classes(models, tmp_path):
    folder = _custom_code_folder(models["llama"], str(tmp_path / "known"), "llama")
    spec = parse_spec(lm_spec(folder))
    model = build(spec, resolve_info(spec), None).model
    assert type(model).__name__ == "LlamaForCausalLM"


def test_trust_remote_code_must_be_a_boolean(models):
    with pytest.raises(ConfigError, match="model.trust_remote_code"):
        parse_spec(lm_spec(models["llama"], trust_remote_code="yes"))


# --- image normalisation from preprocessor_config.json --------------------------------------------------------

@pytest.fixture(scope="module")
def vtab_root(tmp_path_factory):
    import numpy as np
    root = tmp_path_factory.mktemp("vtab-data")
    d = root / "vtab-1k" / "dtd"
    (d / "images").mkdir(parents=True)
    lines = []
    for i in range(4):
        np.save(d / "images" / f"{i}.npy", np.full((32, 32, 3), 255, dtype=np.uint8))  # white images
        lines.append(f"images/{i}.npy {i % 2}")
    for name in ("train800val200.txt", "test.txt", "train800.txt", "val200.txt"):
        (d / name).write_text("\n".join(lines) + "\n")
    return str(root)


def vit_spec(model, root, **opts):
    return parse_spec(example_spec(**{
        "model.name": model, "model.source": "hf", "model.task": "img-cls", "model.random_init": False,
        "dataset.name": "vtab/dtd", "dataset.data_root": root, "dataset.eval_split": "test",
        "dataset.metric": "top1", "dataset.max_length": 32, "dataset.train_size": None, "dataset.eval_size": None,
        "dataset.options": opts}))


def test_vit_images_use_the_models_image_processor_settings(models, vtab_root):
    spec = vit_spec(models["vit"], vtab_root)
    td = load_task_data(dict(spec.dataset), data_model_info(resolve_info(spec)), 0)
    x = td.train[0]["pixel_values"]
    assert torch.allclose(x, torch.ones_like(x))  # (1 - 0.5) / 0.5, not ImageNet's (1 - 0.485) / 0.229
    spec = vit_spec(models["vit"], vtab_root, normalize="imagenet")  # the recipe overrides
    x = load_task_data(dict(spec.dataset), data_model_info(resolve_info(spec)), 0).train[0]["pixel_values"]
    assert torch.allclose(x[0], torch.full_like(x[0], (1 - 0.485) / 0.229))


def test_bundled_vit_uses_its_hub_image_processor_settings(vtab_root):
    spec = parse_spec(example_spec(**{
        "model.name": "google/vit-base-patch16-224", "model.source": "hf", "model.task": "img-cls",
        "model.random_init": True, "dataset.name": "vtab/dtd", "dataset.data_root": vtab_root,
        "dataset.eval_split": "test", "dataset.metric": "top1", "dataset.max_length": 224}))
    info = resolve_info(spec)
    assert info.image_mean == [0.5, 0.5, 0.5] and info.image_std == [0.5, 0.5, 0.5]
