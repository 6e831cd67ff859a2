"""The board is safe to render and hard to fool (issue 38): names escaped at one place, config
hashes recomputed, routing-vs-chance linear in the rows, a file that cannot be read named and
skipped, an output folder that cannot be written one line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from test_board_protocol import board_of, record
from test_leaderboard import args_for, make_record, write

from harness.core.config import RunConfig
from harness.core.records import RunRecord
from harness.report.leaderboard import board as lb
from harness.report.leaderboard import rows as rows_mod
from harness.report.leaderboard.groups import Group
from harness.report.markdown import escape

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
LINK = "[click](http://evil.example/x)"


def _hostile(seed: int) -> dict:
    """A record whose names are markup: a task name that forges a heading through a newline,
    a router that is a script, an operator that is an image, a router option that is a link.
    Its config hash is true, so only escaping can keep it inert."""
    rec = make_record("t", "single", ("attn",), seed, 0.5 + seed / 100, 1.0, telemetry=False)
    config = rec["config"]
    config["data"]["task"] = "evil\n# forged heading"
    config["routing"].update(router=SCRIPT, ops=[IMG, "attn"], router_options={"x": LINK})
    cfg = RunConfig.model_validate(config)
    rec.update(task=cfg.data.task, router=SCRIPT, operators=[IMG, "attn"], config=cfg.model_dump(),
               config_hash=cfg.digest(), router_options={}, operator_options={},
               run_id=f"evil__{cfg.digest()}__seed{seed}",
               flags=["preset:cpu", f"note: {LINK}", f"leaky: {SCRIPT}"])
    rec["cost"]["test"]["operators"] = [IMG, "attn"]
    RunRecord.model_validate(rec)
    return rec


def test_names_from_records_never_render_as_markup(tmp_path):
    board = board_of(tmp_path, [_hostile(0), _hostile(1)])
    md = board.markdown
    assert "evil" in md and "script" in md  # the rows are there, as text
    assert "<script" not in md and "<img" not in md  # no raw HTML
    assert "](http://evil" not in md and "[click]" not in md  # no link
    assert not [line for line in md.splitlines() if line.startswith("# ") and "forged" in line]
    assert "## evil # forged heading" in md  # the newline is flattened inside the heading
    # every table row still has as many cells as its header (no pipe or newline broke one)
    for table in re.findall(r"(?:^\|.*\n)+", md, flags=re.M):
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in table.splitlines()}
        assert len(widths) == 1, table


def test_escape_is_inert_and_reads_the_same():
    assert escape(SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escape(LINK) == r"\[click\](http\://evil.example/x)"
    assert escape("a\nb\r\u2028c") == "a b c" and escape("# h") == r"\# h"
    assert escape("`x`") == r"\`x\`" and escape("a\\[") == r"a\\\["
    assert escape("entropy dct+attn (momentum=0.1)") == "entropy dct+attn (momentum=0.1)"


def test_a_record_whose_hash_is_not_its_configs_is_refused(tmp_path):
    """A record with another learning rate under an honest row's hash, and one with a made-up
    hash: both named, neither on the board."""
    honest = [make_record("listops", "single", ("attn",), s, 0.6, 1.0) for s in range(2)]
    edited = make_record("listops", "single", ("attn",), 2, 0.99, 1.0)
    edited["config"]["optim"]["lr"] = 0.5  # the hash still says the honest config
    made_up = make_record("listops", "entropy", ("dct", "attn"), 0, 0.95, 0.375)
    made_up["config_hash"] = "000000000000"
    board = board_of(tmp_path, [*honest, edited, made_up])
    assert board.n_records == 2
    problems = "\n".join(board.problems)
    assert f"config_hash {edited['config_hash']} is not the digest of its config" in problems
    assert "config_hash 000000000000 is not the digest" in problems
    assert "0.99" not in board.markdown.split("## Problems")[0]
    assert "000000000000" not in board.markdown.split("## Problems")[0]


def test_routing_vs_chance_runs_one_test_per_pair_whatever_the_input(monkeypatch):
    """Hundreds of routed rows and random controls of one configuration: one Welch test per
    routed row and kind of matching, not one per (row, control) pair."""
    calls = []
    real = rows_mod.welch

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(rows_mod, "welch", counting)
    groups = []
    for i in range(150):
        for router in ("entropy", "random"):
            g = Group("t", router, ("dct", "attn"), f"{router}{i:03d}")
            for seed in range(2):
                rec = make_record("t", router, ("dct", "attn"), seed, 0.5 + i / 1000, 0.375,
                                  telemetry=False)
                rec["router_options"] = {"k": i}  # 150 controls under one control key
                g.records.append(RunRecord.model_validate(rec))
            groups.append(g)
    chance, missing = rows_mod._chance(groups, "accuracy")
    assert len(chance) == 150 and not missing
    assert len(calls) == 150
    assert len({c.control.config_hash for c in chance}) == 1  # the same best control for all


def test_a_deeply_nested_json_file_is_named_and_skipped(tmp_path):
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    for seed in range(2):
        write(runs, make_record("listops", "single", ("attn",), seed, 0.6, 1.0))
    (runs / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    board = lb.generate(runs, tmp_path / "LB.md", tmp_path / "plots", None)
    assert board.n_records == 2
    assert any(p.startswith("deep.json: nested too deeply") for p in board.problems)


def test_an_output_folder_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, monkeypatch,
                                                                        capsys):
    from harness.cli.main import main

    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    write(runs, make_record("listops", "single", ("attn",), 0, 0.6, 1.0))
    out = tmp_path / "locked"
    out.mkdir()
    argv = ["leaderboard", "--runs", str(runs), "--out", str(out / "LB.md"), "--no-plots",
            "--reference", ""]
    if os.geteuid() != 0:  # root writes anywhere: there, the refusal is simulated below
        out.chmod(0o500)
        try:
            assert main(argv) == 2
        finally:
            out.chmod(0o700)
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: cannot write")

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(lb, "atomic_write_text", refuse)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: cannot write {out / 'LB.md'}: Permission denied; pass --out "
                       f"(and --plots) naming a folder you can write")
    assert not any("Traceback" in line for line in err)


def test_the_conflict_and_hash_problems_reach_the_strict_exit(tmp_path):
    rec = record("single", ("attn",), 0, 0.6)
    other = dict(rec, metrics={"valid": {"accuracy": 0.1}, "test": {"accuracy": 0.2}})
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    write(runs, rec)
    (runs / "copy.json").write_text(json.dumps(other))
    assert lb.run(args_for(runs, no_plots=True, strict=True)) == 1
    assert "conflict: run" in Path(runs.parent / "LEADERBOARD.md").read_text()


@pytest.mark.parametrize("accuracy,verdict", [
    (0.5006, "inside the noise"),  # issue 37: 25,000 balanced reviews, stated as a win
    (0.5200, "beats it"),
    (0.4800, "does NOT beat it"),
])
def test_the_run_summary_beats_the_baseline_only_when_an_interval_says_so(accuracy, verdict):
    from harness.cli.summary import baseline_line

    rec = make_record("imdb", "single", ("attn",), 0, accuracy, 1.0)
    rec["metrics"]["test"].update(majority_accuracy=0.5, examples=25000.0)
    line = baseline_line(RunRecord.model_validate(rec))
    assert verdict in line and "over 25,000 test examples" in line
    assert (": beats it" in line) == (verdict == "beats it")
