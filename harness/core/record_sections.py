"""The record's sections about the run itself, as typed models: training (steps, stop reason,
plateau, tokens, speed, the validation history), the best-validation checkpoint, and the routing
telemetry (entropy histograms, gate and routing histories, routing against ground truth).

Every field is optional with a default, so records of schema 1 and 2 load whatever their age;
a section writes back exactly the keys it was given (``Section``), so loading and writing a
record changes nothing in its JSON. Measured fields carry their ``Metric``
(harness/core/metrics.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from harness.core.metrics import BOARD_COLUMN, BOARD_NOTE, RUN_SUMMARY, Metric

# Entropy histograms: fixed bins over [0, 1] so histograms from different runs add up.
ENTROPY_BINS = 20


class Section(BaseModel):
    """A part of a record: unknown keys are kept (newer harnesses may add some) and only the
    keys it was given are written back, so a field added here never rewrites old records."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> Any:
        data = handler(self)
        given = self.model_fields_set | set(self.model_extra or {})
        return {k: v for k, v in data.items() if k in given}


# -- training -----------------------------------------------------------------------------------


def plateau_gain(values: list[float], higher_is_better: bool, patience: int) -> float | None:
    """How much the best validation metric improved over the last `patience` evaluations,
    relative to where it stood before them (>= 0); None with too few evaluations. The one
    definition behind a run's plateau: the runner stops on it, the record and the board
    report it."""
    if patience < 1 or len(values) <= patience:
        return None
    pick = max if higher_is_better else min
    before, now = pick(values[:-patience]), pick(values)
    if before == 0:
        return 0.0 if now == before else float("inf")
    gain = (now - before) / abs(before)
    return gain if higher_is_better else -gain


def at_plateau(values: list[float], higher_is_better: bool, patience: int,
               min_delta: float) -> tuple[bool, float | None]:
    """Whether `values` (validation metrics in order) have reached the plateau, with the gain
    that says so: it improved by less than `min_delta` over the last `patience` evaluations.
    The runner stops on it; the record reads it from the same history."""
    gain = plateau_gain(values, higher_is_better, patience)
    return gain is not None and gain < min_delta, gain


class Plateau(Section):
    """Whether the run reached its plateau: over its last ``patience`` evaluations the best
    validation metric improved by less than ``min_delta`` (relative, ``gain``), whether that
    stopped it or the cap did."""

    reached: bool = False
    patience: int | None = None
    min_delta: float = 0.0
    gain: float | None = None  # plateau_gain at the end of the run (wsd: where it cooled)
    evals_since_improvement: int = 0  # records before the window rule (kept, not used)
    # --schedule wsd: the step the cool-down began at (the plateau rule, or the cap near) and
    # its length; reached/gain are read there
    cooldown_from: int | None = None
    cooldown_steps: int | None = None


class Evaluation(Section):
    """One evaluation during training (on a subset of the validation split, --eval-batches)."""

    step: int
    train_loss: float | None = None
    lr: float | None = None
    tokens_per_second: float | None = None
    valid: dict[str, float] = Field(default_factory=dict)  # metric -> value, plus its size


class Training(Section):
    steps: int | None = None
    stop_reason: str | None = None
    plateau: Plateau | None = None
    train_tokens: float | None = None
    tokens_per_second: Annotated[float | None, Metric(
        "tokens/s", 0, True, style="grouped", shown=(BOARD_COLUMN, RUN_SUMMARY))] = None
    train_seconds: float | None = None
    wall_seconds: Annotated[float | None, Metric(
        "wall", 0, False, style="grouped", phrase="wall {} s", shown=(BOARD_NOTE, RUN_SUMMARY))
    ] = None
    resumes: int | None = None  # processes that took the run over from a checkpoint (wall: all)
    peak_memory_mb: Annotated[float | None, Metric(
        "peak memory", 0, False, style="grouped", phrase="peak memory {} MB",
        shown=(BOARD_NOTE,))] = None
    processes: int | None = None
    history: list[Evaluation] = Field(default_factory=list)


class BestCheckpoint(Section):
    """The best-validation weights: their step, how they were chosen and their full valid and
    test metrics (``missing`` says why those are absent)."""

    step: int | None = None
    selected_by: str | None = None
    same_as_final: bool = False
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    missing: str | None = None


# -- routing telemetry ----------------------------------------------------------------------------


class EntropyHistogram(Section):
    """Spectral entropy (of the mixing layer's input token) of the tokens routed to each
    operator, per layer. Counts are tokens (hard routers) or summed weights (soft routers)."""

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


class GatePoint(Section):
    step: int
    # per layer: the MetaRouter gate (mean of stats['gate']) of the batch logged at this step
    gate: list[float]


class RoutingPoint(Section):
    step: int
    fractions: list[list[float]]  # layer -> operator -> share of tokens (soft: mean weight)


SHARE = Metric("attn share", 3)  # the share of tokens routed to the top band


class GroundTruthLayer(Section):
    """One layer's routing against the task's ``needs_attention`` tokens on the test split:
    "routed to the top-band (last) operator" scored as a prediction of "needs attention"
    (harness/engine/meters/groundtruth.py)."""

    precision: Annotated[float, Metric("precision", 3, True)] = 0.0
    recall: Annotated[float, Metric("recall", 3, True)] = 0.0
    f1: Annotated[float, Metric("F1", 3, True)] = 0.0
    routed_fraction: Annotated[float, SHARE] = 0.0
    needed_fraction: Annotated[float, Metric("needed share", 3)] = 0.0
    tokens: float = 0.0


class Telemetry(Section):
    entropy_histogram: EntropyHistogram | None = None
    gate_history: list[GatePoint] = Field(default_factory=list)
    # tasks with ground truth: per layer, on the test split
    ground_truth: list[GroundTruthLayer] | None = None
    # routers with an auxiliary predictor (mod): its per-layer agreement with top-k on test
    predictor_accuracy: list[float] | None = None
    # per logged step, each layer's share of tokens per operator (harness/engine/meters/collapse)
    routing_history: list[RoutingPoint] = Field(default_factory=list)
