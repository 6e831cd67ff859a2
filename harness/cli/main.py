"""Command line: ``python -m harness {run,check,list,bench,leaderboard,sweep,conformance}``.

Flags map onto the pydantic ``RunConfig`` (harness/core/config.py); only flags given
explicitly override the preset. Input errors print one line on stderr and exit with status 2.
Building the parser imports no torch, scipy or pydantic: ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
import warnings
from typing import Any

from harness.cli import texts
from harness.core.malloc import keep_freed_memory
from harness.core.paths import LOCAL_RUNS
from harness.core.presets import HARNESS_PRESETS, PRESETS
from harness.core.values import parse_value
from registry import ChiaroscuroError, ConfigError

EXIT_USAGE = 2


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples keep their line breaks; flags wrap as usual."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _presets(section: str | None, field: str) -> str:
    """'smoke 1, cpu 2, paper 4': what each preset sets a field to (empty if none does)."""
    parts = []
    for name in PRESETS:
        values = HARNESS_PRESETS[name] if section is None else HARNESS_PRESETS[name].get(
            section, {})
        if field in values:
            parts.append(f"{name} {values[field]}")
    return ", ".join(parts)


def _default(value: Any, section: str | None = None, field: str | None = None) -> str:
    """'(default 2; presets: smoke 1, cpu 2, paper 4)'."""
    by_preset = _presets(section, field) if field else ""
    return f"(default {value}" + (f"; presets: {by_preset})" if by_preset else ")")


def _key_values(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{pair}'")
        out[key.strip()] = parse_value(value)
    return out


# flag -> (section, field); the value is taken as parsed by argparse
_RUN_FIELDS = {
    "preset": (None, "preset"),
    "seed": (None, "seed"),
    "device": (None, "device"),
    "threads": (None, "threads"),
    "out": (None, "out"),
    "work_dir": (None, "work_dir"),
    "tracker": (None, "tracker"),
    "allow_leaky": (None, "allow_leaky"),
    "layers": ("model", "layers"),
    "d_model": ("model", "d_model"),
    "heads": ("model", "heads"),
    "mlp_ratio": ("model", "mlp_ratio"),
    "dropout": ("model", "dropout"),
    "router": ("routing", "router"),
    "attn_fraction": ("routing", "attn_fraction"),
    "execution": ("routing", "execution"),
    "aux_weight": ("routing", "aux_weight"),
    "task": ("data", "task"),
    "seq_len": ("data", "seq_len"),
    "data_dir": ("data", "data_dir"),
    "cache_dir": ("data", "cache_dir"),
    "lr": ("optim", "lr"),
    "weight_decay": ("optim", "weight_decay"),
    "warmup_steps": ("optim", "warmup_steps"),
    "batch_size": ("optim", "batch_size"),
    "grad_clip": ("optim", "grad_clip"),
    "max_steps": ("budget", "max_steps"),
    "max_time": ("budget", "max_time"),
    "eval_every": ("budget", "eval_every"),
    "eval_batches": ("budget", "eval_batches"),
    "max_tokens": ("budget", "max_tokens"),
    "patience": ("budget", "patience"),
    "min_delta": ("budget", "min_delta"),
    "ckpt_every": ("budget", "ckpt_every"),
    "log_every": ("budget", "log_every"),
    "grad_accum": ("optim", "grad_accum"),
    "compile": (None, "compile"),
}
# task-specific shortcuts, passed as task options when given
_TASK_SHORTCUTS = ("train_file", "valid_file", "test_file", "tokenizer", "vocab_size",
                   "eval_stride")


def add_run_arguments(p: argparse.ArgumentParser, *, training: bool = True) -> None:
    """The flags of ``run``; ``check`` (training=False) takes only those that shape the model:
    it trains nothing and reads no data."""
    S = argparse.SUPPRESS  # absent flags stay absent, so the preset's values survive
    g = p.add_argument_group("what to run")
    g.add_argument("--config", default=S, metavar="FILE",
                   help="TOML (or JSON) file shaped like the resolved config; flags override it")
    g.add_argument("--router", default=S, help="router name, see `python -m harness list` "
                   "(default entropy)")
    g.add_argument("--ops", default=S, metavar="OP[,OP]",
                   help="comma-separated operator names (default dct,attn)")
    g.add_argument("--task", default=S, help="task name (default listops)")
    g.add_argument("--preset", default=S, metavar="NAME",
                   help=f"{' | '.join(PRESETS)}: model size and budget (default cpu without a "
                        f"GPU, paper with one); every flag overrides it")
    g.add_argument("--seed", type=int, default=S, help="(default 0)")
    if training:
        g.add_argument("--allow-leaky", action="store_true", default=S,
                       help="allow variants that see future tokens or other examples; the "
                            "record is marked leaky and never ranked above honest ones")
    g = p.add_argument_group("model")
    g.add_argument("--layers", type=int, default=S, metavar="N",
                   help="mixing layers " + _default(2, "model", "layers"))
    g.add_argument("--d-model", type=int, default=S, metavar="D",
                   help="width " + _default(128, "model", "d_model"))
    g.add_argument("--heads", type=int, default=S, metavar="H",
                   help="attention heads " + _default(4, "model", "heads"))
    g.add_argument("--mlp-ratio", type=float, default=S, metavar="R",
                   help="MLP width / d_model " + _default(4.0))
    g.add_argument("--dropout", type=float, default=S, metavar="P", help=_default(0.0))
    g.add_argument("--seq-len", type=int, default=S, metavar="N",
                   help="maximum sequence length (default: the task's preset entry, e.g. "
                        "listops cpu 128; else 256)")
    g = p.add_argument_group("routing")
    g.add_argument("--attn-fraction", type=float, default=S, metavar="F",
                   help="target share of tokens for the most expensive operator "
                        + _default(0.375))
    g.add_argument("--execution", choices=["routed", "dense"], default=S,
                   help="routed skips work for unrouted tokens; dense computes every operator "
                        "everywhere and selects, the reference (default routed)")
    g.add_argument("--aux-weight", type=float, default=S, metavar="W",
                   help="weight of the routers' auxiliary losses " + _default(0.01))
    g.add_argument("--router-option", action="append", metavar="KEY=VALUE",
                   help="a router option, value parsed as JSON; repeatable")
    g.add_argument("--op-option", action="append", metavar="OP.KEY=VALUE",
                   help="an operator option, e.g. dct.decay=2; repeatable")
    g = p.add_argument_group("data" if training else "task shape")
    g.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                   help="a task option, value parsed as JSON; repeatable")
    g.add_argument("--tokenizer", default=S, help="text tasks: bpe | word | bytes")
    g.add_argument("--vocab-size", type=int, default=S, metavar="V",
                   help="text tasks: tokenizer vocabulary (wikitext and imdb bpe: 8192)")
    if not training:
        return
    g.add_argument("--data-dir", default=S, metavar="DIR",
                   help="local copy of the task's files (default: generated, or the hub)")
    g.add_argument("--cache-dir", default=S, metavar="DIR",
                   help="tokenizers and encoded splits (default .cache/chiaroscuro)")
    for name in ("train_file", "valid_file", "test_file"):
        g.add_argument(f"--{name.replace('_', '-')}", default=S, metavar="FILE",
                       help=f"wikitext: the {name.split('_')[0]} split's text file")
    g.add_argument("--eval-stride", type=int, default=S, metavar="N",
                   help="wikitext: sliding-window stride at evaluation (default seq_len/2)")
    g = p.add_argument_group("optimisation and budget")
    g.add_argument("--lr", type=float, default=S, help="peak learning rate (AdamW) "
                   + _default(1e-3, "optim", "lr"))
    g.add_argument("--weight-decay", type=float, default=S, metavar="W", help=_default(0.01))
    g.add_argument("--warmup-steps", type=int, default=S, metavar="N",
                   help="linear warm-up, then cosine decay " + _default(50, "optim",
                                                                         "warmup_steps"))
    g.add_argument("--batch-size", type=int, default=S, metavar="B",
                   help="global batch (split over processes and --grad-accum) "
                        + _default(32, "optim", "batch_size"))
    g.add_argument("--grad-clip", type=float, default=S, metavar="C",
                   help="gradient norm clip, 0 disables " + _default(1.0))
    g.add_argument("--max-steps", type=int, default=S, metavar="N",
                   help="optimiser steps " + _default(1000, "budget", "max_steps"))
    g.add_argument("--max-time", type=float, default=S, metavar="SECONDS",
                   help="stop after this much training time (default none)")
    g.add_argument("--eval-every", type=int, default=S, metavar="N",
                   help="steps between evaluations on a validation subset "
                        + _default(200, "budget", "eval_every"))
    g.add_argument("--eval-batches", type=int, default=S, metavar="N",
                   help="validation batches per evaluation during training; the final "
                        "evaluation uses the full split " + _default("all", "budget",
                                                                      "eval_batches"))
    g.add_argument("--max-tokens", type=int, default=S, metavar="N",
                   help="stop after this many real training tokens (default none)")
    g.add_argument("--patience", type=int, default=S, metavar="N",
                   help="to the plateau: stop after this many evaluations without an "
                        "improvement by more than --min-delta (default none: --max-steps)")
    g.add_argument("--min-delta", type=float, default=S, metavar="R",
                   help="relative improvement of the validation metric that resets "
                        "--patience " + _default(0.0))
    g.add_argument("--ckpt-every", type=int, default=S, metavar="N",
                   help="steps between checkpoints " + _default(500))
    g.add_argument("--log-every", type=int, default=S, metavar="N",
                   help="steps between metrics.jsonl lines " + _default(10))
    g.add_argument("--grad-accum", type=int, default=S, metavar="N",
                   help="micro-batches per step " + _default(1))
    g.add_argument("--compile", action="store_true", default=S,
                   help="torch.compile the model (pays on GPU, not on CPU)")
    g = p.add_argument_group("where")
    g.add_argument("--device", default=S, help="auto | cpu | cuda | cuda:N (default auto: CUDA "
                   "if present)")
    g.add_argument("--threads", type=int, default=S, metavar="N",
                   help="CPU threads (default: torch's; presets: "
                        f"{_presets(None, 'threads')})")
    g.add_argument("--out", default=S, metavar="DIR",
                   help=f"folder for the result record, checkpoints and metrics.jsonl "
                        f"(default {LOCAL_RUNS}/, git-ignored; the committed records are "
                        f"results/runs); re-running on the same --out resumes")
    g.add_argument("--work-dir", default=S, metavar="DIR",
                   help="checkpoints and metrics.jsonl elsewhere (default: the --out folder)")
    g.add_argument("--tracker", choices=["tensorboard", "wandb"], default=S,
                   help="also log metrics to TensorBoard or W&B (optional extras: "
                        "pip install -e \".[tensorboard]\" or \".[wandb]\")")
    g.add_argument("--resume", action="store_true", default=S,
                   help="require a checkpoint to resume from (re-running resumes anyway)")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """A nested dict of the explicitly given flags, shaped like RunConfig."""
    given = vars(args)
    out: dict[str, Any] = {}
    for flag, (section, field) in _RUN_FIELDS.items():
        if flag in given:
            target = out if section is None else out.setdefault(section, {})
            target[field] = given[flag]
    if "ops" in given:
        out.setdefault("routing", {})["ops"] = given["ops"].split(",")
    task_options = _key_values(given.get("task_option"), "--task-option")
    for name in _TASK_SHORTCUTS:
        if name in given:
            task_options[name] = given[name]
    if task_options:
        out.setdefault("data", {})["task_options"] = task_options
    if given.get("router_option"):
        out.setdefault("routing", {})["router_options"] = _key_values(
            given["router_option"], "--router-option")
    op_options: dict[str, dict[str, Any]] = {}
    for key, value in _key_values(given.get("op_option"), "--op-option").items():
        op, dot, option = key.partition(".")
        if not dot:
            raise ConfigError(f"--op-option expects OP.KEY=VALUE, got '{key}={value}'")
        op_options.setdefault(op, {})[option] = value
    if op_options:
        out.setdefault("routing", {})["op_options"] = op_options
    return out


def resolve_config(args: argparse.Namespace):
    import torch

    from harness.core.config import deep_merge, load_config_file, resolve
    from tasks import TASKS

    overrides = overrides_from_args(args)
    if "config" in vars(args):
        overrides = deep_merge(load_config_file(args.config), overrides)
    if "preset" not in overrides:
        overrides["preset"] = "paper" if torch.cuda.is_available() else "cpu"
    task_name = overrides.get("data", {}).get("task", "listops")
    task_presets = getattr(TASKS.get(task_name), "presets", {}) or {}
    return resolve(overrides, task_presets)


def cmd_run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.cli import summary
    from harness.core.paths import run_paths
    from harness.runner.train import train

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
    print(f"preset in force: {cfg.preset}")
    print(summary.config_block(cfg))
    record, path = train(cfg)
    print(tabulate(summary.metric_rows(record) + summary.cost_rows(record),
                   headers=["split, size, checkpoint", "metric", "value"]))
    for note in (summary.subset_note(record), summary.best_note(record),
                 summary.fraction_explanation(record)):
        if note:
            print(textwrap.fill(note, width=100))
    test = record.metrics["test"]
    if "accuracy" in test and "majority_accuracy" in test:
        verdict = "beats" if test["accuracy"] > test["majority_accuracy"] else "does NOT beat"
        print(f"test accuracy {test['accuracy']:.4f} (final checkpoint) {verdict} the "
              f"majority-class baseline {test['majority_accuracy']:.4f}")
    from harness.engine.meters.groundtruth import report_lines

    for line in report_lines(record):  # tasks with ground truth: did the router find it?
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

    cfg = resolve_config(args)
    # the task's shape only (vocabulary, seq_len, causal): the checks perturb random inputs
    task = build_task(cfg, shape_only=True)
    seq_len = seq_len_of(cfg)
    print(f"checking router '{cfg.routing.router}' with {', '.join(cfg.routing.ops)} on "
          f"'{cfg.data.task}' ({'causal' if task.causal else 'non-causal'}, seq_len {seq_len}, "
          f"vocabulary {task.vocab_size}{' (nominal)' if task.vocab_is_nominal else ''}, "
          f"d_model {cfg.model.d_model}); no data is read")
    results = run_checks(cfg, task, seq_len, seed=cfg.seed)
    # the per-component conformance suite: dtypes, padding, query subsets, gradients
    from harness.probes.conformance.suite import conformance_check_results

    results += conformance_check_results(cfg, task.causal, seq_len=min(seq_len, 32),
                                         seed=cfg.seed)
    print(tabulate([r.row() for r in results], headers=["check", "result", "detail"]))
    failed = [r.name for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
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


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"  # for users: no source line of ours under it


def main(argv: list[str] | None = None) -> int:
    # progress lines must reach a log file or pipe as they happen, not at exit
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    warnings.formatwarning = _one_line_warning
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
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            print(f"error: invalid configuration: {problems}", file=sys.stderr)
            return EXIT_USAGE
        raise
