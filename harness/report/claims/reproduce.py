"""``python -m harness reproduce chiar-former``: run what the claims need, write CLAIMS.md.

    python -m harness reproduce chiar-former --preset cpu --seeds 0,1,2 --jobs 2
    python -m harness reproduce chiar-former --check        # CI: is results/CLAIMS.md fresh?
    python -m harness reproduce chiar-former --render-only  # the page and plots, no runs

The runs go through the sweep machinery (harness/sweep), tuned families first (their
learning-rate grid at one seed, then the chosen value at the others; sweep_runs.py): a cell
whose record exists is skipped, an interrupted one resumes from its checkpoint. The page is
then regenerated from every record in ``--out`` that matches a claim's configuration, and the
budget curves drawn.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from harness.core.records import load_records
from harness.report.claims.chiar_former import Claim, claims
from harness.report.claims.evidence import Evidence, routing_history
from harness.report.claims.gates import is_lm
from harness.report.claims.paper import load_paper
from harness.report.claims.render import render
from harness.report.claims.runs import DATA_DIR_FAMILIES, FLOOR, SPEC_BY_KEY, RunSpec
from registry import ConfigError, DataError
from registry.files import atomic_write_text


def study_claims(args: argparse.Namespace) -> list[Claim]:
    """The claims, with the paper's numbers from ``--reference``."""
    path = Path(args.reference)
    if not path.is_file():
        raise DataError(f"--reference {path} does not exist: the claims read the paper's "
                        f"numbers from it (restore results/reference.json from git)")
    paper, problems = load_paper(path)
    if problems:
        raise DataError(problems[0])
    return claims(paper)


def needed_keys(study: list[Claim]) -> list[str]:
    """Every run the claims read, the no-mixing floor included where a claim is gated by it."""
    keys: dict[str, None] = {}
    for claim in study:
        floor = FLOOR if is_lm(claim.judged_on) else ()
        keys.update(dict.fromkeys((*claim.needs, *floor)))
    return list(keys)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise ConfigError(f"--seeds expects comma-separated integers, e.g. 0,1,2 (got '{text}')")
    return seeds


def command_of(args: argparse.Namespace) -> str:
    """The command the page names as its generator (the committed one: no paths of ours)."""
    return f"python -m harness reproduce {args.study} --preset {args.preset}"


def check_data_dir(args: argparse.Namespace) -> None:
    if args.data_dir is not None and not DATA_DIR_FAMILIES[args.preset]:
        raise ConfigError(f"--data-dir is for --preset paper: the {args.preset} setting names "
                          f"its data (../shared/data/...) in each cell's configuration hash; "
                          f"drop --data-dir and run from a checkout next to shared/")


def evidence_of(args: argparse.Namespace) -> Evidence:
    records, problems = load_records(Path(args.out))
    for problem in problems:
        print(f"warning: skipped {problem}", file=sys.stderr)
    return Evidence(records, args.preset, args.data_dir)


def page_text(args: argparse.Namespace, ev: Evidence | None = None) -> str:
    return render(ev or evidence_of(args), study_claims(args), command_of(args))


def check(args: argparse.Namespace) -> int:
    page = Path(args.page)
    fresh = page_text(args)
    old = page.read_text() if page.exists() else ""
    if old == fresh:
        print(f"{page} is up to date")
        return 0
    diff = difflib.unified_diff(old.splitlines(), fresh.splitlines(), str(page), "regenerated",
                                lineterm="", n=1)
    print("\n".join(list(diff)[:40]))
    print(f"{page} is stale: run `{command_of(args)}` (it runs only missing cells) and commit "
          f"the page", file=sys.stderr)
    return 1


def plot_collapse(ev: Evidence, plots: Path) -> None:
    from harness.engine.meters.collapse import plot_collapse as draw

    runs = ev.runs("listops-learned3")
    with_history = [r for r in runs.records if routing_history(r)]
    if with_history:
        r = with_history[0]
        plots.mkdir(parents=True, exist_ok=True)
        draw(routing_history(r), r.operators, plots / "collapse_listops_learned.png",
             title=f"{r.run_id}: share of tokens per operator")


def write_page(args: argparse.Namespace) -> None:
    """The page and the plots from the records in --out."""
    from harness.report.claims.curves import draw

    ev = evidence_of(args)
    atomic_write_text(Path(args.page), page_text(args, ev))
    plot_collapse(ev, Path(args.plots))
    for path in draw(ev, Path(args.plots)):
        print(f"wrote {path}")
    print(f"wrote {args.page}")


def dry_run(args: argparse.Namespace, seeds: list[int], specs: list[RunSpec]) -> int:
    """The cells of both stages, done or to run (stage 2 lists a tuned spec once its grid has
    chosen)."""
    from harness.report.claims.sweep_runs import evidence, stage1, stage2
    from harness.sweep import record_path_of

    where = {"out": args.out, "work_dir": args.work_dir, "data_dir": args.data_dir}
    ev = evidence(args.out, args.preset, args.data_dir)
    waiting: list[str] = []
    first = stage1(specs, args.preset, seeds, ev, **where)
    second = stage2(specs, args.preset, seeds, ev, waiting.append, **where)
    wait = (f", then the other seeds of {len(waiting)} tuned configurations once their grid "
            f"has chosen" if waiting else "")
    for title, cells, note in (("stage 1, tuning", first, ""), ("stage 2", second, wait)):
        print(f"{title}: {len(cells)} cells{note}")
        for cell in cells:
            state = f"skip: {cell.skip_reason}" if cell.skip_reason else \
                "done" if record_path_of(cell.overrides).exists() else "to run"
            lr = cell.overrides.get("optim", {}).get("lr")
            print(f"  {cell.label}{f' lr {lr:g}' if lr is not None else ''}: {state}")
    return 0


def run(args: argparse.Namespace) -> int:
    check_data_dir(args)
    if args.check:
        return check(args)
    if args.render_only:
        write_page(args)
        return 0
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    seeds = parse_seeds(args.seeds)
    specs = [SPEC_BY_KEY[k] for k in needed_keys(study_claims(args))]
    if args.dry_run:
        return dry_run(args, seeds, specs)
    from harness.report.claims.sweep_runs import reproduce_runs

    ok = reproduce_runs(specs, args.preset, seeds, out=args.out, work_dir=args.work_dir,
                        data_dir=args.data_dir, jobs=args.jobs)
    write_page(args)
    return 0 if ok else 1
