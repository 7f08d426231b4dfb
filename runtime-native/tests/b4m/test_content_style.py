"""`synthetic/content-style` and the `tiny-denoiser`: content and style are independent factors, the frozen
classifiers are exact on every clean and jittered render and at chance on noise, the dataset options, and the
denoiser's loss, sampler and img-gen evaluation through the run loop."""
import pytest
import torch

from rankflow_runtime import events
from rankflow_runtime.data import content_style as cs
from rankflow_runtime.data.errors import DatasetConfigError
from rankflow_runtime.models.denoiser import DENOISER_DEFAULTS, TinyDenoiser
from rankflow_runtime.procedures import run_procedure
from rankflow_runtime.spec import example_spec, parse_spec


def test_classifiers_are_exact_on_every_render():
    imgs, cc, ss = [], [], []
    for c in range(cs.NUM_CONTENTS):
        for s in range(cs.NUM_STYLES + 1):
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    for gain in (0.93, 1.07):
                        imgs.append(torch.from_numpy(cs.render(c, s, dx, dy, gain)))
                        cc.append(c)
                        ss.append(s)
    got = cs.scores(torch.stack(imgs), torch.tensor(cc), torch.tensor(ss))
    assert got["content"] == 1.0 and got["style"] == 1.0 and got["joint"] == 1.0


def test_content_and_style_are_independent_factors():
    # the same shape mask under every style; the same texture (on the mask) under every shape
    for c in range(cs.NUM_CONTENTS):
        masks = {tuple((cs.render(c, s) > -1).any(0).flatten().tolist()) for s in range(cs.NUM_STYLES + 1)}
        assert len(masks) == 1
    for s in range(cs.NUM_STYLES + 1):
        tex = torch.from_numpy(cs.texture(s)).permute(2, 0, 1) * 2 - 1
        for c in range(cs.NUM_CONTENTS):
            img = torch.from_numpy(cs.render(c, s))
            m = torch.from_numpy(cs.shape_mask(c))
            assert torch.allclose(img[:, m], tex[:, m].float(), atol=1e-6)


def test_classifiers_on_noise_and_wrong_prompts():
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(256, 3, 16, 16, generator=g) * 2 - 1
    s = cs.scores(noise, torch.full((256,), 2), torch.full((256,), 3))
    assert s["style"] < 0.2 and s["joint"] < 0.2
    img = torch.from_numpy(cs.render(2, 3))[None]
    wrong_style = cs.scores(img, torch.tensor([2]), torch.tensor([4]))
    assert (wrong_style["content"], wrong_style["style"], wrong_style["joint"]) == (1.0, 0.0, 0.0)
    assert wrong_style["mse"] > 0.1 and cs.scores(img, torch.tensor([2]), torch.tensor([3]))["mse"] == 0.0


def test_dataset_options_and_errors():
    train, evals = cs.generate({"contents": [6], "styles": [None, 1], "eval_styles": [6], "eval_samples": 3}, 40, 0)
    assert len(train) == 40 and {tuple(e["labels"].tolist()) for e in train} == {(6, cs.NULL_STYLE), (6, 1)}
    assert len(evals) == 3 and all(tuple(e["labels"].tolist()) == (6, 6) for e in evals)
    assert torch.equal(evals[0]["pixel_values"], torch.from_numpy(cs.render(6, 6)))
    again, _ = cs.generate({"contents": [6], "styles": [None, 1]}, 40, 0)
    assert all(torch.equal(a["pixel_values"], b["pixel_values"]) for a, b in zip(train, again))
    with pytest.raises(DatasetConfigError, match="contents"):
        cs.generate({"contents": [9]}, 4, 0)
    with pytest.raises(DatasetConfigError, match="styles"):
        cs.generate({"styles": "red"}, 4, 0)


def test_denoiser_loss_and_sampler():
    torch.manual_seed(0)
    m = TinyDenoiser(DENOISER_DEFAULTS)
    x = torch.stack([torch.from_numpy(cs.render(1, 2))] * 4)
    labels = torch.tensor([[1, 2]] * 4)
    noise = torch.randn_like(x)
    t = torch.tensor([1, 2, 3, 4])
    out1 = m(x, labels, noise=noise, timesteps=t)
    out2 = m(x, labels, noise=noise, timesteps=t)
    assert torch.equal(out1.logits, out2.logits) and out1.loss.ndim == 0
    a, s = m.schedule(torch.tensor([0, 4]))
    assert torch.allclose(a, torch.tensor([1.0, 0.0]), atol=1e-6)
    assert torch.allclose(s, torch.tensor([0.0, 1.0]), atol=1e-6)
    gen = m.generate(labels, noise)
    assert gen.shape == x.shape and float(gen.abs().max()) <= 1.0
    assert torch.equal(gen, m.generate(labels, noise))


def test_img_gen_run_learns_and_scores(tmp_path):
    spec = example_spec(**{
        "model": {"name": "tiny-denoiser", "source": "builtin", "task": "img-gen", "config": {}, "random_init": True},
        "dataset": {"name": "synthetic/content-style", "data_root": None, "max_length": 16, "train_size": 256,
                    "eval_size": None, "eval_split": "validation", "metric": "joint",
                    "options": {"contents": [0, 1], "styles": [0], "eval_samples": 4}},
        "method": {"name": "full", "rank": None, "options": {}, "targets": []},
        "training.train_head": False, "training.max_steps": 60, "training.lr": 3e-3, "training.batch_size": 32,
        "training.eval_every": None, "training.warmup_ratio": 0.0})
    with events.capture() as rec:
        assert run_procedure(parse_spec(spec), str(tmp_path)) == 0
    done = [r for r in rec if r["event"] == "done"][0]
    assert set(done["metrics"]) == {"joint", "content", "style", "mse"}
    losses = [r["loss"] for r in rec if r["event"] == "progress"]
    assert losses[-1] < 0.75 * losses[0]
    assert done["metrics"]["style"] > 0.5  # two prompts of one style: the colour is learnt first
    assert done["metrics"]["joint"] > 0  # generated samples, not only clean renders, score on both (0.5 here)
