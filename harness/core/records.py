"""Result records: one JSON file per finished run, written atomically.

(The schema, its validation, reading and routing telemetry are the one definition of what a
record holds; the leaderboard and the claims read only this. What fills ``environment`` and
``split_hashes`` is harness.engine.provenance.)

Every record holds the full resolved config, versions, git commit, hardware and seed, so any
number on the leaderboard can be traced back to the exact run that produced it.

Schema (``schema_version`` 2; version 1 records still load, their new fields take defaults):

- identity: ``run_id``, ``created``, ``task``, ``router``, ``operators`` (in ``--ops`` order:
  band 0 first, the top band last), ``operator_options`` and ``router_options`` (filled from
  ``config.routing`` when absent), ``seed``, ``preset``, ``config`` (the resolved
  ``RunConfig``), ``config_hash``
  (``RunConfig.digest()``: everything that determines the result except the seed), ``budget``
  (``config.budget`` when absent).
- ``task_metric`` / ``higher_is_better``: the task's headline metric and its direction (when
  absent they are inferred from the metric names: ``accuracy`` up, ``perplexity`` down).
- ``metrics``: split -> metric -> value ("valid", "test"; language modelling has
  ``perplexity`` (token level) and ``word_perplexity``).
- ``cost``: {"test": CostMeter.summary(), "train": CostMeter.summary(), "execution": ...}.
- ``training``: steps, stop reason, tokens/s, wall seconds, peak memory, validation history.
- ``parameters``; ``data`` (``task.describe()`` plus ``split_hashes``: split -> sha256 of the
  exact examples, see ``split_hash``); ``environment`` (hardware, torch/CUDA, package version,
  git commit, plugin distributions and versions; newer records also ``command`` (as typed),
  ``git_dirty``, ``versions`` of numpy, datasets, tokenizers, xformers, pydantic and scipy
  (None: not installed), ``cpu_cores``, ``cpu_cores_usable`` and ``malloc`` (the freed-memory
  policy, harness.core.malloc)).
- ``best_checkpoint`` (optional): step and full valid/test metrics of the best-validation
  weights; ``metrics`` are the final weights'.
- ``flags``: "leaky: <reason>" for anything that may see the future or other examples,
  "preset:<name>" and "note: ..." (informational); any other flag marks the run as flagged on
  the board.
- ``telemetry`` (optional): routing telemetry for plots, see ``Telemetry`` and
  ``RoutingTelemetry`` (which collects it).
- ``status`` ("finished" unless the run failed or was interrupted) and ``error``.

Two processes writing at once lose nothing: every write goes to its own temporary file in the
target directory and is renamed into place (atomic on POSIX), so a reader sees either the old or
the new complete file and temp names never collide. One file per (configuration, seed):
re-running the same seed replaces its record, it never adds a second one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.core.paths import record_filename
from registry.files import atomic_write_text

SCHEMA_VERSION = 2

# Flags with these prefixes are informational; any other flag marks a run as flagged.
INFO_FLAG_PREFIXES = ("preset:", "note:")

# Entropy histograms: fixed bins over [0, 1] so histograms from different runs add up.
ENTROPY_BINS = 20


class EntropyHistogram(BaseModel):
    """Spectral entropy (of the mixing layer's input token) of the tokens routed to each
    operator, per layer. Counts are tokens (hard routers) or summed weights (soft routers)."""

    model_config = ConfigDict(extra="allow")

    split: str = "test"
    bin_edges: list[float]
    per_layer: list[dict[str, list[float]]]  # layer -> operator -> counts (len(bin_edges) - 1)

    @model_validator(mode="after")
    def _shapes(self) -> EntropyHistogram:
        if len(self.bin_edges) < 2:
            raise ValueError("bin_edges needs at least two edges")
        n = len(self.bin_edges) - 1
        for i, layer in enumerate(self.per_layer):
            for op, counts in layer.items():
                if len(counts) != n:
                    raise ValueError(
                        f"layer {i} operator '{op}': {len(counts)} counts for {n} bins")
        return self

    def totals(self) -> dict[str, list[float]]:
        """Counts per operator summed over layers."""
        n = len(self.bin_edges) - 1
        out: dict[str, list[float]] = {}
        for layer in self.per_layer:
            for op, counts in layer.items():
                acc = out.setdefault(op, [0.0] * n)
                for j, c in enumerate(counts):
                    acc[j] += c
        return out


class GatePoint(BaseModel):
    step: int
    # per layer: mean of stats['gate'] over the training batches since the previous point
    gate: list[float]


class Telemetry(BaseModel):
    model_config = ConfigDict(extra="allow")

    entropy_histogram: EntropyHistogram | None = None
    gate_history: list[GatePoint] = Field(default_factory=list)
    # tasks with ground truth: per layer precision/recall/f1 of "routed to the most expensive
    # operator" vs needs_attention on the test split (harness/engine/meters/groundtruth.py)
    ground_truth: list[dict[str, float]] | None = None
    # routers with an auxiliary predictor (mod): its per-layer agreement with top-k on test
    predictor_accuracy: list[float] | None = None


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    created: str
    task: str
    router: str
    operators: list[str]  # in --ops order: band 0 first, the top band last
    seed: int
    preset: str | None
    config: dict[str, Any]
    config_hash: str
    flags: list[str] = Field(default_factory=list)  # "leaky: ...", "preset:cpu", ...
    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    cost: dict[str, Any]
    training: dict[str, Any]
    parameters: int
    data: dict[str, Any]
    environment: dict[str, Any]
    # -- schema 2 (all optional: version 1 records load with these defaults) -----------------
    task_metric: str | None = None
    higher_is_better: bool | None = None
    operator_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    router_options: dict[str, Any] = Field(default_factory=dict)
    budget: dict[str, Any] = Field(default_factory=dict)
    telemetry: Telemetry | None = None
    # "finished", or why the run stopped without a result ("failed", "interrupted", ...):
    # unfinished records are kept for the trace but never enter the leaderboard
    status: str = "finished"
    error: str | None = None
    # the best-validation checkpoint: {"step", "selected_by", "same_as_final", "metrics":
    # split -> metric -> value}; ``metrics`` above are the final checkpoint's (optional: older
    # records have only those)
    best_checkpoint: dict[str, Any] | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v < 1 or v > SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is not supported by this harness "
                             f"(1..{SCHEMA_VERSION}); upgrade the harness to read it")
        return v

    @field_validator("metrics")
    @classmethod
    def _possible_metrics(cls, metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for split, values in metrics.items():
            for name, value in values.items():
                problem = impossible_metric(name, value)
                if problem:
                    raise ValueError(f"{split}.{name} = {value} {problem}")
        return metrics

    @model_validator(mode="after")
    def _fill_from_config(self) -> RunRecord:
        routing = self.config.get("routing") if isinstance(self.config, dict) else None
        if isinstance(routing, dict):
            if not self.operator_options and isinstance(routing.get("op_options"), dict):
                self.operator_options = {k: dict(v) for k, v in routing["op_options"].items()
                                         if isinstance(v, dict) and v}
            if not self.router_options and isinstance(routing.get("router_options"), dict):
                self.router_options = dict(routing["router_options"])
        if not self.budget and isinstance(self.config.get("budget"), dict):
            self.budget = dict(self.config["budget"])
        return self

    # -- derived ------------------------------------------------------------------------------

    def headline(self) -> tuple[str, bool] | None:
        """(metric, higher_is_better) of the task: declared, else inferred from the names."""
        if self.task_metric:
            higher = self.higher_is_better
            if higher is None:
                higher = infer_direction(self.task_metric)
            if higher is not None:
                return self.task_metric, higher
        test = self.metrics.get("test", {})
        if "accuracy" in test:
            return "accuracy", True
        if "perplexity" in test:
            return "perplexity", False
        return None

    @property
    def leaky(self) -> bool:
        return any(f.startswith("leaky") for f in self.flags)

    @property
    def warning_flags(self) -> list[str]:
        """Flags that keep the run out of the ranking (leaky ones included)."""
        return [f for f in self.flags if not f.startswith(INFO_FLAG_PREFIXES)]

    @property
    def split_hashes(self) -> dict[str, str]:
        hashes = self.data.get("split_hashes")
        return dict(hashes) if isinstance(hashes, dict) else {}


def impossible_metric(name: str, value: float) -> str | None:
    """Why a metric value cannot come from a real evaluation, or None. Judged by the name:
    accuracies lie in [0, 1], perplexities (exp of a mean cross entropy) are >= 1, losses are
    finite. Other metrics are the task's own business."""
    name = name.lower()
    if "accuracy" in name and not 0 <= value <= 1:
        return "is impossible for an accuracy (it lies in [0, 1])"
    if "perplexity" in name and not 1 <= value < math.inf:
        return "is impossible for a perplexity (it is finite and >= 1)"
    if "loss" in name and not math.isfinite(value):
        return "is impossible for a loss (it is finite)"
    return None


def infer_direction(metric: str) -> bool | None:
    """Whether higher is better for a metric of this name (accuracy: True, perplexity or loss:
    False), None when the name does not say."""
    name = metric.lower()
    if "accuracy" in name or name in ("f1", "auc"):
        return True
    if "perplexity" in name or "loss" in name or "error" in name:
        return False
    return None


# -- writing ------------------------------------------------------------------------------------


def write_record(record: RunRecord, directory: Path) -> Path:
    path = Path(directory) / record_filename(record.run_id)
    atomic_write_text(path, record.model_dump_json(indent=2) + "\n")
    return path


# -- reading ------------------------------------------------------------------------------------


def describe_error(exc: BaseException) -> str:
    """One line saying what is wrong with a record."""
    if isinstance(exc, ValidationError):
        parts = []
        for e in exc.errors()[:5]:
            loc = ".".join(str(p) for p in e["loc"]) or "(record)"
            parts.append(f"{loc}: {e['msg']}")
        more = len(exc.errors()) - 5
        return "invalid record: " + "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def load_record(path: Path) -> RunRecord:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return RunRecord.model_validate(data)


def iter_records(directory: Path) -> Iterator[tuple[Path, RunRecord | None, str | None]]:
    """(path, record, None) for each valid record, (path, None, problem) for each bad one, in
    file-name order. Temporary files of writers in progress (``.*.tmp``) are never read."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            yield path, load_record(path), None
        except (OSError, ValueError) as exc:  # ValidationError and JSONDecodeError are ValueErrors
            yield path, None, describe_error(exc)


def load_records(directory: Path) -> tuple[list[RunRecord], list[str]]:
    """All valid records under a directory, and one message per malformed file (skipped)."""
    records, problems = [], []
    for path, record, problem in iter_records(directory):
        if record is not None:
            records.append(record)
        else:
            problems.append(f"{path}: {problem}")
    return records, problems
