"""LoRA-GGPO / MGPO: W0 bit-identical after every step, no perturbation before optimizer state exists, the
perturbation's norm and direction (MGPO: −ρ·V/‖V‖·min(1/ḡ, 10); GGPO: per-row σ_i), one forward and one backward
per micro-batch, option validation, μ as the optimizer's β1, exact resume with the gradient-norm EMAs."""
import math

import pytest
import torch

from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods.base import TrainContext, adapted_layers
from rankflow_runtime.methods.lora_ggpo import LoRAGGPO
from rankflow_runtime.spec import example_spec, parse_spec
from rankflow_runtime.testing import adapted_model, synthetic_batch


class _Seen:
    """Records the weight each adapted layer's frozen base uses in every forward."""

    def __init__(self, model):
        self.weights = []
        self.forwards = 0
        self.backwards = 0
        layer = adapted_layers(model)[0]
        layer.base.register_forward_pre_hook(self._fwd)
        self.layer = layer

    def _fwd(self, module, args):
        self.forwards += 1
        self.weights.append(module.weight.detach().clone())


def _steps(model, meth, batch, steps, lr=5e-2, accum=1, seen=None):
    """The training loop's order (train.py): before_forward, accum × (forward, backward), after_backward,
    step, zero_grad."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    ctx = TrainContext(model=model, step=0, total_steps=steps, optimizer=opt)
    meth.on_train_start(ctx)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    model.train()
    for step in range(steps):
        ctx.step = step
        meth.before_forward(ctx)
        for _ in range(accum):
            (model(**batch).loss / accum).backward()
            if seen is not None:
                seen.backwards += 1
        meth.after_backward(ctx)
        for n, p in model.named_parameters():  # W0 is back, bit for bit, before the optimizer step
            if n in w0:
                assert torch.equal(p, w0[n]), f"{n} differs after step {step + 1}"
        opt.step()
        opt.zero_grad(set_to_none=True)
    return opt, ctx


@pytest.mark.parametrize("variant", ["mgpo", "ggpo"])
@pytest.mark.parametrize("model", ["tiny-encoder", "tiny-decoder"])
def test_w0_restored_and_first_step_unperturbed(variant, model):
    m, meth, _, _ = adapted_model(model, "lora-ggpo", options={"variant": variant})
    seen = _Seen(m)
    w0 = seen.layer.base.weight.detach().clone()
    _steps(m, meth, synthetic_batch(model), steps=4, seen=seen)
    assert seen.forwards == 4 and seen.backwards == 4  # one forward and one backward per micro-batch
    assert torch.equal(seen.weights[0], w0)  # step 1: no optimizer state yet, no perturbation
    assert all(not torch.equal(w, w0) for w in seen.weights[1:])
    assert torch.equal(seen.layer.base.weight, w0)


def test_mgpo_perturbation_norm_and_direction():
    m, meth, _, _ = adapted_model("tiny-encoder", "lora-ggpo", options={"variant": "mgpo", "rho": 0.05})
    batch = synthetic_batch("tiny-encoder")
    opt, ctx = _steps(m, meth, batch, steps=3)
    layer = adapted_layers(m)[0]
    st = opt.state
    with torch.no_grad():
        v = layer.scaling * (st[layer.lora_B]["exp_avg"] @ layer.lora_A + layer.lora_B @ st[layer.lora_A]["exp_avg"])
    gbar = float(layer.grad_norm_ema)
    w0 = layer.base.weight.detach().clone()
    seen = _Seen(m)
    ctx.step = 3
    meth.before_forward(ctx)
    m(**batch)
    meth.after_backward(ctx)
    eps = seen.weights[0] - w0
    want_norm = 0.05 * min(1.0 / (gbar + 1e-12), 10.0)
    assert math.isclose(float(eps.norm()), want_norm, rel_tol=1e-4)
    cos = float((eps.flatten() @ v.flatten()) / (eps.norm() * v.norm()))
    assert cos < -0.9999  # ε ∝ −V
    assert meth.last_norms and math.isclose(meth.last_norms[0], want_norm, rel_tol=1e-4)


def test_mgpo_scale_is_capped_at_ten():
    m, meth, _, _ = adapted_model("tiny-encoder", "lora-ggpo", options={"variant": "mgpo", "rho": 0.01})
    _, ctx = _steps(m, meth, synthetic_batch("tiny-encoder"), steps=2)
    for layer in adapted_layers(m):
        layer.grad_norm_ema.fill_(1e-6)  # 1/ḡ = 1e6 → capped
    meth.before_forward(ctx)
    meth._restore()
    assert meth.last_norms and all(math.isclose(n, 0.01 * 10, rel_tol=1e-4) for n in meth.last_norms)


def test_ggpo_rows_follow_sigma_and_noise_is_seeded():
    m, meth, _, _ = adapted_model("tiny-encoder", "lora-ggpo", options={"variant": "ggpo", "rho": 0.1},
                                  targets=["fc1"])
    batch = synthetic_batch("tiny-encoder")
    _, ctx = _steps(m, meth, batch, steps=3)
    layer = adapted_layers(m)[0]
    gbar = layer.grad_norm_ema.clone()
    w = layer.base.weight + layer.delta_weight()
    sigma = 0.1 * w.norm(dim=1) / math.sqrt(layer.in_features) * gbar / gbar.mean()
    draws = []
    for _ in range(2):
        meth.before_forward(ctx)
        draws.append(layer.base.weight.detach().clone())
        meth._restore()
    assert torch.equal(draws[0], draws[1])  # same (seed, step, layer): same noise (exact resume)
    eps = draws[0] - layer.base.weight
    ratio = eps.std(dim=1) / sigma  # d_in = 32 samples per row
    assert abs(float(ratio.mean()) - 1) < 0.1 and float(ratio.min()) > 0.5 and float(ratio.max()) < 1.6
    ctx.step += 1
    meth.before_forward(ctx)
    assert not torch.equal(layer.base.weight, draws[0])  # a new step draws new noise
    meth._restore()


def test_gradient_accumulation_one_forward_backward_per_micro_batch_and_ema_once_per_step():
    m, meth, _, _ = adapted_model("tiny-decoder", "lora-ggpo", options={"variant": "mgpo"})
    seen = _Seen(m)
    _steps(m, meth, synthetic_batch("tiny-decoder"), steps=3, accum=2, seen=seen)
    assert seen.forwards == 6 and seen.backwards == 6
    assert int(seen.layer.ema_steps) == 3
    assert torch.equal(seen.weights[2], seen.weights[3])  # one perturbation per optimizer step


def test_options_are_validated_and_mu_sets_beta1():
    with pytest.raises(ConfigError, match="rho: must be positive"):
        LoRAGGPO(4, {"rho": 0.0})
    with pytest.raises(ConfigError, match="beta: must satisfy"):
        LoRAGGPO(4, {"beta": 1.0})
    m, meth, _, _ = adapted_model("tiny-encoder", "lora-ggpo", options={"mu": 0.8})
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad])
    meth.on_train_start(TrainContext(model=m, step=0, total_steps=1, optimizer=opt))
    assert all(g["betas"] == (0.8, 0.999) for g in opt.param_groups)


@pytest.mark.parametrize("variant", ["mgpo", "ggpo"])
def test_resume_is_bit_for_bit(variant, tmp_path):
    from rankflow_runtime import events
    from rankflow_runtime.train import run_training
    spec = example_spec(**{"method.name": "lora-ggpo", "method.rank": 4, "method.options": {"variant": variant},
                           "dataset.train_size": 64, "dataset.eval_size": 16, "training.max_steps": 6,
                           "training.batch_size": 8, "training.lr": 1e-2, "training.eval_every": None,
                           "training.checkpoint_every": 3, "training.log_every": 1, "training.grad_accum": 2})
    with events.capture() as full:
        assert run_training(parse_spec(spec), str(tmp_path / "a")) == 0
    with events.capture():
        assert run_training(parse_spec(spec), str(tmp_path / "b"), stop_at_step=3) == 4
    from safetensors.torch import load_file
    ck = tmp_path / "b" / "checkpoints" / "step-00000003"
    assert any(k.endswith("grad_norm_ema") for k in load_file(str(ck / "adapter.safetensors")))
    with events.capture() as resumed:
        assert run_training(parse_spec(spec), str(tmp_path / "b"), resume=str(ck)) == 0
    loss = lambda recs: [r["loss"] for r in recs if r["event"] == "progress"]  # noqa: E731
    assert loss(full)[3:] == loss(resumed)
