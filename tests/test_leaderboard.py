"""The leaderboard: grouping over seeds, ranking (leaky never above honest), ties, reference
rows, the routing-vs-random comparison, malformed records, --check and determinism.

Records are synthetic but valid ``RunRecord`` dicts shaped like the ones train.py writes."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core import records
from harness.core.config import RunConfig
from harness.core.metrics import fixed
from harness.core.stats import mean
from harness.report.leaderboard import board as lb
from harness.report.leaderboard.args import add_arguments
from harness.report.leaderboard.groups import Group
from harness.report.leaderboard.rows import build_task

ROOT = Path(__file__).resolve().parents[1]

LISTOPS = {
    # router, ops, attention FLOP fraction, test accuracy per seed
    ("single", ("attn",)): (1.0, [0.600, 0.610, 0.620]),
    ("entropy", ("dct", "attn")): (0.375, [0.605, 0.615, 0.610]),
    ("random", ("dct", "attn")): (0.376, [0.500, 0.510, 0.490]),
    ("learned", ("dct", "attn")): (0.380, [0.550, 0.560, 0.570]),
    ("meta", ("dct", "attn")): (1.0, [0.580, 0.585, 0.590]),
    ("entropy", ("dct", "rbf", "attn")): (0.375, [0.590, 0.600]),
}


def make_record(task: str, router: str, ops: tuple[str, ...], seed: int, value: float,
                fraction: float, *, flags: list[str] | None = None, lm: bool = False,
                telemetry: bool = True, attn_fraction: float = 0.375) -> dict:
    cfg = RunConfig.model_validate({
        "preset": "cpu", "seed": seed, "device": "cpu",
        "model": {"layers": 2, "d_model": 64, "heads": 4},
        "routing": {"router": router, "ops": list(ops), "attn_fraction": attn_fraction},
        "data": {"task": task, "seq_len": 128},
        "budget": {"max_steps": 300, "eval_every": 100},
    })
    per_layer = []
    for layer in range(2):
        entry = {}
        for k, op in enumerate(ops):
            share = fraction if k == len(ops) - 1 else (1 - fraction) / max(len(ops) - 1, 1)
            entry[op] = {"token_fraction": share, "flops": 1.0, "flop_fraction_of_full": share}
        if router == "meta":
            entry["gate_mean"] = 0.3 + 0.01 * seed + 0.02 * layer
        per_layer.append(entry)
    if lm:
        metrics = {"valid": {"loss": math.log(value), "perplexity": value * 1.1},
                   "test": {"loss": math.log(value), "perplexity": value,
                            "word_perplexity": value * 1.6}}
    else:
        metrics = {"valid": {"accuracy": max(value - 0.01, 0.0)},
                   "test": {"accuracy": value, "majority_accuracy": 0.2}}
    tel = None
    if telemetry and len(ops) > 1:
        edges = [i / 4 for i in range(5)]
        tel = {"entropy_histogram": {"split": "test", "bin_edges": edges, "per_layer": [
            {op: [float(k + 1), 2.0, 3.0, float(seed)] for k, op in enumerate(ops)}] * 2}}
        if router == "meta":
            tel["gate_history"] = [{"step": s, "gate": [0.375 - s / 1000, 0.36]}
                                   for s in (100, 200, 300)]
    rec = {
        "run_id": f"{task}__{router}__{'+'.join(ops)}__{cfg.digest()}__seed{seed}",
        "created": f"2026-01-01T00:00:{seed:02d}+00:00",
        "task": task, "router": router, "operators": list(ops), "seed": seed, "preset": "cpu",
        "config": cfg.model_dump(), "config_hash": cfg.digest(),
        "flags": ["preset:cpu"] + (flags or []),
        "metrics": metrics,
        "cost": {"test": {"operators": list(ops), "attention_flop_fraction": fraction,
                          "mixer_flop_fraction": fraction, "mixer_flops_per_token": 1e5,
                          "model_flops_per_token": 3e5, "per_layer": per_layer},
                 "train": {}, "execution": "routed"},
        "training": {"steps": 300, "stop_reason": "max_steps", "train_tokens": 10000,
                     "tokens_per_second": 1000.0 + seed, "train_seconds": 10.0,
                     "wall_seconds": 12.0, "peak_memory_mb": 500.0, "history": []},
        "parameters": 123456 if len(ops) == 1 else 130000,
        "data": {"name": task, "seq_len": 128,
                 "split_hashes": {"train": "sha256:aa", "valid": "sha256:bb",
                                  "test": "sha256:cc"}},
        "environment": {"hardware": "Test CPU (1 threads)", "device": "cpu", "torch": "2.x",
                        "cuda": None, "package_version": "0.1.0", "git_commit": "abc",
                        "plugins": {}},
        "task_metric": "perplexity" if lm else "accuracy",
        "higher_is_better": not lm,
    }
    if tel:
        rec["telemetry"] = tel
    records.RunRecord.model_validate(rec)  # the fixture itself must be a valid record
    return rec


def write(directory: Path, rec: dict) -> Path:
    path = directory / records.record_filename(rec["run_id"])
    path.write_text(json.dumps(rec, indent=2))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    d = tmp_path / "results" / "runs"
    d.mkdir(parents=True)
    for (router, ops), (fraction, values) in LISTOPS.items():
        for seed, value in enumerate(values):
            write(d, make_record("listops", router, ops, seed, value, fraction))
    # the paper's top-k routing, leaky: the best number of all, but never ranked above honest
    for seed, value in enumerate([0.90, 0.91, 0.92]):
        write(d, make_record("listops", "entropy-topk", ("dct", "attn"), seed, value, 0.375,
                             flags=["leaky: router 'entropy-topk' is a leaky variant"]))
    for seed, value in enumerate([180.0, 182.0, 181.0]):
        write(d, make_record("wikitext2", "single", ("attn",), seed, value, 1.0, lm=True))
    for seed, value in enumerate([200.0, 205.0, 203.0]):
        write(d, make_record("wikitext2", "entropy", ("dct", "attn"), seed, value, 0.375, lm=True))
    (d / "broken.json").write_text("{ not json")
    missing = make_record("listops", "single", ("attn",), 7, 0.6, 1.0)
    del missing["task"]
    (d / "missing_task.json").write_text(json.dumps(missing))
    shutil.copy(ROOT / "results" / "reference.json", tmp_path / "results" / "reference.json")
    return d


def args_for(runs: Path, **extra) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = runs.parent
    argv = ["--runs", str(runs), "--out", str(base / "LEADERBOARD.md"),
            "--plots", str(base / "plots"), "--reference", str(base / "reference.json")]
    for k, v in extra.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    return parser.parse_args(argv)


def generate(runs: Path) -> lb.Board:
    base = runs.parent
    return lb.generate(runs, base / "LEADERBOARD.md", base / "plots", base / "reference.json")


def table_rows(md: str, section: str) -> list[dict[str, str]]:
    """Rows of the first table after a heading, as {header: stripped cell}."""
    lines = md.split(section, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split(" | ")]

    headers = cells(lines[start])
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(headers, cells(line), strict=True)))
    return rows


def test_groups_rank_and_mark_rows(runs):
    md = generate(runs).markdown
    rows = table_rows(md, "## listops")
    by_router = {(r["router"], r["operators"]): r for r in rows}
    # one row per configuration with the mean, sample std and seed count
    single = by_router[("single", "attn")]
    assert single["seeds"] == "3"
    assert single["test accuracy"] == "0.6100 ± 0.0100"
    assert by_router[("entropy", "dct+rbf+attn")]["seeds"] == "2"
    # ranked by accuracy, higher first (every row has several seeds); the cheaper of two equal
    # rows first: entropy 0.61 = single 0.61 > entropy+rbf 0.595 > meta > learned > random
    ranks = [(r["rank"], r["router"], r["operators"]) for r in rows]
    assert ranks[0] == ("1", "entropy", "dct+attn")
    assert [r[1] for r in ranks][:6] == ["entropy", "single", "entropy", "meta", "learned",
                                         "random"]
    # the leaky row has the best number and still comes after every honest row, unranked
    assert ranks[-1][1] == "entropy-topk" and ranks[-1][0] == "—"
    assert "⚠ leaky" in by_router[("entropy-topk", "dct+attn")]["marks"]
    assert "leaky: router 'entropy-topk' is a leaky variant" in md


def claims_section(md: str) -> list[str]:
    return md.split("## The paper's claims, against these records", 1)[1] \
        .split("\n## ", 1)[0].strip().splitlines()


def test_the_claims_section_is_the_claims_systems(runs):
    """Every claim of harness/report/claims is listed with the paper's number; a claim that
    names a measurement shows it for each row that has it (the MetaRouter's test gate, the rbf
    share); records that are none of the claims' runs give no verdict."""
    from harness.report.claims.chiar_former import claims
    from harness.report.claims.paper import load_paper

    study = claims(load_paper(runs.parent / "reference.json")[0])
    lines = claims_section(generate(runs).markdown)
    assert "none of them is on this board yet" in lines[0]
    heads = [line for line in lines if line.startswith("- **")]
    assert [h.split(".", 1)[0] for h in heads] == [f"- **{c.number}" for c in study]
    assert all(f"(paper: {c.paper})" in h for c, h in zip(study, heads))
    assert not any("scale: **" in h for h in heads)
    here = [line for line in lines if line.startswith("  - here:")]
    # meta: gate 0.3 + 0.01 seed + 0.02 layer, mean over 2 layers: 0.31, 0.32, 0.33 over seeds
    meta = next(h for h in here if "listops meta dct+attn" in h)
    assert meta.endswith("test gate 0.320 ± 0.010 (3 seeds)")
    rbf = next(h for h in here if "listops entropy dct+rbf+attn" in h)
    assert rbf.endswith(f"rbf share {fixed((1 - 0.375) / 2, 3)} (mean over layers and seeds)")
    assert sum("test gate" in h for h in here) == 1 and sum("rbf share" in h for h in here) == 1


def test_the_boards_verdicts_are_the_claims_pages():
    """On the committed records the board's verdicts are results/CLAIMS.md's, claim by claim:
    one claims system."""
    from harness.report.claims.chiar_former import claims
    from harness.report.claims.evidence import Evidence
    from harness.report.claims.paper import load_paper
    from harness.report.claims.render import judge

    reference = ROOT / "results" / "reference.json"
    study = claims(load_paper(reference)[0])
    md = lb.generate(ROOT / "results" / "runs", ROOT / "results" / "LEADERBOARD.md",
                     ROOT / "results" / "plots", reference).markdown
    heads = [line for line in claims_section(md) if line.startswith("- **")]
    ev = Evidence(records.load_records(ROOT / "results" / "runs")[0], "cpu")
    for claim, head in zip(study, heads, strict=True):
        assert f"cpu scale: **{judge(claim, ev, estimate=False).status}**" in head
        assert "paper scale" not in head  # no record of the paper setting is committed


def test_ties_with_the_best_row_are_marked(runs):
    rows = table_rows(generate(runs).markdown, "## listops")
    verdicts = {(r["router"], r["operators"]): r["vs best"] for r in rows}
    # entropy and single attention have the same mean: the cheaper one is listed first
    assert verdicts[("entropy", "dct+attn")] == "best"
    assert verdicts[("single", "attn")] == "tied (p=1.000)"
    assert verdicts[("random", "dct+attn")].startswith("behind")
    assert verdicts[("entropy", "dct+rbf+attn")].startswith(("tied", "behind"))
    assert verdicts[("entropy-topk", "dct+attn")] == "—"
    assert "Welch's two-sided t-test" in generate(runs).markdown


def test_reference_rows_are_labelled_with_their_source(runs):
    md = generate(runs).markdown
    rows = table_rows(md, "## wikitext103")
    assert len(rows) == 4 and all(r["rank"] == "ref" for r in rows)
    assert all("reported, not reproduced" in r["flags"] for r in rows)
    assert rows[0]["value"] == "36.54"
    assert "arXiv:2606.08327" in md
    assert "non-causal leak" in md  # the caveat sits next to the reference rows


def test_entropy_vs_random_comparison(runs):
    md = generate(runs).markdown
    listops = md.split("## listops", 1)[1].split("## wikitext2", 1)[0]
    assert "### Does routing beat chance?" in listops
    rows = table_rows(listops, "### Does routing beat chance?")
    first = rows[0]
    assert first["router"] == "entropy" and first["operators"] == "dct+attn"  # listed first
    assert first["verdict"] == "entropy better"
    assert first["matched on"] == "token share"  # what the control matched, said
    assert first["Δ [95% CI]"].startswith("+0.1100")  # 0.61 - 0.50
    learned = next(r for r in rows if r["router"] == "learned")
    assert learned["verdict"] == "learned better"
    # meta saves nothing (fraction 1.0): shown last, marked as not at equal cost
    assert rows[-1]["router"] == "meta"
    assert "not at equal cost: fractions differ by 0.624" in rows[-1]["verdict"]
    assert all("not at equal cost" not in r["verdict"] for r in rows[:-1])
    # dct+rbf+attn has no random control: the board asks for one
    assert "No `random` control" in listops


def test_lm_ranks_on_word_perplexity_lower_first(runs):
    md = generate(runs).markdown
    rows = table_rows(md, "## wikitext2")
    assert [r["router"] for r in rows] == ["single", "entropy"]
    assert rows[0]["test word PPL"] == "289.60 ± 1.60"  # 1.6 x token PPL in the fixture
    assert rows[0]["test token PPL"] == "181.00 ± 1.00"
    assert "test word PPL" in md and "test token PPL" in md


def test_malformed_records_are_reported_by_file_and_skipped(runs, capsys):
    board = generate(runs)
    assert any(p.startswith("broken.json: not valid JSON") for p in board.problems)
    assert any(p.startswith("missing_task.json:") and "task" in p for p in board.problems)
    assert "\n- broken.json: not valid JSON" in board.markdown
    assert lb.run(args_for(runs, no_plots=True)) == 0
    err = capsys.readouterr().err
    assert "broken.json" in err and "missing_task.json" in err
    assert lb.run(args_for(runs, no_plots=True, strict=True)) == 1


def test_check_detects_stale_board(runs, capsys):
    out = runs.parent / "LEADERBOARD.md"
    assert lb.run(args_for(runs, check=True)) == 1  # missing
    assert lb.run(args_for(runs, no_plots=True)) == 0
    assert lb.run(args_for(runs, check=True)) == 0
    assert not (runs.parent / "plots").exists()  # neither --check nor --no-plots draws
    # a new record makes the board stale
    extra = write(runs, make_record("listops", "single", ("attn",), 3, 0.63, 1.0))
    assert lb.run(args_for(runs, check=True)) == 1
    assert "stale" in capsys.readouterr().err
    extra.unlink()
    assert lb.run(args_for(runs, check=True)) == 0
    # so does a hand edit
    out.write_text(out.read_text().replace("0.6100 ± 0.0100", "0.7100 ± 0.0100"))
    assert lb.run(args_for(runs, check=True)) == 1


def test_generation_is_deterministic(runs, tmp_path):
    first = generate(runs).markdown
    assert generate(runs).markdown == first
    # independent of file order on disk and of the working directory's layout
    copy = tmp_path / "elsewhere" / "results" / "runs"
    copy.parent.mkdir(parents=True)
    for path in sorted(runs.iterdir(), reverse=True):
        shutil.copy(path, copy.parent.parent / path.name)
    copy.mkdir()
    for path in sorted((copy.parent.parent).glob("*.json"), reverse=True):
        path.rename(copy / path.name)
    shutil.copy(runs.parent / "reference.json", copy.parent / "reference.json")
    assert generate(copy).markdown == first
    assert "202" not in first.split("\n", 3)[2]  # no timestamps in the header


def test_old_records_without_optional_fields_still_count(runs):
    rec = make_record("listops", "single", ("attn",), 3, 0.64, 1.0, telemetry=False)
    for key in ("task_metric", "higher_is_better", "schema_version"):
        rec.pop(key, None)
    rec["schema_version"] = 1
    del rec["data"]["split_hashes"]
    del rec["cost"]["test"]["per_layer"]
    write(runs, rec)
    rows = table_rows(generate(runs).markdown, "## listops")
    single = next(r for r in rows if r["router"] == "single")
    assert single["seeds"] == "4"


def test_one_run_in_two_files_is_counted_once_or_is_a_conflict(runs):
    """The same run (configuration and seed) in two files: with the same numbers it counts
    once; with other numbers it is a conflict that names both files, and neither wins."""
    original = make_record("listops", "single", ("attn",), 0, 0.60, 1.0)
    write_as(runs, "copy.json", original)
    board = generate(runs)
    assert any(p.startswith("copy.json: same run as") for p in board.problems)
    single = next(r for r in table_rows(board.markdown, "## listops") if r["router"] == "single")
    assert single["seeds"] == "3" and single["test accuracy"] == "0.6100 ± 0.0100"

    forged = make_record("listops", "single", ("attn",), 0, 0.99, 1.0)
    forged["created"] = "2027-01-01T00:00:00+00:00"  # newer: it used to win
    write_as(runs, "copy.json", forged)
    board = generate(runs)
    conflict = [p for p in board.problems if "conflict: run" in p]
    assert len(conflict) == 2  # each file is named, with the other one
    assert any(p.startswith("copy.json:") and original["run_id"] in p for p in conflict)
    assert all("test accuracy 0.9900" in p and "test accuracy 0.6000" in p for p in conflict)
    single = next(r for r in table_rows(board.markdown, "## listops") if r["router"] == "single")
    assert single["seeds"] == "2"  # neither seed-0 record is on the board
    assert single["test accuracy"] == "0.6150 ± 0.0071"


def write_as(directory: Path, name: str, rec: dict) -> Path:
    path = directory / name
    path.write_text(json.dumps(rec, indent=2))
    return path


def test_plots_are_written_and_linked(tmp_path):
    pytest.importorskip("matplotlib")
    runs = tmp_path / "runs"
    runs.mkdir()
    for router, fraction in (("single", 1.0), ("entropy", 0.375), ("meta", 1.0)):
        ops = ("attn",) if router == "single" else ("dct", "attn")
        for seed in range(2):
            write(runs, make_record("listops", router, ops, seed, 0.6 + seed / 100, fraction))
    assert lb.run(args_for(runs)) == 0
    md = (tmp_path / "LEADERBOARD.md").read_text()
    names = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert names == ["listops_entropy_histograms.png", "listops_gate.png", "listops_pareto.png",
                     "listops_routing_fractions.png"]
    for name in names:
        assert f"](plots/{name})" in md
    # drawing the plots does not change the markdown
    assert lb.run(args_for(runs, check=True)) == 0
    # plots of configurations that are gone are removed; other files are left alone
    (tmp_path / "plots" / "notes.png").write_bytes(b"")
    for path in runs.glob("*meta*"):
        path.unlink()
    assert lb.run(args_for(runs, no_plots=True)) == 0
    assert (tmp_path / "plots" / "listops_gate.png").exists()  # --no-plots touches nothing
    assert lb.run(args_for(runs)) == 0
    names = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert names == ["listops_entropy_histograms.png", "listops_pareto.png",
                     "listops_routing_fractions.png", "notes.png"]


def test_unfinished_runs_are_reported_not_ranked(runs):
    failed = make_record("listops", "single", ("attn",), 5, 0.9, 1.0)
    failed.update(status="failed", error="TrainingDiverged: loss became nan\nmore", metrics={})
    failed["cost"]["test"] = None
    write(runs, failed)
    board = generate(runs)
    assert any("run not finished (status failed; TrainingDiverged: loss became nan)" in p
               for p in board.problems)
    single = next(r for r in table_rows(board.markdown, "## listops")
                  if r["router"] == "single")
    assert single["seeds"] == "3"


def test_sparse_records_never_crash_the_board(runs):
    sparse = make_record("imdb", "entropy", ("dct", "attn"), 0, 0.7, 0.375, telemetry=False)
    sparse.update(cost={}, training={}, environment={}, data={})
    sparse["metrics"] = {"test": {"accuracy": 0.7}}
    for key in ("task_metric", "higher_is_better"):
        del sparse[key]
    write(runs, sparse)
    board = generate(runs)
    rows = table_rows(board.markdown, "## imdb")
    assert rows[0]["router"] == "entropy" and rows[0]["test accuracy"] == "0.7000"  # no std
    assert rows[0]["vs best"] == "best"
    assert rows[0]["code"] == "unknown" and rows[0]["tokens/s (hardware, threads)"] == "—"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["entropy", "random", "learned", "single"]),
                          st.booleans(),
                          st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=4)),
                min_size=1, max_size=6),
       st.booleans())
def test_flagged_rows_never_rank_above_honest_ones(spec, higher):
    groups = []
    for i, (router, flagged, values) in enumerate(spec):
        g = Group("t", router, ("dct", "attn"), f"cfg{i:02d}")
        for seed, v in enumerate(values):
            rec = make_record("t", router, ("dct", "attn"), seed, v, 0.375, telemetry=False,
                              flags=["leaky: test"] if flagged else None)
            g.records.append(records.RunRecord.model_validate(rec))
        groups.append(g)
    board = build_task("t", groups, ("accuracy", higher), [])
    (section,) = board.sections  # one budget
    flags = [g.flagged for g in section.ranked]
    assert flags == sorted(flags)  # every honest row before every flagged one
    several = [g for g in section.honest if len(g.records) > 1]
    assert section.honest[:len(several)] == several  # then the one-seed rows
    for block in (several, section.honest[len(several):]):
        quality = [mean(g.values("test", "accuracy")) for g in block]
        assert quality == sorted(quality, reverse=higher)
    if section.honest:
        ref = section.reference
        assert section.vs_best[ref.key][0] == "best"
        assert len(ref.records) == max(len(g.records) for g in section.honest)
    assert all(g.key not in section.vs_best for g in section.ranked if g.flagged)


def test_a_records_notes_are_shown_with_its_row_and_do_not_unrank_it(tmp_path):
    d = tmp_path / "results" / "runs"
    d.mkdir(parents=True)
    shutil.copy(ROOT / "results" / "reference.json", tmp_path / "results" / "reference.json")
    note = "note: leak check passed at training step 5 (train mode) only as rounding (x)"
    for seed, value in enumerate([0.60, 0.61, 0.62]):
        write(d, make_record("listops", "single", ("attn",), seed, value, 1.0))
        write(d, make_record("listops", "entropy", ("dct", "attn"), seed, value + 0.01, 0.375,
                             flags=[note] if seed == 1 else None))
    md = generate(d).markdown
    by_router = {r["router"]: r for r in table_rows(md, "## listops")}
    assert by_router["entropy"]["rank"] == "1" and "⚠" not in by_router["entropy"]["marks"]
    assert ("- **Notes** from the records (informational, not warning flags):" in md
            and "entropy dct+attn: leak check passed at training step 5 (train mode) only as "
                "rounding (x) (seed 1)" in md)


def test_a_record_older_than_an_option_shows_the_default_it_ran_at(tmp_path):
    d = tmp_path / "results" / "runs"
    d.mkdir(parents=True)
    shutil.copy(ROOT / "results" / "reference.json", tmp_path / "results" / "reference.json")
    for seed, value in enumerate([0.60, 0.61]):
        old = make_record("listops", "single", ("attn",), seed, value, 1.0)
        del old["config"]["optim"]["schedule"]  # written before --schedule existed
        write(d, old)
        new = make_record("listops", "entropy", ("dct", "attn"), seed, value, 0.375)
        new["config"]["optim"]["schedule"] = "wsd"
        digest = RunConfig.model_validate(new["config"]).digest()
        new["run_id"] = new["run_id"].replace(new["config_hash"], digest)
        new["config_hash"] = digest
        write(d, new)
    rows = {r["router"]: r for r in table_rows(generate(d).markdown, "## listops")}
    assert rows["single"]["schedule"] == "cosine" and rows["entropy"]["schedule"] == "wsd"
