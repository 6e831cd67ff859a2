"""The board's cost axis: the Pareto front ranks on total mixing FLOPs per token (not the
attention-only fraction), both columns are shown, and the random control says what it
matched."""

from pathlib import Path

from test_leaderboard import make_record, write

from harness.report.leaderboard import board as lb
from harness.report.leaderboard.groups import collect
from harness.report.leaderboard.rows import build_task

# router, ops: attention FLOP fraction, mixing FLOPs per token, test accuracy per seed
ROWS = {
    ("single", ("attn",)): (1.0, 1.00e5, [0.600, 0.610]),
    ("entropy", ("dct", "attn")): (0.375, 0.60e5, [0.612, 0.618]),
    # the least attention of all, but rbf costs more than the attention it replaces
    ("entropy", ("dct", "rbf", "attn")): (0.25, 1.45e5, [0.605, 0.607]),
}


def _runs(tmp_path: Path) -> Path:
    d = tmp_path / "results" / "runs"
    d.mkdir(parents=True)
    for (router, ops), (fraction, flops, values) in ROWS.items():
        for seed, value in enumerate(values):
            rec = make_record("listops", router, ops, seed, value, fraction)
            rec["cost"]["test"]["mixer_flops_per_token"] = flops
            write(d, rec)
    return d


def test_the_pareto_front_ranks_on_total_mixing_flops(tmp_path):
    runs = _runs(tmp_path)
    loaded = collect(runs)
    board = build_task("listops", loaded.groups["listops"], loaded.headline["listops"], [])
    front = {key[1] for key in board.sections[0].pareto}  # key: router, operators, hash, preset
    assert front == {("dct", "attn")}  # dct+rbf+attn: more FLOPs and worse than dct+attn


def test_the_table_shows_both_cost_columns(tmp_path):
    runs = _runs(tmp_path)
    base = tmp_path / "results"
    md = lb.generate(runs, base / "LEADERBOARD.md", base / "plots", None).markdown
    header = next(line for line in md.splitlines() if line.startswith("| rank"))
    assert "attn FLOP frac" in header and "mixing FLOPs/token" in header
    row = next(line for line in md.splitlines() if "dct+rbf+attn" in line and "0.250" in line)
    assert "145,000" in row and "◆" not in row
    assert "60,000 ◆" in md


def test_a_superseded_record_is_flagged_on_the_board(tmp_path):
    """results/superseded.json names committed records whose numbers a later fix moved: their
    rows say so and are never ranked, until they are re-run."""
    import json

    runs = _runs(tmp_path)
    base = tmp_path / "results"
    stale = next(runs.glob("listops__entropy__dct+attn__*seed0.json"))
    run_id = json.loads(stale.read_text())["run_id"]
    reference = base / "reference.json"
    (base / "superseded.json").write_text(json.dumps({run_id: "made before fix X"}))
    md = lb.generate(runs, base / "LEADERBOARD.md", base / "plots", reference).markdown
    assert "superseded: made before fix X" in md
    row = next(line for line in md.splitlines() if "dct+attn" in line and "⚠" in line)
    assert "◆" not in row
    (base / "superseded.json").unlink()
    clean = lb.generate(runs, base / "LEADERBOARD.md", base / "plots", reference).markdown
    assert "superseded" not in clean
