"""The board's difficulty-sweep section on synthetic records: which rows make a sweep, the
"stands in for attention" rule at its boundary, the declared state and measured time on the
cost axes, the routed pairs with their ground truth, the plot, and one line without a sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy import stats
from test_leaderboard import write

from harness.core.config import RunConfig
from harness.core.metrics import fixed
from harness.core.records import RunRecord
from harness.core.stats import mean, sample_std
from harness.report.leaderboard import board as lb
from harness.report.leaderboard import difficulty
from harness.report.leaderboard.groups import collect
from harness.report.leaderboard.rows import build_task
from harness.report.markdown import mean_std

A = {"seq_len": 30, "n_pairs": 4, "vocab_size": 32, "batch_size": 64}
B = {"seq_len": 62, "n_pairs": 8, "vocab_size": 64, "batch_size": 32}
# (setting, operator, d_model): (test accuracy per seed, training tokens/s)
SINGLES = {
    ("A", "attn", 32): ([1.0, 1.0, 1.0], 8_000.0),
    ("A", "attn", 64): ([1.0, 1.0, 1.0], 5_000.0),
    ("A", "linear", 32): ([0.98, 0.99, 1.0], 10_000.0),  # stands in: least state
    ("A", "linear", 64): ([1.0, 1.0, 1.0], 6_000.0),
    ("A", "hyena", 32): ([0.85, 0.90, 0.95], 25_000.0),
    ("A", "hyena", 64): ([0.98, 0.985, 0.99], 20_000.0),  # stands in: least time
    ("B", "attn", 32): ([0.95, 0.94, 0.96], 4_000.0),
    ("B", "attn", 64): ([1.0, 1.0, 1.0], 3_000.0),  # attention's best: the reference
    ("B", "linear", 32): ([0.50, 0.52, 0.48], 9_000.0),
    ("B", "linear", 64): ([0.97, 0.975, 0.98], 5_000.0),  # 2.5 points below: does not
    ("B", "hyena", 32): ([0.60, 0.62, 0.64], 12_000.0),
    ("B", "hyena", 64): ([0.97, 0.98, 0.99], 11_000.0),  # exactly 2 points below: does
}
SETTINGS = {"A": A, "B": B}


def record(router: str, ops: tuple[str, ...], seed: int, accuracy: float, *, setting: dict,
           d_model: int, tokens_per_second: float = 1000.0, flags: list[str] | None = None,
           truth: list[dict[str, float]] | None = None, fraction: float = 1.0,
           task: str = "mqar", op_options: dict | None = None) -> dict:
    cfg = RunConfig.model_validate({
        "preset": "cpu", "seed": seed, "device": "cpu",
        "model": {"layers": 2, "d_model": d_model, "heads": 1},
        "routing": {"router": router, "ops": list(ops), "op_options": op_options or {}},
        "data": {"task": task, "seq_len": setting["seq_len"],
                 "task_options": {"n_pairs": setting["n_pairs"],
                                  "vocab_size": setting["vocab_size"]}},
        "optim": {"batch_size": setting["batch_size"]},
        "budget": {"max_steps": 300},
    })
    rec = {
        "run_id": f"{task}__{router}__{'+'.join(ops)}__{cfg.digest()}__seed{seed}",
        "created": "2026-01-01T00:00:00+00:00", "task": task, "router": router,
        "operators": list(ops), "seed": seed, "preset": "cpu", "config": cfg.model_dump(),
        "config_hash": cfg.digest(), "flags": ["preset:cpu", *(flags or [])],
        "metrics": {"valid": {"accuracy": accuracy}, "test": {"accuracy": accuracy}},
        "cost": {"test": {"operators": list(ops), "attention_flop_fraction": fraction,
                          "mixer_flop_fraction": fraction, "mixer_flops_per_token": 1e5,
                          "model_flops_per_token": 3e5, "per_layer": []}},
        "training": {"steps": 300, "stop_reason": "max_steps", "train_tokens": 10_000,
                     "tokens_per_second": tokens_per_second, "history": []},
        "operator_options": op_options or {}, "parameters": 1000,
        "data": {"name": task, "seq_len": setting["seq_len"], "causal": True},
        "environment": {"hardware": "Test CPU (1 threads)", "device": "cpu",
                        "git_commit": "abc"},
        "task_metric": "accuracy", "higher_is_better": True,
    }
    if truth is not None:
        rec["telemetry"] = {"ground_truth": truth}
    RunRecord.model_validate(rec)
    return rec


def _truth(recall: float, share: float = 0.375) -> list[dict[str, float]]:
    precision = recall * 0.125 / share
    return [{"precision": precision, "recall": recall, "f1": 0.5, "routed_fraction": share,
             "needed_fraction": 0.125, "tokens": 100.0}] * 2


ROUTED = {"entropy": ([0.60, 0.62, 0.64], 0.2), "oracle": ([0.99, 1.0, 1.0], 1.0)}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    d = tmp_path / "results" / "runs"
    d.mkdir(parents=True)
    for (name, op, width), (accs, speed) in SINGLES.items():
        for seed, acc in enumerate(accs):
            write(d, record("single", (op,), seed, acc, setting=SETTINGS[name], d_model=width,
                            tokens_per_second=speed))
    for router, (accs, recall) in ROUTED.items():
        for seed, acc in enumerate(accs):
            write(d, record(router, ("linear", "attn"), seed, acc, setting=B, d_model=64,
                            truth=_truth(min(recall + 0.01 * seed, 1.0)), fraction=0.6,
                            flags=["oracle: reads the ground truth"] if router == "oracle"
                            else None))
    # one width only: not part of a sweep; a flagged row never is
    lone = {"seq_len": 126, "n_pairs": 16, "vocab_size": 128, "batch_size": 16}
    write(d, record("single", ("dct",), 0, 0.3, setting=lone, d_model=64))
    write(d, record("single", ("dct",), 0, 0.99, setting=A, d_model=32, flags=["leaky: x"]))
    write(d, record("single", ("dct",), 0, 0.99, setting=A, d_model=64, flags=["leaky: x"]))
    return d


def _sweeps(runs: Path) -> list[difficulty.Sweep]:
    loaded = collect(runs)
    board = build_task("mqar", loaded.groups["mqar"], loaded.headline["mqar"], [])
    return difficulty.find_sweeps(board)


def _board(runs: Path) -> lb.Board:
    base = runs.parent
    return lb.generate(runs, base / "LEADERBOARD.md", base / "plots", None)


def _ci(xs: list[float]) -> str:
    half = stats.t.ppf(0.975, len(xs) - 1) * sample_std(xs) / len(xs) ** 0.5
    return f"[{fixed(mean(xs) - half, 3)}, {fixed(mean(xs) + half, 3)}]"


def test_the_sweep_is_the_settings_run_at_several_widths(runs):
    (sweep,) = _sweeps(runs)
    assert [s.label for s in sweep.settings] == [
        "seq_len=30, n_pairs=4, vocab_size=32, batch_size=64",
        "seq_len=62, n_pairs=8, vocab_size=64, batch_size=32"]
    a, b = sweep.settings
    assert a.widths == b.widths == [32, 64]
    assert sweep.mixers == ["hyena", "linear"]  # flagged dct and the lone setting left out
    assert {(g.router, g.operators) for g in b.routed} == {
        ("entropy", ("linear", "attn")), ("oracle", ("linear", "attn"))}
    assert not a.routed


def test_a_sweep_of_one_setting_so_far_names_that_setting(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    for op in ("attn", "linear"):
        for width in (32, 64):
            write(d, record("single", (op,), 0, 0.9, setting=A, d_model=width))
    (sweep,) = _sweeps(d)
    assert [s.label for s in sweep.settings] == ["seq_len=30 (the only setting so far)"]


def test_state_is_what_each_operator_declares_and_time_is_per_token(runs):
    (sweep,) = _sweeps(runs)
    a = sweep.settings[0]
    state = {(p.operator, p.width): p.state for p in a.points}
    assert state["attn", 32] == 2 * 30 * 32  # the KV cache
    assert state["linear", 32] == 32 * (32 + 1)  # one head: d x (d + 1)
    assert state["hyena", 64] == 64 * 30 + 3 * 64 * 2
    time = {(p.operator, p.width): p.time for p in a.points}
    assert time["hyena", 64] == pytest.approx(1e6 / 20_000)


def test_stands_in_within_two_points_of_attentions_best_width(runs):
    (sweep,) = _sweeps(runs)
    a, b = sweep.settings
    assert b.reference.width == 64 and b.reference.mean == 1.0
    verdict = {(p.operator, p.width): difficulty.stands_in(p, b.reference) for p in b.cheap}
    assert verdict == {("linear", 32): False, ("linear", 64): False,  # 2.5 points below
                       ("hyena", 32): False, ("hyena", 64): True}  # exactly 2 points below
    by_state = difficulty.cheapest(a.cheap, a.reference, "state")
    by_time = difficulty.cheapest(a.cheap, a.reference, "time")
    assert (by_state.operator, by_state.width) == ("linear", 32)
    assert (by_time.operator, by_time.width) == ("hyena", 64)
    assert difficulty.cheapest(b.cheap, b.reference, "state").operator == "hyena"
    assert difficulty.cheapest([p for p in b.cheap if p.operator == "linear"], b.reference,
                               "state") is None


def test_the_table_names_the_cheapest_row_with_its_interval_or_none(runs):
    text = _board(runs).markdown
    start = text.index("### mqar (preset cpu): difficulty sweep")
    table = text[start:].split("\n\n")[2].splitlines()  # the heading, the intro, the table
    header = [c.strip() for c in table[0].split("|")[1:-1]]
    assert header == ["setting", "attention (best width)", "hyena", "linear",
                      "cheapest by state", "cheapest by time"]
    a, b = ([c.strip() for c in line.split("|")[1:-1]] for line in table[2:])
    linear_a, hyena_a = SINGLES["A", "linear", 32][0], SINGLES["A", "hyena", 64][0]
    assert a[1] == "1.000 [1.000, 1.000] at d_model 32"  # the smaller width on a tie
    assert a[3] == f"d_model 32: {fixed(mean(linear_a), 3)} {_ci(linear_a)}, state 1,056"
    assert a[4] == f"linear d_model 32: state 1,056, {fixed(mean(linear_a), 3)} {_ci(linear_a)}"
    assert a[5] == (f"hyena d_model 64: {1e6 / 20_000:.1f} µs/token, "
                    f"{fixed(mean(hyena_a), 3)} {_ci(hyena_a)}")
    linear_b = SINGLES["B", "linear", 64][0]
    assert b[1] == "1.000 [1.000, 1.000] at d_model 64"
    assert b[3] == f"none (best {fixed(mean(linear_b), 3)} {_ci(linear_b)} at d_model 64)"
    assert b[4].startswith("hyena d_model 64: state 4,352")
    assert "mqar_cpu_difficulty.png" in text


def test_routed_pairs_show_accuracy_fraction_and_ground_truth(runs):
    text = _board(runs).markdown
    start = text.index("Routed pairs at the sweep's settings")
    rows = [line for line in text[start:].splitlines() if line.startswith("| seq_len=62")]
    entropy = next(line for line in rows if line.split("|")[3].strip() == "entropy")
    oracle = next(line for line in rows if "oracle (upper bound)" in line)
    accs, recall = ROUTED["entropy"]
    cells = [c.strip() for c in entropy.split("|")]
    assert cells[6] == f"{fixed(mean(accs), 3)} ± {fixed(sample_std(accs), 3)}"
    assert cells[7] == "0.600"  # attention FLOP fraction
    assert cells[9] == mean_std([recall, recall + 0.01, recall + 0.02], 3)
    assert cells[11] == "attn 1.000; linear 0.975"  # each alone, at the same width
    assert "1.000" in oracle.split("|")[9]


def test_the_plot_has_a_panel_per_setting_and_is_drawn(runs, tmp_path):
    from harness.report import plots

    board = _board(runs)
    (spec,) = [s for s in board.specs if s["kind"] == "difficulty"]
    assert [a["key"] for a in spec["axes"]] == ["width", "state", "time"]
    assert len(spec["panels"]) == 2
    b = spec["panels"][1]
    assert b["threshold"] == pytest.approx(0.98)
    hyena = next(s for s in b["series"] if s["name"] == "hyena")
    assert [p["width"] for p in hyena["points"]] == [32, 64]
    spec["path"] = str(tmp_path / "out" / spec["file"])
    written, failures = plots.render_all([spec])
    assert not failures and written[0].stat().st_size > 0


def test_without_a_sweep_the_section_is_one_line_naming_the_command(tmp_path):
    d = tmp_path / "results" / "runs"
    d.mkdir(parents=True)
    for op in ("attn", "linear"):  # one width: no sweep
        write(d, record("single", (op,), 0, 0.9, setting=A, d_model=64))
    text = _board(d).markdown
    section = text[text.index(difficulty.TITLE):].split("\n## ")[0].strip().splitlines()
    assert len(section) == 3 and section[1] == ""
    assert difficulty.SWEEP_COMMAND in section[2]
    assert "sweeps/mqar_difficulty.toml" in difficulty.SWEEP_COMMAND



def test_an_operators_options_set_its_state_and_name_it_once(tmp_path):
    d = tmp_path / "results" / "runs"
    d.mkdir(parents=True)
    for width in (32, 64):
        write(d, record("single", ("attn",), 0, 1.0, setting=A, d_model=width))
        write(d, record("single", ("swa",), 0, 0.5, setting=A, d_model=width,
                        op_options={"swa": {"window": 8}}))
    (sweep,) = _sweeps(d)
    swa = {p.width: p for p in sweep.settings[0].cheap}
    assert swa[32].state == 2 * 8 * 32  # the window's keys and values, not the sequence's
    assert swa[32].mixer == "swa(window=8)" == swa[32].name
    text = _board(d).markdown
    assert "| swa(window=8) " in text and "none (best 0.500 (1 seed, no interval)" in text


def test_attention_and_dct_declare_the_state_the_board_says():
    from operators import OPERATORS

    attn, dct = (OPERATORS.get(op)(64, 2, 30, True) for op in ("attn", "dct"))
    assert attn.state_size(10) == 2 * 10 * 64 and attn.state_size(300) == 2 * 300 * 64
    assert dct.state_size(10) == 10 * 64 and dct.state_size(300) == 30 * 64  # max_len 30
    assert "2 x N x d" in difficulty.STATE_TEXT and "min(N, max_len) x d" in difficulty.STATE_TEXT
