"""The runtime's own input files (issue 20, item 5): a binary spec, a 5,000-deep config, `Infinity` or `NaN`
for a number, a float overflowing to infinity, nesting past MAX_SPEC_DEPTH: each is one `config` error (exit 2,
not retried), never a traceback or an `internal` error."""
import json

import pytest

from rankflow_runtime import events
from rankflow_runtime.cli import main
from rankflow_runtime.spec import MAX_SPEC_DEPTH, example_spec


def _with(old: str, new: str) -> bytes:
    text = json.dumps(example_spec())
    assert old in text  # the replacement happens
    return text.replace(old, new).encode()


def _deep(n: int) -> str:
    return '{"a": ' * n + "1" + "}" * n


CASES = {
    "binary": (bytes(range(256)) * 8, "not UTF-8 text (byte 128)"),
    "deep-5000": (_with('"config": {}', '"config": ' + _deep(5000)), "nested too deep"),
    "deep-schema": (_with('"config": {}', '"config": ' + _deep(MAX_SPEC_DEPTH + 5)), "model.config.a.a.a"),
    "lr-infinity": (_with('"lr": 0.001', '"lr": Infinity'), "`Infinity` is not a JSON number"),
    "lr-nan": (_with('"lr": 0.001', '"lr": NaN'), "`NaN` is not a JSON number"),
    "lr-overflow": (_with('"lr": 0.001', '"lr": 1e999'), "training.lr: expected a finite"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["run", "count"])
def test_bad_input_file_is_one_config_error(tmp_path, case, command, capsys):
    body, expected = CASES[case]
    path = tmp_path / "spec.json"
    path.write_bytes(body)
    argv = [command, "--spec", str(path)] + (["--out", str(tmp_path / "o")] if command == "run" else [])
    with events.capture() as lines:
        rc = main(argv)
    assert rc == 2, lines
    assert [line["event"] for line in lines] == ["error"]
    assert lines[0]["kind"] == "config" and expected in lines[0]["message"], lines[0]
    assert "\n" not in lines[0]["message"]
    assert "Traceback" not in capsys.readouterr().err


def test_count_specs_array_with_infinity_names_the_entry(tmp_path, capsys):
    good = example_spec()
    bad = example_spec()
    bad["training"]["lr"] = float("inf")
    (tmp_path / "specs.json").write_text(json.dumps([good, bad]))
    with events.capture() as lines:
        rc = main(["count", "--specs", str(tmp_path / "specs.json")])
    assert rc == 2 and lines[0]["kind"] == "config"
    assert "Infinity" in lines[0]["message"]
    assert "Traceback" not in capsys.readouterr().err
