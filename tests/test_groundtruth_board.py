"""The board's ground-truth section: numbers re-derivable from the records, oracle marked as
an upper bound and never ranked, nothing shown for records without ground truth."""

from __future__ import annotations

from pathlib import Path

from test_leaderboard import make_record, write

from harness.core.metrics import fixed
from harness.core.stats import mean
from harness.report.leaderboard import board as lb
from harness.report.markdown import mean_std

ORACLE_FLAG = "oracle: routes by the task's ground truth (privileged information; an upper bound)"
# router: (attention share, recall per seed, accuracy per seed)
ROWS = {
    "entropy": (0.375, [0.02, 0.03, 0.01], [0.55, 0.56, 0.57]),
    "random": (0.375, [0.37, 0.38, 0.36], [0.70, 0.72, 0.71]),
    "oracle": (0.375, [1.0, 1.0, 1.0], [0.99, 1.0, 0.98]),
}


def _truth(share: float, recall: float) -> list[dict[str, float]]:
    needed = 0.125
    precision = recall * needed / share
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return [{"precision": precision, "recall": recall, "f1": f1, "routed_fraction": share,
             "needed_fraction": needed, "tokens": 1000.0}] * 2


def _board(tmp_path: Path, with_truth: bool = True) -> str:
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    for router, (share, recalls, accs) in ROWS.items():
        for seed, (recall, acc) in enumerate(zip(recalls, accs)):
            rec = make_record("mqar", router, ("dct", "attn"), seed, acc, share,
                              flags=[ORACLE_FLAG] if router == "oracle" else None)
            if with_truth:
                rec["telemetry"]["ground_truth"] = _truth(share, recall)
            write(runs, rec)
    for seed, acc in enumerate([1.0, 0.99, 1.0]):
        write(runs, make_record("mqar", "single", ("attn",), seed, acc, 1.0))
    out = tmp_path / "results" / "LEADERBOARD.md"
    return lb.generate(runs, out, tmp_path / "results" / "plots", None).markdown


def test_section_numbers_come_from_the_records(tmp_path):
    text = _board(tmp_path)
    assert "### mqar: routing against ground truth" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| ") and "dct+attn" in line and "upper" in line
            or line.startswith(("| entropy ", "| random "))}
    for router, (_, recalls, accs) in ROWS.items():
        key = "oracle (upper bound)" if router == "oracle" else router
        line = next(v for k, v in rows.items() if k == key)
        assert mean_std(recalls, 3) in line
        assert mean_std(accs, 3) in line
    assert "oracle: upper bound" in rows["oracle (upper bound)"]
    # the closing note states entropy vs random vs oracle with the same numbers
    note = next(line for line in text.splitlines() if line.startswith("**What it says"))
    assert f"recall {fixed(mean(ROWS['entropy'][1]), 3)}" in note
    assert fixed(mean(ROWS["random"][1]), 3) in note
    assert "upper bound" in note
    assert "mqar_accuracy_vs_fraction.png" in text


def test_oracle_is_never_ranked_as_a_real_router(tmp_path):
    text = _board(tmp_path)
    main = [line for line in text.splitlines()
            if line.startswith("| ") and "| oracle " in line and "Test CPU" in line]
    assert len(main) == 1 and main[0].split("|")[1].strip() == "—"  # unranked
    assert "⚠ flagged" in main[0]


def test_no_section_without_ground_truth(tmp_path):
    assert "routing against ground truth" not in _board(tmp_path, with_truth=False)
