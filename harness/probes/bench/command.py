"""``python -m harness bench``: microbenchmarks of operators and routed attention, and of a
training step of the harness against a bare reference transformer.

What is timed, on the current device (``--device``), for each ``--seq-lens`` N:

- every operator of ``--ops`` on x (B, N, D): ``op(x, ctx)``;
- routed attention: the code path routed training runs, ``MixingLayer._run_on_subset`` (gather
  the routed queries per example, the operator with ``ctx.query_positions``, weight, scatter
  back), on a fixed random subset of ``fraction`` of the tokens of each example, for each of
  ``--fractions``; fraction 1 routes every token (ratio ~1: what gather + scatter cost);

each in two modes: ``fwd`` (under ``torch.no_grad``) and ``fwd+bwd`` (backward into the
parameters and into x, from a fixed random output gradient).

Ratios are measured in the same run: after warm-up, every repeat times every case once (in a
shuffled order), and a case's ratio is the median over repeats of (its time / the time of full
attention at the same N *in the same repeat*), so machine noise hits numerator and denominator
alike. Times are wall-clock, on ``torch.utils.benchmark``'s clock (``perf_counter`` after
synchronising the accelerator); the table shows the median and the spread of the repeats (IQR /
median of the per-repeat ratios), the JSON also the minimum and every repeat. A target whose
repeats disagree too much to judge says so instead of PASS or FAIL (``timing``).

The training-step comparison times one optimizer step (forward, loss, backward, gradient
clipping, AdamW) of a bare pre-norm transformer written here with no harness code (embedding,
blocks of LN -> qkv -> SDPA -> proj and LN -> MLP, head) against the harness's own step
(``harness.engine.model.Model`` with router ``single`` and operator ``attn``, the loop body of
``harness.runner.train.train``) of the same shape, on a classification and a language-modelling
task.

Output: a table (absolute ms and ratios), a "targets" section (PASS/FAIL, for humans; the exit
status stays 0 unless something crashed), and ``<name>.json`` + ``<name>.png`` under ``--out``,
written atomically.

Modules: ``args`` (the declared settings: flags, defaults, the --quick preset), ``settings``
(their validated model, the targets, the resolved settings), ``timing`` (the clock, paired
ratios and their spread, the busy-CPU warning), ``microbench`` (operator and routed-layer cases),
``train_step`` (harness step vs bare reference), ``end_to_end`` (training step of single
attention vs routed combinations over N, its crossover; ``end_to_end_report``: its table,
targets and plot), ``zoo`` (each cheap mixer and its routed pair vs full attention over N;
``zoo_report``: its table, targets and plot), ``report`` (targets, tables, PNG, JSON). Each
measurement is a ``Section`` of ``SECTIONS``: to add one, append it there.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.probes.bench.args import add_arguments

from .end_to_end import run_end_to_end
from .end_to_end_report import end_to_end_targets, plot_end_to_end, print_end_to_end
from .microbench import Case, Microbench, build_cases, measure, run_microbench, summarise
from .report import (
    RATIO_DEFINITION,
    machine_label,
    microbench_targets,
    plot,
    plot_title,
    print_microbench,
    print_targets,
    print_train_step,
    train_step_targets,
    write_outputs,
)
from .settings import (
    FULL,
    MODES,
    TARGET_DCT,
    TARGET_DCT_SCALING,
    TARGET_ROUTED,
    TARGET_TRAIN,
    BenchConfig,
    Settings,
    bench_config,
    resolve_settings,
)
from .timing import load_average_warning, paired_ratio
from .train_step import BareTransformer, run_train_step, train_step_comparison
from .zoo import run_zoo
from .zoo_report import plot_zoo, print_zoo, zoo_targets

__all__ = [
    "FULL", "MODES", "SECTIONS", "TARGET_DCT", "TARGET_DCT_SCALING", "TARGET_ROUTED",
    "TARGET_TRAIN", "BareTransformer", "BenchConfig", "Case", "Microbench", "Section",
    "Settings", "add_arguments", "bench_config", "build_cases", "measure", "paired_ratio",
    "plot", "resolve_settings", "run", "summarise", "train_step_comparison",
]


@dataclass(frozen=True)
class Section:
    """One measurement of the bench, run in the order of SECTIONS."""

    key: str  # where its result goes in the JSON
    measure: Callable[[Settings], Any]  # its result; None when the settings switch it off
    to_json: Callable[[Any], Any]
    print_table: Callable[[Any, Settings, dict[str, Any]], None]
    targets: Callable[[Any, Settings], list[dict[str, Any]]]
    # its own PNG from its result and the machine label: <stem>-<key, dashed>.png, named in
    # the JSON as <key>_plot
    plot: Callable[[Any, str], bytes] | None = None


SECTIONS: list[Section] = [
    Section("results", run_microbench, lambda m: m.rows, print_microbench, microbench_targets),
    Section("train_step", run_train_step, lambda t: t, print_train_step, train_step_targets),
    Section("end_to_end", run_end_to_end, lambda e: e, print_end_to_end, end_to_end_targets,
            plot_end_to_end),
    Section("zoo", run_zoo, lambda z: z, print_zoo, zoo_targets, plot_zoo),
]


# -- entry point -------------------------------------------------------------------------------


def _payload(args: argparse.Namespace, s: Settings, env: dict[str, Any],
             measured: dict[str, Any], targets: list[dict[str, Any]], t0: float,
             stem: str) -> dict[str, Any]:
    from harness.engine import provenance

    settings = {k: (str(v) if isinstance(v, torch.device) else
                    dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
                for k, v in vars(s).items()}
    payload: dict[str, Any] = {
        "kind": "bench",
        "created": provenance.now(),
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "settings": settings,
        "environment": env,
        "ratio_definition": RATIO_DEFINITION,
    }
    for section in SECTIONS:
        result = measured[section.key]
        payload[section.key] = None if result is None else section.to_json(result)
    payload.update({"targets": targets, "wall_seconds": time.perf_counter() - t0,
                    "plot": f"{stem}.png"})
    return payload


def run(args: argparse.Namespace) -> int:
    from harness.core.flags import refuse_file_as_folder
    from harness.engine import provenance
    from registry import files

    config = bench_config(args)
    refuse_file_as_folder("--out", config.out)  # before minutes of timing, not after
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    s = resolve_settings(config)
    torch.manual_seed(s.seed)
    env = provenance.environment(s.device)
    env["threads"] = torch.get_num_threads()
    env["load_average"] = load_average_warning(s.device)
    t0 = time.perf_counter()
    measured = {section.key: section.measure(s) for section in SECTIONS}
    targets = [t for section in SECTIONS for t in section.targets(measured[section.key], s)]
    for section in SECTIONS:
        if measured[section.key] is not None:
            section.print_table(measured[section.key], s, env)
    print_targets(targets)

    stem = config.name or f"bench-{s.device.type}{'-quick' if config.quick else ''}"
    payload = _payload(args, s, env, measured, targets, t0, stem)
    png = plot(measured["results"].rows, s, plot_title(s, env))
    for section in SECTIONS:  # sections with their own plot (end to end: step time vs N)
        if section.plot is not None and measured[section.key] is not None:
            name = f"{stem}-{section.key.replace('_', '-')}.png"
            payload[f"{section.key}_plot"] = name
            files.atomic_write_bytes(Path(config.out) / name,
                                     section.plot(measured[section.key], machine_label(s, env)))
    write_outputs(Path(config.out), stem, payload, png)
    return 0
