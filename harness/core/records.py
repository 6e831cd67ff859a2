"""Result records: one JSON file per finished run, written atomically.

(The schema, its validation and reading are the one definition of what a record holds; the
leaderboard, the run summary and the claims read only this. What fills ``environment`` and
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
- ``cost`` (``Cost``, harness/core/record_cost.py): per split (``test``, ``train``) the FLOP
  fractions, FLOPs per token and per layer per operator token and FLOP shares and gate, plus
  ``execution`` and ``bands``.
- ``training`` (``Training``, harness/core/record_sections.py): steps, stop reason, plateau,
  tokens, tokens/s, wall seconds, peak memory, validation history.
- ``parameters``; ``data`` (``task.describe()`` plus ``split_hashes``: split -> sha256 of the
  exact examples, see ``split_hash``); ``environment`` (hardware, torch/CUDA, package version,
  git commit, plugin distributions and versions; newer records also ``command`` (as typed),
  ``git_dirty``, ``versions`` of numpy, datasets, tokenizers, xformers, pydantic and scipy
  (None: not installed), ``cpu_cores``, ``cpu_cores_usable`` and ``malloc`` (the freed-memory
  policy, harness.core.malloc)).
- ``best_checkpoint`` (optional, ``BestCheckpoint``): step and full valid/test metrics of the
  best-validation weights; ``metrics`` are the final weights'.
- ``flags``: "leaky: <reason>" for anything that may see the future or other examples,
  "preset:<name>" and "note: ..." (informational); any other flag marks the run as flagged on
  the board.
- ``telemetry`` (optional, ``Telemetry``): entropy histograms, gate and routing histories over
  training, routing against the task's ground truth; filled by the meters in
  harness/engine/meters and the training driver.
- ``status`` ("finished" unless the run failed or was interrupted) and ``error``.

The sections are typed models whose measured fields carry their ``Metric`` (label, digits,
direction; harness/core/metrics.py): pages iterate those instead of digging in dicts. Their
JSON shape is the one schema 1 and 2 wrote.

Two processes writing at once lose nothing: every write goes to its own temporary file in the
target directory and is renamed into place (atomic on POSIX), so a reader sees either the old or
the new complete file and temp names never collide. One file per (configuration, seed):
re-running the same seed replaces its record, it never adds a second one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.core.metrics import Metric, infer_direction, metric_fields, task_metric
from harness.core.paths import record_filename
from harness.core.record_cost import Cost, SplitCost
from harness.core.record_sections import (
    ENTROPY_BINS,
    BestCheckpoint,
    EntropyHistogram,
    Telemetry,
    Training,
)
from registry.files import atomic_write_text

# sections the meters and the record builder construct, also named where the record is
__all__ = ["ENTROPY_BINS", "EntropyHistogram", "Telemetry"]

SCHEMA_VERSION = 2

# Flags with these prefixes are informational; any other flag marks a run as flagged.
INFO_FLAG_PREFIXES = ("preset:", "note:")


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
    cost: Cost
    training: Training
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
    # the best-validation checkpoint; ``metrics`` above are the final checkpoint's (optional:
    # older records have only those)
    best_checkpoint: BestCheckpoint | None = None

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
    def notes(self) -> list[str]:
        """Informational flags ("note: ..."), without the prefix: what a reader should know
        about the run that does not keep it out of the ranking."""
        return [f.removeprefix("note:").strip() for f in self.flags if f.startswith("note:")]

    @property
    def test_cost(self) -> SplitCost:
        """The test split's cost (empty when the record has none: a run that did not
        finish, or a sparse old record)."""
        return self.cost.test or SplitCost()

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


# -- the measured quantities, with their metadata --------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """A number every record may hold, with its ``Metric``: pages iterate these (``measures``)
    instead of digging in the record. Calling it on a record gives the value, or None when the
    record does not have a finite one."""

    name: str
    metric: Metric
    read: Callable[[RunRecord], Any] = field(compare=False)
    section: str = "metrics"  # where the record holds it: "test_cost", "training", "metrics"

    def __call__(self, record: RunRecord) -> float | None:
        value = self.read(record)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value) if math.isfinite(value) else None


def _section_reader(section: str, name: str) -> Callable[[RunRecord], Any]:
    def read(record: RunRecord) -> Any:
        value = getattr(getattr(record, section), name)
        return value() if callable(value) else value  # a derived quantity is a method

    return read


def measures(where: str | None = None) -> list[Measure]:
    """The record's measured quantities that its sections declare (the test split's cost,
    then training), in declaration order; only those shown ``where`` when given."""
    return [Measure(name, metric, _section_reader(section, name), section)
            for section, model in (("test_cost", SplitCost), ("training", Training))
            for name, metric in metric_fields(model, where)]


def measure(name: str) -> Measure:
    """One declared measured quantity, by name (``attention_flop_fraction``, ``gate``...)."""
    for m in measures():
        if m.name == name:
            return m
    raise KeyError(f"no record section declares a metric '{name}'")


def task_measure(split: str, name: str) -> Measure:
    """A task metric of the final weights on a split (``metrics[split][name]``)."""
    return Measure(f"{split} {name}", task_metric(name),
                   lambda r: r.metrics.get(split, {}).get(name))


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
            record = load_record(path)
        except (OSError, ValueError) as exc:  # ValidationError and JSONDecodeError are ValueErrors
            yield path, None, describe_error(exc)
        except RecursionError:  # JSON nested deeper than the parser's stack: no record is
            yield path, None, "nested too deeply to be a run record"
        else:
            yield path, record, None


def load_records(directory: Path) -> tuple[list[RunRecord], list[str]]:
    """All valid records under a directory, and one message per malformed file (skipped)."""
    records, problems = [], []
    for path, record, problem in iter_records(directory):
        if record is not None:
            records.append(record)
        else:
            problems.append(f"{path}: {problem}")
    return records, problems
