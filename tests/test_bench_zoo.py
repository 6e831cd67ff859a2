"""`python -m harness bench --zoo`: the zoo section's structure, not its timings (machines are
noisy): every mixer and routed pair timed against full attention at every N, analytic ratios,
crossovers re-derivable from the ratios, state sizes, targets and the plot."""

from __future__ import annotations

import json

import pytest

from harness.cli.main import main
from harness.probes.bench.end_to_end import crossover
from operators import OPERATORS


@pytest.fixture(scope="module")
def zoo_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-zoo")
    status = main(["bench", "--quick", "--threads", "1", "--device", "cpu", "--causal",
                   "--no-train-step", "--ops", "attn", "--fractions", "1", "--zoo",
                   "--zoo-ops", "linear,hyena", "--out", str(out), "--name", "quick"])
    assert status == 0
    return out, json.loads((out / "quick.json").read_text())


def test_every_mixer_and_pair_is_timed_against_full_attention(zoo_report):
    _, report = zoo_report
    zoo = report["zoo"]
    assert zoo["shape"]["causal"] and zoo["ops"] == ["linear", "hyena"]
    keys = {"attn", "linear", "hyena", "linear+attn@0.375", "hyena+attn@0.375"}
    for n in (32, 64):
        rows = {r["key"]: r for r in zoo["rows"] if r["seq_len"] == n}
        assert set(rows) == keys
        for r in rows.values():
            for mode in ("fwd", "fwd+bwd"):
                assert r[mode]["median_ms"] > 0 and r[mode]["ratio"] > 0
            assert r["flop_ratio"] > 0
        assert rows["attn"]["fwd+bwd"]["ratio"] == 1.0 and rows["attn"]["flop_ratio"] == 1.0
        # hyena takes no query subsets: its pair runs it everywhere and attention on top
        assert rows["hyena+attn@0.375"]["flop_ratio"] > rows["hyena"]["flop_ratio"]
        d, h = report["settings"]["d_model"], report["settings"]["heads"]
        for name in ("linear", "hyena"):
            op = OPERATORS.get(name)(d, h, n, True)
            assert rows[name]["state_floats"] == op.state_size(n)
            assert rows[name]["flop_ratio"] == pytest.approx(
                op.flops(n, n) / OPERATORS.get("attn")(d, h, n, True).flops(n, n))
        assert rows["linear+attn@0.375"]["state_floats"] is None


def test_crossovers_are_rederivable_and_the_plot_is_written(zoo_report):
    out, report = zoo_report
    zoo = report["zoo"]
    assert set(zoo["crossover"]) == {"linear", "hyena", "linear+attn", "hyena+attn"}
    for key, n in zoo["crossover"].items():
        row_key = f"{key}@0.375" if "+" in key else key
        assert n == crossover([(r["seq_len"], r["fwd+bwd"]["ratio"]) for r in zoo["rows"]
                               if r["key"] == row_key])
    assert (out / report["zoo_plot"]).read_bytes()[:4] == b"\x89PNG"


def test_targets_per_mixer_say_what_was_not_measured(zoo_report):
    _, report = zoo_report
    zoo_targets = [t for t in report["targets"] if t["target"].startswith("zoo")]
    # linear and hyena: within 1.3x of analytic, below 0.25, time(8192) / time(1024)
    assert len(zoo_targets) == 6
    assert all(t["passed"] is None and "not measured" in t["note"] for t in zoo_targets)


@pytest.mark.parametrize("flags, fragment", [
    (["--zoo-ops", "attn"], "besides attn"),
    (["--zoo-ops", "lineer"], "linear"),
    (["--zoo-fraction", "1"], "--zoo-fraction"),
    (["--zoo-seq-lens", "0"], "--zoo-seq-lens"),
])
def test_bad_zoo_input_exits_2(flags, fragment, tmp_path, capsys):
    assert main(["bench", "--quick", "--no-train-step", "--zoo", *flags, "--out",
                 str(tmp_path)]) == 2
    assert fragment in capsys.readouterr().err
