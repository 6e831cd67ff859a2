"""The board compares like with like: rows grouped by budget (training tokens, or to a plateau,
and preset), tuned learning rates, the no-mixing floor, commits and hardware said per row, the
parameters that differ as columns, and the ranked tables as CSV and JSON (issues 32, 37)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from test_leaderboard import args_for, make_record, table_rows, write

from harness.core import protocol
from harness.core.config import RunConfig
from harness.core.records import RunRecord
from harness.report.leaderboard import board as lb


def record(router: str, ops: tuple[str, ...], seed: int, value: float, *, fraction: float = 1.0,
           steps: int = 300, lr: float = 2e-3, patience: int | None = None,
           best: float | None = None, reached: bool = True, commit: str = "abc1234",
           dirty: bool = False, hardware: str = "Test CPU (1 threads)", speed: float = 1000.0,
           valid: float | None = None, attn_fraction: float = 0.375) -> dict:
    """A listops record (higher is better) with the knobs these tests turn; the config hash
    is recomputed so the record stays true."""
    rec = make_record("listops", router, ops, seed, value, fraction, telemetry=False,
                      attn_fraction=attn_fraction)
    config = rec["config"]
    config["budget"].update(max_steps=steps, patience=patience)
    config["optim"]["lr"] = lr
    cfg = RunConfig.model_validate(config)
    rec.update(config=cfg.model_dump(), config_hash=cfg.digest(), budget={},
               run_id=f"listops__{router}__{'+'.join(ops)}__{cfg.digest()}__seed{seed}")
    if valid is not None:
        rec["metrics"]["valid"]["accuracy"] = valid
    if patience is not None:
        rec["training"]["plateau"] = {"reached": reached, "patience": patience}
        rec["best_checkpoint"] = {"step": 100, "metrics": {
            "valid": {"accuracy": valid if valid is not None else value},
            "test": {"accuracy": best if best is not None else value}}}
    rec["environment"].update(git_commit=commit, git_dirty=dirty, hardware=hardware)
    rec["training"]["tokens_per_second"] = speed
    RunRecord.model_validate(rec)
    return rec


def board_of(tmp_path: Path, records: list[dict]) -> lb.Board:
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for rec in records:
        write(runs, rec)
    base = tmp_path / "results"
    return lb.generate(runs, base / "LEADERBOARD.md", base / "plots", None)


def sections(md: str) -> dict[str, list[dict[str, str]]]:
    """{budget heading: rows of its table}."""
    out = {}
    for part in md.split("### Budget: ")[1:]:
        out[part.splitlines()[0]] = table_rows("\n" + part, "\n")
    return out


def test_the_budget_is_tokens_or_to_plateau_with_its_cap():
    rec = RunRecord.model_validate(record("single", ("attn",), 0, 0.5, steps=300))
    # 300 steps x batch 32 x seq_len 128
    assert protocol.budget_of(rec) == protocol.Budget("tokens", 300 * 32 * 128, "cpu")
    assert protocol.budget_of(rec).label == "1.23M training tokens, preset cpu"
    rec = RunRecord.model_validate(record("single", ("attn",), 0, 0.5, patience=3))
    assert protocol.budget_of(rec).plateau
    assert protocol.budget_of(rec).label == "to plateau (cap 1.23M tokens), preset cpu"
    rec.config["budget"]["max_tokens"] = 1000  # a token cap is the smaller of the two
    assert protocol.budget_of(rec).tokens == 1000
    rec.config["data"]["seq_len"] = None  # left to the task: what the task recorded
    rec.config["budget"]["max_tokens"] = None
    assert protocol.budget_of(rec).tokens == 300 * 32 * 128
    full = protocol.budget_of(rec)
    rec.config["data"]["task_options"] = {"train_lines": 19415}  # data-limited: another budget
    limited = protocol.budget_of(rec)
    assert limited != full and limited.train_lines == 19415
    assert limited.label == "to plateau (cap 1.23M tokens), preset cpu, trained on the first " \
                            "19,415 lines"
    assert limited.slug == "plateau-1.23M-cpu-lines19415"


def test_rows_of_other_budgets_are_never_ranked_together(tmp_path):
    """A 1-seed row at 600 steps beats every 300-step row; it is ranked in its own budget,
    and the 300-step rows are compared with their 3-seed reference, not with it."""
    recs = [record("single", ("attn",), s, v) for s, v in enumerate([0.60, 0.61, 0.62])]
    recs += [record("entropy", ("dct", "attn"), s, v, fraction=0.375)
             for s, v in enumerate([0.50, 0.52, 0.51])]
    recs += [record("learned", ("dct", "attn"), 0, 0.70, fraction=0.375)]  # one seed
    recs += [record("entropy", ("dct", "attn"), 0, 0.90, fraction=0.375, steps=600)]
    md = board_of(tmp_path, recs).markdown
    tables = sections(md)
    assert list(tables) == ["1.23M training tokens, preset cpu",
                            "2.46M training tokens, preset cpu"]
    small, large = tables.values()
    assert [(r["rank"], r["router"]) for r in large] == [("1", "entropy")]
    assert large[0]["max_steps"] == "600" and small[0]["max_steps"] == "300"
    # the one-seed row is listed after the rows with several seeds, whatever its number
    assert [r["router"] for r in small] == ["single", "entropy", "learned"]
    verdicts = {r["router"]: r["vs best"] for r in small}
    assert verdicts["single"] == "best"
    assert verdicts["entropy"].startswith("behind (p=")  # 3 seeds vs 3 seeds: a test, not n/a
    assert verdicts["learned"] == "n/a (1 seed)"


def test_plateau_rows_rank_on_their_best_checkpoint_and_say_so(tmp_path):
    recs = [record("single", ("attn",), s, 0.40, patience=3, best=b, reached=s != 2)
            for s, b in enumerate([0.60, 0.62, 0.61])]
    md = board_of(tmp_path, recs).markdown
    (title, rows), = sections(md).items()
    assert title == "to plateau (cap 1.23M tokens), preset cpu"
    assert rows[0]["test accuracy"] == "0.6100 ± 0.0100"  # best-validation, not final 0.40
    assert "**best-validation checkpoint**" in md
    assert "plateau not reached in 1 of 3 runs" in rows[0]["marks"]


def test_a_tuning_family_is_one_row_at_the_rate_chosen_on_validation(tmp_path):
    """Three rates at seed 0; the chosen one (best validation, not best test) also ran seeds
    1 and 2: one row, its grid shown, its statistics over every seed at the chosen rate."""
    recs = [record("single", ("attn",), 0, 0.70, lr=1e-3, valid=0.50),
            record("single", ("attn",), 0, 0.60, lr=2e-3, valid=0.65),  # the best validation
            record("single", ("attn",), 0, 0.65, lr=4e-3, valid=0.55)]
    recs += [record("single", ("attn",), s, 0.62, lr=2e-3, valid=0.6) for s in (1, 2)]
    recs += [record("entropy", ("dct", "attn"), s, 0.5, fraction=0.375) for s in (0, 1)]
    board = board_of(tmp_path, recs)
    rows = sections(board.markdown)["1.23M training tokens, preset cpu"]
    assert [r["router"] for r in rows] == ["single", "entropy"]
    single, entropy = rows
    assert single["lr"] == "0.002 of 0.001, 0.002, 0.004" and single["seeds"] == "3"
    assert single["test accuracy"] == "0.6133 ± 0.0115"  # 0.60, 0.62, 0.62
    assert entropy["lr"] == "0.002, untuned"
    assert "chose lr 0.002 at seed 0" in board.markdown
    assert board.n_records == 7  # every rate's record is read; one row shows the family
    # the choice is the sweep's own rule, not a copy of it
    from harness.sweep import driver

    assert driver.validation_score is protocol.validation_score


def test_every_budget_carries_the_no_mixing_floor(tmp_path):
    recs = [record("single", ("identity",), s, v) for s, v in enumerate([0.50, 0.51, 0.49])]
    recs += [record("single", ("attn",), s, v) for s, v in enumerate([0.70, 0.71, 0.69])]
    recs += [record("entropy", ("dct", "attn"), s, v, fraction=0.375)
             for s, v in enumerate([0.52, 0.47, 0.50])]
    recs += [record("random", ("dct", "attn"), 0, 0.9, fraction=0.375)]  # one seed
    recs += [record("single", ("attn",), 0, 0.7, steps=600)]  # another budget, no floor
    md = board_of(tmp_path, recs).markdown
    small, large = sections(md).values()
    floor = {r["router"] + " " + r["operators"]: r for r in small}
    assert "no-mixing floor" in floor["single identity"]["marks"]
    assert floor["single identity"]["vs no mixing"] == "the floor"
    assert floor["single attn"]["vs no mixing"] == "better"
    assert floor["entropy dct+attn"]["vs no mixing"] == "no better than no mixing"
    assert floor["random dct+attn"]["vs no mixing"].startswith("no better than no mixing (not "
                                                               "shown: 1 seed)")
    assert large[0]["vs no mixing"] == "—"
    budget_600 = md.split("### Budget: 2.46M")[1]
    assert "No `single identity` row at this budget" in budget_600
    assert "No `single identity` row" not in md.split("### Budget: 1.23M")[1].split(
        "### Budget")[0]


def test_commits_dirty_trees_and_hardware_are_said_per_row(tmp_path):
    recs = [record("single", ("attn",), 0, 0.6, commit="aaaaaaa1", speed=1000.0),
            record("single", ("attn",), 1, 0.6, commit="bbbbbbb2", dirty=True, speed=3000.0),
            record("single", ("attn",), 2, 0.6, commit="bbbbbbb2", speed=5000.0,
                   hardware="Other CPU (2 threads)")]
    recs += [record("entropy", ("dct", "attn"), s, 0.6, fraction=0.375, commit="aaaaaaa1")
             for s in (0, 1)]
    md = board_of(tmp_path, recs).markdown
    rows = {r["router"]: r for r in table_rows(md, "### Budget")}
    assert rows["single"]["code"] == "2 commits (1 dirty)"
    assert rows["entropy"]["code"] == "aaaaaaa"
    # speeds per hardware and threads, never averaged across them
    assert rows["single"]["tokens/s (hardware, threads)"] == (
        "5,000 on Other CPU (2 threads); 2,000 on Test CPU (1 threads)")
    assert "the rows ran on 2 commits (aaaaaaa, bbbbbbb) and 1 run from a working tree" in md


def test_differing_parameters_are_columns_and_over_share_rows_are_marked_at_the_rank(tmp_path):
    recs = [record("entropy", ("dct", "attn"), s, 0.6, fraction=0.7, attn_fraction=0.25)
            for s in (0, 1)]
    recs += [record("entropy", ("dct", "attn"), s, 0.5, fraction=0.38) for s in (0, 1)]
    recs += [record("meta", ("dct", "attn"), s, 0.55, fraction=1.0) for s in (0, 1)]
    recs += [record("single", ("attn",), s, 0.4) for s in (0, 1)]
    md = board_of(tmp_path, recs).markdown
    rows = table_rows(md, "### Budget")
    by = {(r["router"], r["attn_fraction"]): r for r in rows}
    assert by[("entropy", "0.25")]["rank"] == "1 ▲"
    assert "attn FLOP frac 0.700 above the requested 0.250" in by[("entropy", "0.25")]["marks"]
    assert by[("meta", "0.375")]["rank"] == "2 ▲"
    assert "soft: attention on every token" in by[("meta", "0.375")]["marks"]
    assert by[("entropy", "0.375")]["rank"] == "3"  # 0.38 is within 0.02 of 0.375
    assert by[("single", "—")]["rank"] == "4"  # a single operator has no requested share


def test_the_ranked_tables_are_written_as_csv_and_json_and_checked(tmp_path, capsys):
    recs = [record("single", ("attn",), s, v) for s, v in enumerate([0.60, 0.62])]
    recs += [record("entropy", ("dct", "attn"), s, v, fraction=0.375)
             for s, v in enumerate([0.50, 0.52])]
    board_of(tmp_path, recs)
    runs = tmp_path / "results" / "runs"
    assert lb.run(args_for(runs, no_plots=True)) == 0
    base = tmp_path / "results"
    rows = list(csv.DictReader(io.StringIO((base / "leaderboard.csv").read_text())))
    assert [(r["rank"], r["router"], r["seeds"]) for r in rows] == [("1", "single", "2"),
                                                                      ("2", "entropy", "2")]
    assert float(rows[0]["test_mean"]) == 0.61 and rows[0]["budget_tokens"] == str(300 * 32 * 128)
    data = json.loads((base / "leaderboard.json").read_text())
    assert data["rows"][0]["test_by_seed"] == {"0": 0.6, "1": 0.62}
    assert data["rows"][1]["vs_best"].startswith("behind")
    assert lb.run(args_for(runs, check=True)) == 0
    (base / "leaderboard.csv").write_text("hand,edited\n")
    capsys.readouterr()
    assert lb.run(args_for(runs, check=True)) == 1
    assert "leaderboard.csv is stale" in capsys.readouterr().err


def test_each_row_meets_the_floor_that_ran_like_it(tmp_path):
    # two floors at one budget, differing in a column (here the width): a row is compared with
    # the floor at its own width, not with the one with the most seeds
    recs = [record("single", ("identity",), s, v) for s, v in enumerate([0.50, 0.51, 0.49])]
    wide = []
    for s, v in enumerate([0.80, 0.81]):
        rec = record("single", ("identity",), s, v)
        rec["config"]["model"]["d_model"] = 128
        wide.append(rec)
    attn_wide = []
    for s, v in enumerate([0.70, 0.71, 0.69]):
        rec = record("single", ("attn",), s, v)
        rec["config"]["model"]["d_model"] = 128
        attn_wide.append(rec)
    for rec in wide + attn_wide:  # keep the records true to their configs
        cfg = RunConfig.model_validate(rec["config"])
        rec.update(config=cfg.model_dump(), config_hash=cfg.digest(),
                   run_id=rec["run_id"].replace(rec["config_hash"], cfg.digest()))
    board = board_of(tmp_path, recs + wide + attn_wide)
    rows = {(r["operators"], r["seeds"]): r for r in json.loads(board.json)["rows"]}
    narrow, wide_floor, attn = rows[("identity", 3)], rows[("identity", 2)], rows[("attn", 3)]
    assert attn["no_mixing_floor"] == wide_floor["config_hash"]
    # 0.70 beats the narrow floor (0.50) but not the wide one (0.80): the like-with-like verdict
    assert attn["vs_no_mixing"] == "no better than no mixing"
    assert narrow["vs_no_mixing"] == wide_floor["vs_no_mixing"] == "the floor"
    table = {r["operators"] + " " + r["seeds"]: r for r in table_rows(board.markdown,
                                                                       "### Budget")}
    assert table["attn 3"]["vs no mixing"] == (
        f"no better than no mixing (vs `{wide_floor['config_hash']}`)")
    assert "no-mixing floor" in table["identity 2"]["marks"]
    assert f"The no-mixing floors are `{narrow['config_hash']}`" in board.markdown
