"""Command line: ``python -m harness {run,check,list,bench,leaderboard,sweep,conformance}``.

The flags of ``run`` and ``check`` are generated from the option declarations
(harness/core/options.py) that also build the pydantic ``RunConfig`` (harness/core/config.py);
only flags given explicitly override the preset. Input errors print one line on stderr and exit
with status 2. Building the parser imports no torch, scipy or pydantic: ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli import texts
from harness.core.flags import add_flags, given_flags, overrides_from
from harness.core.malloc import keep_freed_memory
from harness.core.options import CHECK_IGNORES, CHECK_USES, OPTIONS, check_keys
from harness.core.paths import LOCAL_RUNS
from harness.core.presets import HARNESS_PRESETS, PRESETS
from harness.core.warning_lines import one_line_warnings
from registry import ChiaroscuroError, ConfigError

if TYPE_CHECKING:  # no pydantic or torch at import time: `--help` answers at once
    from harness.core.config import RunConfig
    from harness.core.records import RunRecord

EXIT_USAGE = 2


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples keep their line breaks; flags wrap as usual."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


# `check` builds the model from the options it uses; it also takes run's data flags, so that a
# run command turned into a check works, and says it reads no data
_CHECK_IGNORED = [o for o in OPTIONS if o.check == CHECK_IGNORES]
_HELP_WORDS = {"presets": " | ".join(PRESETS), "local_runs": LOCAL_RUNS}


def add_run_arguments(p: argparse.ArgumentParser, *, training: bool = True) -> None:
    """The flags of ``run`` (from the option declarations, harness/core/options.py); ``check``
    (training=False) takes those that shape the model and accepts the data flags."""
    g = p.add_argument_group("what to run")
    g.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                   help="TOML (or JSON) file shaped like the resolved config; flags override it")
    options = OPTIONS if training else [o for o in OPTIONS if o.check == CHECK_USES]
    groups = add_flags(p, options, presets=HARNESS_PRESETS, words=_HELP_WORDS,
                       groups={"what to run": g})
    if training:
        groups["where"].add_argument(
            "--resume", action="store_true", default=argparse.SUPPRESS,
            help="require a checkpoint to resume from (re-running resumes anyway)")
    else:
        g = p.add_argument_group("data files (accepted, so that a run command works as a "
                                 "check; check reads no data)")
        add_flags(p, _CHECK_IGNORED, presets=HARNESS_PRESETS, words=_HELP_WORDS,
                  groups={o.group: g for o in _CHECK_IGNORED})


def resolve_config(args: argparse.Namespace):
    from harness.core.config import deep_merge, load_config_file

    overrides = overrides_from(args, OPTIONS)
    if "config" in vars(args):
        from_file = load_config_file(args.config)
        check_keys(from_file, f"config file {args.config}")
        overrides = deep_merge(from_file, overrides)
    return resolve_overrides(overrides)


# -- one run, from explicit options to its record: the path `run` and the Python API
# (`harness.run`, harness/api.py) share, so both resolve and train alike


def resolve_overrides(overrides: dict[str, Any]) -> RunConfig:
    """The RunConfig of a nested dict of the options set explicitly (flags, a config file,
    the API's arguments): defaults < preset (``paper`` with a GPU, ``cpu`` without, unless one
    is given) < the task's own preset entry < the options given."""
    import torch

    from harness.core.config import resolve
    from tasks import TASKS

    overrides = dict(overrides)
    if "preset" not in overrides:
        overrides["preset"] = "paper" if torch.cuda.is_available() else "cpu"
    task_name = overrides.get("data", {}).get("task", "listops")
    task_presets = getattr(TASKS.get(task_name), "presets", {}) or {}
    return resolve(overrides, task_presets)


def start(cfg: RunConfig, log: Callable[[str], None] = print) -> tuple[RunRecord, Path]:
    """Train `cfg` and write its record; (record, its path). A folder option that names a file
    is refused first; the resolved config is printed; a finished run answers from its record,
    an interrupted one resumes."""
    from harness.cli import summary
    from harness.core.flags import refuse_file_as_folder
    from harness.core.options import OPTIONS, value_at
    from harness.runner.train import train

    for o in OPTIONS:
        if o.folder:  # before any work: a file there would fail late, with a traceback
            refuse_file_as_folder(o.flag_name, value_at(cfg, o.path))
    log(f"preset in force: {cfg.preset}")
    log(summary.config_block(cfg))
    return train(cfg, log=log)


def cmd_run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.cli import summary
    from harness.core.paths import run_paths

    cfg = resolve_config(args)
    if getattr(args, "dry_run", False):
        from harness.runner.plan import print_plan

        return print_plan(cfg)
    record_path, work_dir = run_paths(cfg)
    if getattr(args, "resume", False):
        ckpt = work_dir / "checkpoint.pt"
        if not ckpt.exists():
            raise ConfigError(f"--resume: no checkpoint at {ckpt}; run without --resume to "
                              f"start, or pass the --out of the run to resume")
    record, path = start(cfg)
    print(tabulate(summary.metric_rows(record) + summary.measured_rows(record),
                   headers=["split, size, checkpoint", "metric", "value"]))
    for note in (summary.subset_note(record), summary.best_note(record),
                 summary.fraction_explanation(record)):
        if note:
            print(textwrap.fill(note, width=100))
    baseline = summary.baseline_line(record)  # beats it only when an interval says so
    if baseline:
        print(textwrap.fill(baseline, width=100))
    for line in summary.ground_truth_lines(record):  # did the router find the ground truth?
        print(line)
    for flag in record.flags:
        if flag.startswith("leaky"):
            print(f"WARNING: {flag}")
    print("\n".join(summary.written_lines(path, work_dir)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.core.config import seq_len_of
    from harness.engine.data import build_task
    from harness.probes.checks import run_checks

    ignored = given_flags(args, _CHECK_IGNORED)
    dests = {o.dest for o in _CHECK_IGNORED}
    cfg = resolve_config(argparse.Namespace(**{k: v for k, v in vars(args).items()
                                               if k not in dests}))
    # the task's shape only (vocabulary, seq_len, causal): the checks perturb random inputs
    task = build_task(cfg, shape_only=True)
    seq_len = seq_len_of(cfg)
    print(f"checking router '{cfg.routing.router}' with {', '.join(cfg.routing.ops)} on "
          f"'{cfg.data.task}' ({'causal' if task.causal else 'non-causal'}, seq_len {seq_len}, "
          f"vocabulary {task.vocab_size}{' (nominal)' if task.vocab_is_nominal else ''}, "
          f"d_model {cfg.model.d_model}); no data is read")
    if ignored:
        print(f"accepted and not read (check reads no data): {', '.join(ignored)}")
    results = run_checks(cfg, task, seq_len, seed=cfg.seed)
    # the per-component conformance suite: dtypes, padding, query subsets, gradients
    from harness.probes.conformance.suite import conformance_check_results

    results += conformance_check_results(cfg, task.causal, seq_len=min(seq_len, 32),
                                         seed=cfg.seed)
    print(tabulate([r.row() for r in results], headers=["check", "result", "detail"]))
    failed = [r.name for r in results if not r.passed]
    unmeasured = sum(r.verdict == "n/a" for r in results)
    print(f"{len(results) - len(failed) - unmeasured} passed, {len(failed)} failed"
          + (f", {unmeasured} not applicable (n/a)" if unmeasured else ""))
    return 1 if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.cli.listing import describe_registries, option_lines, table_rows

    listing = describe_registries(args.patterns or None)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    for kind, entries in listing.items():
        if kind == "plugin_failures":
            continue  # already reported once, as a warning, when the registry was scanned
        if args.patterns and not entries:
            continue
        print(f"\n{kind}:")
        print(tabulate(table_rows(entries), headers="keys"))
    if args.patterns and option_lines(listing):
        print("\noptions:\n" + "\n".join(option_lines(listing)))
    print("\n" + textwrap.fill(texts.DESCRIPTION_SOURCE, width=100))
    return 0


# Subcommands that live in their own module, which exposes run(args) -> exit status. The
# arguments come from a light module (add_arguments(parser), DESCRIPTION, EPILOG) that imports
# nothing heavy, so that building the parser (and --help) never imports torch, scipy or
# pydantic. The work module is imported only when the command runs.
_MODULE_COMMANDS = [
    ("analyze", "harness.probes.analyze.command", "harness.probes.analyze.args",
     "spectral entropy vs attention distance per token and layer of a trained attn run"),
    ("bench", "harness.probes.bench.command", "harness.probes.bench.args",
     "microbenchmarks of operators and routed layers (times and ratios)"),
    ("leaderboard", "harness.report.leaderboard.board", "harness.report.leaderboard.args",
     "generate the leaderboard from run records (committed ones by default)"),
    ("sweep", "harness.sweep", "harness.sweep",
     "run a grid of routers x operator sets x tasks x seeds, resumably"),
    ("reproduce", "harness.report.claims.reproduce", "harness.report.claims.args",
     "run the runs a paper's claims need (skipping finished ones), write results/CLAIMS.md"),
    ("conformance", "harness.probes.conformance.cli", "harness.probes.conformance.args",
     "the conformance suite on operators and a router (built-in or plugin)"),
]


def _run_module(module: str):
    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(module).run(args)

    run.__qualname__ = f"run[{module}]"
    return run


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in argv: its first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Given argv, only the subcommand it names gets its module arguments (the
    others are listed with their help line): start-up imports one light module at most."""
    wanted = None if argv is None else _command_of(argv)
    parser = argparse.ArgumentParser(prog="python -m harness", description=texts.DESCRIPTION,
                                     epilog=texts.EPILOG, formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="train one combination and write its result record",
                       description=texts.RUN_DESCRIPTION, epilog=texts.RUN_EPILOG,
                       formatter_class=_Formatter)
    add_run_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print parameters, FLOPs per token, "
                   "memory and expected GPU-hours of the config, and exit without training")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="invariant checks on random inputs: causality, batch "
                       "independence, routed == dense, finite, FLOP counts",
                       description=texts.CHECK_DESCRIPTION, epilog=texts.CHECK_EPILOG,
                       formatter_class=_Formatter)
    add_run_arguments(p, training=False)
    p.set_defaults(func=cmd_check)
    for name, module, args_module, text in _MODULE_COMMANDS:
        if argv is None or name == wanted:
            light = importlib.import_module(args_module)
            p = sub.add_parser(name, help=text, description=getattr(light, "DESCRIPTION", text),
                               epilog=getattr(light, "EPILOG", None), formatter_class=_Formatter)
            light.add_arguments(p)
        else:
            p = sub.add_parser(name, help=text)
        p.set_defaults(func=_run_module(module))
    p = sub.add_parser("list", help="list operators, routers and tasks with their origin",
                       description=texts.LIST_DESCRIPTION, epilog=texts.LIST_EPILOG,
                       formatter_class=_Formatter)
    p.add_argument("patterns", nargs="*", metavar="PATTERN",
                   help="only names (or aliases) matching these fnmatch patterns, e.g. '*attn*'")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    # progress lines must reach a log file or pipe as they happen, not at exit
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    one_line_warnings()
    argv = sys.argv[1:] if argv is None else list(argv)
    keep_freed_memory()  # before any tensor: every step's temporaries are then reused
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # imported lazily: these modules are loaded only by the commands that raise them
        train = sys.modules.get("harness.runner.train")
        if train is not None and isinstance(exc, train.Interrupted):
            print(f"interrupted: {exc}", file=sys.stderr)
            return 130
        if isinstance(exc, ChiaroscuroError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and isinstance(exc, pydantic.ValidationError):
            from harness.core.config import describe

            print(f"error: invalid configuration: {describe(exc)}", file=sys.stderr)
            return EXIT_USAGE
        raise
