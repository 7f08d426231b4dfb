"""The contract: run specs are validated against the JSON Schema generated from zod (rankflow_runtime/contract,
`npm run gen`), with one-line errors that name the field and the fix; the runtime's own output (events,
count, describe) conforms to its generated schema."""
import copy
import json

import pytest
from jsonschema import Draft202012Validator

from rankflow_runtime import contract, events
from rankflow_runtime.cli import describe, main
from rankflow_runtime.errors import ConfigError
from rankflow_runtime.spec import example_spec, parse_spec

RUN = "run-" + "a" * 32


@pytest.mark.parametrize("name", contract.DOCUMENTS)
def test_generated_documents_are_valid_json_schema(name):
    Draft202012Validator.check_schema(contract.schema(name))
    assert "npm run gen" in contract.schema(name)["$comment"]


@pytest.mark.parametrize("mutate,message,hint", [
    (lambda s: s["training"].update(lrr=1), 'training.lrr: unknown field (did you mean "lr"?)', "schemas/runspec.ts"),
    (lambda s: s["training"].pop("lr"), "training.lr: missing", "add training.lr (a positive number)"),
    (lambda s: s["training"].update(batch_size=0), "training.batch_size: expected a positive integer, got 0",
     "set training.batch_size to a positive integer"),
    (lambda s: s["dataset"].update(train_size=-1), "dataset.train_size: expected a positive integer or null, got -1",
     None),
    (lambda s: s["training"].update(warmup_ratio=2), "training.warmup_ratio: expected a number between 0 and 1",
     None),
    (lambda s: s["training"].update(optimizer="adam"), 'training.optimizer: expected one of "adamw", "sgd"', None),
    (lambda s: s["training"].update(epochs=2), "training.max_steps/training.epochs: exactly one must be set",
     "set one of them and the other to null"),
    (lambda s: s["training"].update(max_steps=None), "training.max_steps/training.epochs: exactly one must be set",
     None),
    (lambda s: s.update(schema="x"), 'schema: expected "rankflow.run/v1", got "x"', "rankflow planner"),
    (lambda s: s.update(inputs={"model": {"run": "nope", "artifact": "model"}}),
     "inputs.model.run: expected a run id (run-<hex>)", None),
    (lambda s: s.update(inputs={"Model": {"run": RUN, "artifact": "model"}}),
     "inputs.Model: an input name is lower-case letters, digits and _", None),
    (lambda s: s["dataset"].update(format="xlsx"), "dataset.format: expected one of", None),
])
def test_spec_errors_are_one_line_and_name_the_fix(mutate, message, hint):
    s = example_spec()
    mutate(s)
    with pytest.raises(ConfigError) as e:
        parse_spec(s, "bad.json")
    assert e.value.message.startswith(f"bad.json: {message}") and "\n" not in e.value.message
    if hint:
        assert hint in e.value.hint


def test_the_first_problem_is_reported_in_reading_order():
    s = example_spec()
    s["model"]["extra"] = 1
    s["training"]["lr"] = -1
    with pytest.raises(ConfigError, match="model.extra: unknown field"):
        parse_spec(s)
    with pytest.raises(ConfigError, match="a run spec must be a JSON object"):
        parse_spec([1, 2])


def test_valid_specs_pass_with_optional_fields():
    s = example_spec()
    assert contract.first_error("runspec", s) is None
    s2 = copy.deepcopy(s)
    s2.update(run_id=RUN, procedure={"name": "finetune", "options": {}}, inputs={"model": {"run": RUN,
                                                                                          "artifact": "model"}})
    s2["model"]["trust_remote_code"] = True
    assert parse_spec(s2).inputs["model"]["run"] == RUN


def test_describe_conforms_to_its_schema():
    assert contract.first_error("describe", json.loads(json.dumps(describe()))) is None


def test_count_and_run_events_conform(tmp_path):
    spec = example_spec(**{"training.max_steps": 3, "training.eval_every": 2, "training.checkpoint_every": 2,
                           "dataset.train_size": 32, "dataset.eval_size": 16})
    (tmp_path / "s.json").write_text(json.dumps(spec))
    with events.capture() as lines:
        assert main(["count", "--spec", str(tmp_path / "s.json")]) == 0
    assert contract.first_error("count", lines[-1]) is None
    with events.capture() as lines:
        assert main(["run", "--spec", str(tmp_path / "s.json"), "--out", str(tmp_path / "out")]) == 0
    kinds = {line["event"] for line in lines}
    assert {"started", "progress", "checkpoint", "eval", "done"} <= kinds
    for line in lines:
        assert contract.first_error("events", line) is None, line
