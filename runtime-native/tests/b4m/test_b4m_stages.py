"""Break-for-Make's stages in-process, on the tiny denoiser and synthetic/content-style: pretrain → break content /
break style → make, and the combine baselines. The frozen halves are bit-identical through every stage, the make
stage starts from the exact merge, each stage resumes bit for bit, the break step routes each loss to its half
only, and wrong inputs are refused."""
import os

import pytest
import torch
from safetensors.torch import load_file

from _runs import artifacts, run_capturing as _run
from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods.base import TrainContext
from rankflow_runtime.procedures.b4m import BreakStep
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.step import Stepper
from rankflow_runtime.train import LoopStep

DENOISER = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 48}
BASE = {"contents": [0, 1, 2], "styles": [None, 0, 1, 2]}
CONTENT = {"contents": [6], "styles": [None], "eval_contents": [6], "eval_styles": [6], "eval_samples": 2}
STYLE = {"contents": [0, 1, 2], "styles": [6], "eval_contents": [6], "eval_styles": [6], "eval_samples": 2}
AUX_STYLE = [{"options": {"contents": [0, 1, 2], "styles": [s]}} for s in (0, 1)]
AUX_CONTENT = [{"options": {"contents": [c], "styles": [None]}} for c in (0, 1)]


def _spec(run_id, method, options, procedure=None, inputs=None, steps=4, lr=3e-3, lr_groups=None):
    s = example_spec(**{
        "model": {"name": "tiny-denoiser", "source": "builtin", "task": "img-gen", "config": DENOISER,
                  "random_init": True},
        "dataset": {"name": "synthetic/content-style", "data_root": None, "max_length": 16, "train_size": 32,
                    "eval_size": None, "eval_split": "validation", "metric": "joint", "options": options},
        "method": method, "training.train_head": False, "training.max_steps": steps, "training.lr": lr,
        "training.lr_groups": lr_groups or {}, "training.batch_size": 8, "training.eval_every": None,
        "training.warmup_ratio": 0.0, "training.schedule": "constant", "training.log_every": 1})
    s["run_id"] = run_id
    if procedure:
        s["procedure"] = procedure
    if inputs:
        s["inputs"] = {k: {"run": v[0], "artifact": v[1]} for k, v in inputs.items()}
    return s


PLP = {"name": "plp", "rank": 4, "options": {"basis_rows": 0}, "targets": []}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("b4m")
    full = {"name": "full", "rank": None, "options": {}, "targets": []}
    rc, rec = _run(_spec("run-00000000000000b0", full, BASE, {"name": "finetune", "options": {"outputs": ["model"]}},
                         steps=6), root / "base")
    assert rc == 0
    base = artifacts(rec)["model"]
    out = {"base": base}
    for role, data, aux, lr, groups in (("content", CONTENT, AUX_STYLE, 3e-3, {"up": 3e-4}),
                                        ("style", STYLE, AUX_CONTENT, 3e-4, {"up": 3e-3})):
        spec = _spec(f"run-00000000000000{'c1' if role == 'content' else 'c2'}", PLP, data,
                     {"name": "b4m-break", "options": {"role": role, "aux": aux}},
                     {"model": ("run-00000000000000b0", "model")}, lr=lr, lr_groups=groups)
        rc, rec = _run(spec, root / role, inputs={"model": base})
        assert rc == 0, rec[-1]
        out[role] = artifacts(rec)["adapter"]
        out[role + "_spec"] = spec
    make = _spec("run-00000000000000d0", PLP, STYLE, {"name": "b4m-make", "options": {"joint": [
        {"options": CONTENT}]}}, {"model": ("run-00000000000000b0", "model"), "content": ("run-00000000000000c1",
                                                                                          "adapter"),
                                  "style": ("run-00000000000000c2", "adapter")})
    out["make_spec"] = make
    out["make_inputs"] = {"model": base, "content": out["content"], "style": out["style"]}
    rc, rec = _run(make, root / "make", inputs=out["make_inputs"])
    assert rc == 0, rec[-1]
    out["make"] = artifacts(rec)["adapter"]
    out["make_rec"] = rec
    out["root"] = root
    return out


def _tensors(path):
    return load_file(os.path.join(path, "adapter.safetensors"))


def test_frozen_halves_identical_through_every_stage(pipeline):
    c, s, m = (_tensors(pipeline[k]) for k in ("content", "style", "make"))
    frozen = [k for k in c if k.endswith(("down_frozen", "up_frozen"))]
    assert frozen and all(torch.equal(c[k], s[k]) and torch.equal(c[k], m[k]) for k in frozen)
    learn = [k for k in c if k.endswith("_learn")]
    assert all(not torch.equal(c[k], s[k]) for k in learn)  # the two runs learnt different halves


def test_make_stage_reports_content_and_style_scores(pipeline):
    done = [r for r in pipeline["make_rec"] if r["event"] == "done"][0]
    assert set(done["metrics"]) == {"joint", "content", "style", "mse"}
    assert [r for r in pipeline["make_rec"] if r["event"] == "started"][0]["trainable_params"] > 0


def test_make_stage_resumes_bit_for_bit(pipeline):
    root = pipeline["root"]
    rc, rec = _run(pipeline["make_spec"], root / "make-a", inputs=pipeline["make_inputs"], stop=2)
    assert rc == 4
    path = [r for r in rec if r["event"] == "preempted"][0]["path"]
    rc, rec = _run(pipeline["make_spec"], root / "make-b", inputs=pipeline["make_inputs"], resume=path)
    assert rc == 0
    a, b = _tensors(pipeline["make"]), _tensors(artifacts(rec)["adapter"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_break_stage_resumes_bit_for_bit(pipeline):
    root, spec = pipeline["root"], pipeline["content_spec"]
    rc, rec = _run(spec, root / "content-a", inputs={"model": pipeline["base"]}, stop=2)
    assert rc == 4
    path = [r for r in rec if r["event"] == "preempted"][0]["path"]
    rc, rec = _run(spec, root / "content-b", inputs={"model": pipeline["base"]}, resume=path)
    assert rc == 0
    a, b = _tensors(pipeline["content"]), _tensors(artifacts(rec)["adapter"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_combine_sums_and_averages_plain_adapters(pipeline):
    root = pipeline["root"]
    lora = {"name": "lora", "rank": 4, "options": {}, "targets": []}
    adapters = []
    for i, data in enumerate((CONTENT, STYLE)):
        spec = _spec(f"run-00000000000000e{i}", lora, data, {"name": "finetune", "options": {"outputs": ["adapter"]}},
                     {"model": ("run-00000000000000b0", "model")})
        rc, rec = _run(spec, root / f"lora{i}", inputs={"model": pipeline["base"]})
        assert rc == 0
        adapters.append(artifacts(rec)["adapter"])
    results = {}
    for mode in ("sum", "average"):
        spec = _spec("run-00000000000000f0", lora, STYLE, {"name": "combine", "options": {"mode": mode}},
                     {"model": ("run-00000000000000b0", "model"), "first": ("run-00000000000000e0", "adapter"),
                      "second": ("run-00000000000000e1", "adapter")})
        rc, rec = _run(spec, root / f"combine-{mode}", inputs={"model": pipeline["base"], "first": adapters[0],
                                                              "second": adapters[1]})
        assert rc == 0
        results[mode] = [r for r in rec if r["event"] == "done"][0]
    assert set(results["sum"]["metrics"]) == {"joint", "content", "style", "mse"}
    assert results["sum"]["metrics"]["mse"] != results["average"]["metrics"]["mse"]
    with pytest.raises(ConfigError, match="trained with method"):  # a PLP adapter is not this run's LoRA
        spec = _spec("run-00000000000000f1", lora, STYLE, {"name": "combine", "options": {}},
                     {"first": ("run-00000000000000c1", "adapter"), "second": ("run-00000000000000e1", "adapter")})
        _run(spec, root / "bad", inputs={"first": pipeline["content"], "second": adapters[1]})


def test_make_refuses_adapters_of_another_seed(pipeline):
    spec = dict(pipeline["make_spec"], seed=1)
    with pytest.raises(ConfigError, match="seed"):
        _run(spec, pipeline["root"] / "bad-seed", inputs=pipeline["make_inputs"])


def test_break_step_routes_each_loss_to_its_half():
    from rankflow_runtime.testing import adapted_model
    model, method, _, _ = adapted_model("tiny-encoder", "plp", rank=4, targets=["query", "value"])
    from rankflow_runtime.testing import synthetic_batch
    target = synthetic_batch("tiny-encoder", seed=0)
    aux_batches = [synthetic_batch("tiny-encoder", seed=s) for s in (1, 2)]

    class Stream:
        def __init__(self, b):
            self.train = [{k: v[i] for k, v in b.items()} for i in range(len(b["labels"]))]
            self.collate = lambda xs: {k: torch.stack([x[k] for x in xs]) for k in xs[0]}

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    spec = parse_spec(example_spec(**{"training.batch_size": 8}))
    step = BreakStep("content", [Stream(b) for b in aux_batches])
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    names = {id(p): n for n, p in model.named_parameters()}
    ctx = TrainContext(model=model, step=0, total_steps=1)
    stepper = Stepper(model, method, opt, ctx)
    # expected: down moves by −lr·∇L₁ (at the old weights); up by −lr·∇L₂ at the weights after down's step
    down = [p for p in params if names[id(p)].endswith("down_learn")]
    up = [p for p in params if names[id(p)].endswith("up_learn")]
    g1 = torch.autograd.grad(model(**target).loss, down)
    step(LoopStep(stepper=stepper, micro_batches=iter([target]), n_micro=1, step=0, spec=spec, task_data=None,
                  device=torch.device("cpu")))
    for p, g in zip(down, g1):
        torch.testing.assert_close(p.detach(), before[names[id(p)]] - 0.5 * g)
    with torch.no_grad():
        now_up = [p.detach().clone() for p in up]
        for p in up:
            p.copy_(before[names[id(p)]])
    aux = [Stream(b) for b in aux_batches]
    loss2 = sum(model(**a.collate(a.train)).loss for a in aux) / 2
    g2 = torch.autograd.grad(loss2, up)
    for p, g, got in zip(up, g2, now_up):
        torch.testing.assert_close(got, before[names[id(p)]] - 0.5 * g)
    assert ctx.step == 1
