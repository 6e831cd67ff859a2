"""Options as typed models: validated in one place, one line per bad value, listed from the
source."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ISOLATE_PLUGINS
from pydantic import Field

from harness.cli.main import main
from operators import OPERATORS, TokenMixer
from registry import ConfigError
from registry.options import ComponentOptions, parse_options, specs_of
from routers import ROUTERS

ROOT = Path(__file__).resolve().parents[1]


class Demo(ComponentOptions):
    rate: float = Field(0.5, gt=0, le=1, description="how fast")
    steps: int = 3
    mode: str = "a"


@pytest.mark.parametrize("values, fragment", [
    ({"rate": math.nan}, "option rate=nan is invalid: Input should be a finite number"),
    ({"rate": math.inf}, "option rate=inf is invalid: Input should be a finite number"),
    ({"rate": True}, "option rate=True is invalid: Input should be a valid number"),
    ({"rate": "0.1"}, "option rate='0.1' is invalid: Input should be a valid number"),
    ({"rate": 0.0}, "option rate=0.0 is invalid: Input should be greater than 0"),
    ({"steps": 2.5}, "option steps=2.5 is invalid: Input should be a valid integer"),
    ({"steps": True}, "option steps=True is invalid: Input should be a valid integer"),
    ({"sterps": 1}, "got unknown option 'sterps'; did you mean 'steps'? (its options: mode, "
                    "rate, steps; set them with --widget-option demo.KEY=VALUE)"),
])
def test_bad_values_are_one_line_naming_the_component_the_option_and_the_flag(values, fragment):
    with pytest.raises(ConfigError) as err:
        parse_options("widget", "demo", Demo, values, "--widget-option {name}.{key}=VALUE")
    message = str(err.value)
    assert message.startswith("widget 'demo' ") and fragment in message
    assert len(message.splitlines()) == 1
    if "invalid" in message:
        key = next(iter(values))
        assert message.endswith(f"(set it with --widget-option demo.{key}=VALUE)")


def test_good_values_are_typed_and_read_only():
    options = parse_options("widget", "demo", Demo, {"rate": 1, "steps": 5}, "{key}")
    assert (options.rate, options.steps, options.mode) == (1.0, 5, "a")
    with pytest.raises(ValueError):
        options.rate = 0.2  # type: ignore[misc]
    assert [(s.name, s.type, s.default, s.constraints) for s in specs_of(Demo)] == [
        ("rate", "float", 0.5, (("gt", 0), ("le", 1))), ("steps", "int", 3, ()),
        ("mode", "str", "a", ())]


def test_a_subclass_extends_its_parents_options():
    class Base(TokenMixer):
        class Options(TokenMixer.Options):
            width: int = 2

    class Child(Base):
        class Options(Base.Options):
            depth: int = 1

    assert list(Child.Options.model_fields) == ["width", "depth"]
    assert Child.parse_options({"width": 4}).width == 4
    with pytest.raises(ConfigError, match=r"its options: depth, width"):
        Child.parse_options({"height": 1})


def test_registries_check_options_without_building():
    assert OPERATORS.check_options("dct", {"decay": 1.0}).decay == 1.0
    assert ROUTERS.check_options("random", {"match": "flops", "flop_fraction": 0.4}).match == \
        "flops"
    with pytest.raises(ConfigError, match=r"operator 'dct' option decay=nan is invalid"):
        OPERATORS.check_options("dct", {"decay": math.nan})
    with pytest.raises(ConfigError, match=r"router 'mod' got unknown option 'momentun'; did "
                                          r"you mean 'momentum'\?"):
        ROUTERS.check_options("mod", {"momentun": 0.1})  # its momentum was not listed before


@pytest.mark.parametrize("args, fragment", [
    (["--op-option", "dct.decay=NaN"],
     "operator 'dct' option decay=nan is invalid: Input should be a finite number (set it "
     "with --op-option dct.decay=VALUE)"),
    (["--op-option", "dct.n_freq=-4"], "operator 'dct' option n_freq=-4 is invalid"),
    (["--router-option", "momentum=true"], "router 'entropy' option momentum=True is invalid"),
    (["--op-option", "attn.backend=flash"], "unknown attention backend 'flash' (backends: "
                                            "auto, sdpa, flex, xformers)"),
])
def test_the_command_line_refuses_bad_option_values_before_recording(args, fragment, tmp_path,
                                                                      capsys):
    out = tmp_path / "runs"
    code = main(["run", "--preset", "smoke", "--max-steps", "1", "--out", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and fragment in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not list(out.glob("*.json"))  # nothing trained, nothing recorded


def test_list_shows_options_from_the_source_without_importing_pydantic_or_torch():
    code = ISOLATE_PLUGINS + (  # a plugin installed here may import torch: not the built-ins
        "import sys, json\n"
        "from harness.cli.main import main\n"
        "assert main(['list', 'dct', 'random', '--json']) == 0\n"
        "assert 'torch' not in sys.modules and 'pydantic' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    (dct,) = listed["operators"]
    assert [(o["name"], o["default"], o["constraints"]) for o in dct["options"]] == [
        ("n_freq", None, {"gt": 0}), ("decay", 3.0, {"ge": 0})]
    (rnd,) = listed["routers"]
    assert rnd["roles"] == "control"
    assert [o["name"] for o in rnd["options"]] == ["momentum", "seed", "match", "flop_fraction"]


def test_the_filtered_listing_describes_each_option(capsys):
    assert main(["list", "attn"]) == 0
    out = capsys.readouterr().out
    assert "backend=auto" in out  # the table
    assert "operator attn: backend: str, default 'auto': the attention kernel" in out
