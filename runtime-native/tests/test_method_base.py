"""Unit tests of the method mechanism: registry lookup, option parsing/schema, target matching."""
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from rankflow_runtime.errors import ConfigError
from rankflow_runtime.methods import get_method
from rankflow_runtime.methods.base import find_targets, option, options_schema, parse_options
from rankflow_runtime.testing import adapted_model


@dataclass
class Opts:
    alpha: float = option(8.0, help="a", min=0.0)
    mode: str = option("x", help="m", choices=["x", "y"])
    flag: bool = option(False, help="f")
    dims: list = option([1, 2], help="d")
    n: int = option(3, help="n", min=1, max=5)


def test_schema_types_and_defaults():
    s = options_schema(Opts)
    assert s["alpha"] == {"type": "number", "default": 8.0, "help": "a", "min": 0.0}
    assert s["mode"]["type"] == "enum" and s["mode"]["choices"] == ["x", "y"]
    assert s["flag"]["type"] == "boolean" and s["dims"]["type"] == "list" and s["n"]["type"] == "integer"


def test_parse_options_validates():
    o = parse_options(Opts, {"alpha": 2, "mode": "y", "n": 5})
    assert o.alpha == 2.0 and isinstance(o.alpha, float) and o.mode == "y" and o.dims == [1, 2]
    with pytest.raises(ConfigError, match=r"method.options.alhpa: unknown option \(did you mean \"alpha\"\?\)"):
        parse_options(Opts, {"alhpa": 1})
    with pytest.raises(ConfigError, match="method.options.n: .* above the maximum 5"):
        parse_options(Opts, {"n": 6})
    with pytest.raises(ConfigError, match="method.options.mode"):
        parse_options(Opts, {"mode": "z"})
    with pytest.raises(ConfigError, match="method.options.flag: expected boolean"):
        parse_options(Opts, {"flag": 1})


def test_get_method_suggests():
    assert get_method("lora").name == "lora"
    with pytest.raises(ConfigError, match='did you mean "lora"'):
        get_method("lroa")


def test_lora_needs_rank():
    with pytest.raises(ConfigError, match="method.rank"):
        get_method("lora")(None, {})


def test_target_patterns():
    m = nn.Module()
    m.layers = nn.ModuleList([nn.Module() for _ in range(2)])
    for l in m.layers:
        l.q_proj, l.v_proj = nn.Linear(4, 4), nn.Linear(4, 2)
    m.head = nn.Linear(4, 2)
    assert [n for n, _ in find_targets(m, ["q_proj"])] == ["layers.0.q_proj", "layers.1.q_proj"]
    assert [n for n, _ in find_targets(m, ["layers.1.*"])] == ["layers.1.q_proj", "layers.1.v_proj"]
    assert [n for n, _ in find_targets(m, ["*"], exclude="head")] == [
        "layers.0.q_proj", "layers.0.v_proj", "layers.1.q_proj", "layers.1.v_proj"]
    assert find_targets(m, ["proj"]) == []  # no partial-word matches


def test_no_matching_target_is_a_config_error():
    with pytest.raises(ConfigError, match=r"method.targets: no nn.Linear module matches \['qproj'\]"):
        adapted_model("tiny-decoder", "lora", targets=["qproj"])


def test_lora_scaling_and_rslora():
    m, meth, _, _ = adapted_model("tiny-encoder", "lora", rank=4, options={"alpha": 8})
    layer = m.get_submodule(meth.targets[0])
    assert layer.scaling == 2.0
    m, meth, _, _ = adapted_model("tiny-encoder", "lora", rank=4, options={"alpha": 8, "use_rslora": True})
    assert m.get_submodule(meth.targets[0]).scaling == 4.0
    # delta_weight is s·B·A
    with torch.no_grad():
        layer.lora_B.normal_()
    torch.testing.assert_close(layer.delta_weight(), layer.scaling * layer.lora_B @ layer.lora_A)


def _toy_method(rules, identity=True):
    from rankflow_runtime.methods.base import Method, register

    class Toy(Method):
        name = "toy-properties"
        paper = "none"
        Options = Opts
        init_is_identity = identity
        mergeable = True
        property_rules = rules

    register(Toy)
    from rankflow_runtime.methods.base import REGISTRY
    del REGISTRY["toy-properties"]  # keep the real registry clean
    return Toy


def test_property_rules_depend_on_options_and_describe_says_so():
    toy = _toy_method(({"when": {"mode": ["y"]}, "then": {"init_is_identity": False}},
                       {"when": {"mode": ["y"], "flag": [True]}, "then": {"mergeable": False}}))
    assert toy(4, {}).init_is_identity and toy(4, {}).mergeable
    assert not toy(4, {"mode": "y"}).init_is_identity and toy(4, {"mode": "y"}).mergeable
    both = toy(4, {"mode": "y", "flag": True})
    assert not both.init_is_identity and not both.mergeable
    d = toy.describe()
    assert d["init_is_identity"] is True and d["mergeable"] is True
    assert d["property_rules"][1] == {"when": {"mode": ["y"], "flag": [True]}, "then": {"mergeable": False}}
    with pytest.raises(ConfigError, match="cannot be merged"):
        both.merge(nn.Linear(2, 2))


def test_property_rules_are_checked_at_registration():
    with pytest.raises(TypeError, match="unknown options/properties"):
        _toy_method(({"when": {"nope": [1]}, "then": {"init_is_identity": False}},))
    with pytest.raises(TypeError, match="unknown options/properties"):
        _toy_method(({"when": {"mode": ["y"]}, "then": {"fast": False}},))
    with pytest.raises(TypeError, match="matches the default options"):
        _toy_method(({"when": {"mode": ["x"]}, "then": {"init_is_identity": False}},))


@pytest.mark.parametrize("method,options,identity", [
    ("loldu", {}, True), ("loldu", {"init": "ones"}, False), ("loldu", {"init": "zeros"}, False),
    ("salt", {}, False), ("salt", {"init": "kaiming_zero"}, True),
    ("plp", {}, False), ("plp", {"orthogonal_prior": "none"}, True)])
def test_init_is_identity_follows_the_options(method, options, identity):
    """The declared property is what the adapted model does (LoLDU's init `ones` used to claim identity)."""
    from rankflow_runtime.testing import base_model, synthetic_batch
    m, meth, _, _ = adapted_model("tiny-encoder", method, options=options)
    assert meth.init_is_identity is identity
    base, _ = base_model("tiny-encoder")
    batch = {k: v for k, v in synthetic_batch("tiny-encoder").items() if k != "labels"}
    m.eval()
    base.eval()
    with torch.no_grad():
        same = torch.allclose(m(**batch).logits, base(**batch).logits, rtol=1e-5, atol=1e-5)
    assert same is identity
