"""``python -m harness reproduce chiar-former``: run what the claims need, write CLAIMS.md.

    python -m harness reproduce chiar-former --preset cpu --seeds 0,1,2
    python -m harness reproduce chiar-former --check        # CI: is results/CLAIMS.md fresh?

The runs go through the sweep machinery (harness/sweep): a cell whose record exists is
skipped, an interrupted one resumes from its checkpoint. The page is then regenerated from
every record in ``--out`` that matches a claim's configuration.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from harness.core.records import load_records
from harness.report.claims.chiar_former import Claim, claims
from harness.report.claims.evidence import Evidence, routing_history
from harness.report.claims.paper import load_paper
from harness.report.claims.render import render
from harness.report.claims.runs import SPEC_BY_KEY
from harness.report.claims.sweep_runs import cells_for, run_missing
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
    keys: list[str] = []
    for claim in study:
        keys += [k for k in claim.needs if k not in keys]
    return keys


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


def page_text(args: argparse.Namespace) -> str:
    records, problems = load_records(Path(args.out))
    for problem in problems:
        print(f"warning: skipped {problem}", file=sys.stderr)
    return render(Evidence(records, args.preset, args.data_dir), study_claims(args),
                  command_of(args))


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


def plot_collapse(args: argparse.Namespace) -> None:
    from harness.engine.meters.collapse import plot_collapse as draw

    records, _ = load_records(Path(args.out))
    runs = Evidence(records, args.preset, args.data_dir).runs("listops-learned3")
    with_history = [r for r in runs.records if routing_history(r)]
    if with_history:
        r = with_history[0]
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        draw(routing_history(r), r.operators, Path(args.plots) / "collapse_listops_learned.png",
             title=f"{r.run_id}: share of tokens per operator")


def run(args: argparse.Namespace) -> int:
    if args.check:
        return check(args)
    seeds = parse_seeds(args.seeds)
    specs = [SPEC_BY_KEY[k] for k in needed_keys(study_claims(args))]
    cells = cells_for(specs, args.preset, seeds, out=args.out, work_dir=args.work_dir,
                      data_dir=args.data_dir)
    if args.dry_run:
        from harness.sweep import record_path_of

        for cell in cells:
            done = record_path_of(cell.overrides).exists()
            state = f"skip: {cell.skip_reason}" if cell.skip_reason else \
                "done" if done else "to run"
            print(f"{cell.label}: {state}")
        return 0
    ok = run_missing(cells, Path(args.work_dir) / "sweep-logs")
    atomic_write_text(Path(args.page), page_text(args))
    plot_collapse(args)
    print(f"wrote {args.page}")
    return 0 if ok else 1
