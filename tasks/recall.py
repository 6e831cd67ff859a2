"""The public base of tasks scored at answer positions, with per-token ground truth.

A task whose examples are generated sequences (MQAR, the MAD suite, your own) subclasses
``RecallTask``, extends its ``Options`` (which already has ``n_train``, ``n_valid``, ``n_test``
and ``data_seed``) with its generator's, sets ``vocab_size`` and ``params`` (its generator's
settings and ``split_sizes()``: the cache key and the record) and implements one method::

    def generate(self, n: int, g: torch.Generator) -> RecallData

returning ``n`` examples (the train, valid and test splits, in that order) as four tensors:

- ``inputs`` (n, L) long: what the model reads;
- ``targets`` (n, L) long: what the loss trains each position to predict, ``IGNORE_INDEX``
  where it trains nothing. Not assumed to be the next input: a task that is not teacher forced
  (MAD's selective copying, memorization) or trains on every next token (MAD's recall tasks)
  says so here;
- ``answers`` (n, L) bool: the positions the meter scores (a subset of the trained ones);
- ``needs_attention`` (n, L) bool or None: the per-token ground truth, True where answering
  needs a lookup far back in the context (read by the `oracle` router and scored against every
  run's routing, harness/engine/meters/groundtruth.py); None where the task has none.

The base draws all splits once from ``data_seed`` (not the run's seed: every run of a
configuration sees the same data), caches them under ``<cache_dir>/<task>/<key>.pt``, collates
``RecallBatch`` es (the answers ride along) and scores with ``RecallMeter``: loss, perplexity
and accuracy at the answers only, the harness's accuracy (the share of answer tokens right) and,
beside it, MAD's (``macro_accuracy``, see ``RecallMeter``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from registry import ConfigError

from . import cache
from .base import IGNORE_INDEX, SPLITS, Batch, LanguageModelingTask, Meter

PAD_ID = 0  # never in a generated sequence (they have a fixed length): the harness's padding id
FORMAT_VERSION = 2  # bump when a generator's output or the cache layout changes


@dataclass
class RecallData:
    """Generated examples, one row each (see the module docstring)."""

    inputs: Tensor  # (n, L) long
    targets: Tensor  # (n, L) long, IGNORE_INDEX where nothing is trained
    answers: Tensor  # (n, L) bool, the scored positions
    needs_attention: Tensor | None = None  # (n, L) bool ground truth, or None

    def check(self, task: str) -> None:
        """The promises the batches rely on, checked once per draw."""
        shape = self.inputs.shape
        for name in ("targets", "answers", "needs_attention"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"task '{task}': generate() returned {name} of shape "
                                 f"{tuple(value.shape)} for inputs of shape {tuple(shape)}")
        if bool((self.targets[self.answers] == IGNORE_INDEX).any()):
            raise ValueError(f"task '{task}': generate() marks answers without a target; every "
                             f"answer position needs one (targets != IGNORE_INDEX there)")

    def rows(self, start: int, end: int) -> RecallData:
        na = self.needs_attention
        return RecallData(self.inputs[start:end], self.targets[start:end],
                          self.answers[start:end], None if na is None else na[start:end])


class RecallExamples(Sequence[tuple[Tensor, Tensor, Tensor, Tensor | None]]):
    """A split: example i is ``(inputs, targets, answers, needs_attention)`` (the last None
    when the task has no ground truth)."""

    def __init__(self, data: RecallData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data.inputs)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:  # type: ignore[override]
        d = self.data
        return (d.inputs[i].long(), d.targets[i].long(), d.answers[i],
                None if d.needs_attention is None else d.needs_attention[i])


@dataclass
class RecallBatch(Batch):
    """A batch that carries the positions its meter scores."""

    answers: Tensor | None = None  # (B, N) bool

    def to(self, device: torch.device | str) -> RecallBatch:
        moved = super().to(device)
        answers = None if self.answers is None else self.answers.to(device, non_blocking=True)
        return RecallBatch(moved.tokens, moved.padding_mask, moved.targets,
                           moved.needs_attention, answers)


def answer_mask(batch: Batch) -> Tensor:
    """The scored positions of a batch: its ``answers``, or, for a plain batch (the checks'
    random ones), every trained position."""
    answers = getattr(batch, "answers", None)
    return answers if answers is not None else batch.targets != IGNORE_INDEX


class RecallMeter(Meter):
    """At the answer positions only: ``loss`` and ``perplexity``, ``accuracy`` (the harness's
    convention: the share of answer tokens predicted right, every token counting once),
    ``majority_accuracy`` (always predicting the split's most common answer: the floor to beat)
    and ``macro_accuracy``, MAD's convention: torchmetrics' ``MulticlassAccuracy`` with its
    default ``average="macro"``, over the whole split: per class c (token id) that occurs as an
    answer or as a prediction at an answer, tp_c / (tp_c + fn_c), averaged with equal weight
    (a class predicted but never an answer scores 0). MAD logs the mean of the per-batch values
    over its evaluation batches of 128 sequences; this is the value over the whole split (the
    two agree closely when a batch holds many answers)."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.nll_sum = 0.0
        self.correct = 0
        self.tokens = 0
        self.answers: Counter[int] = Counter()
        self.tp = torch.zeros(n_classes, dtype=torch.long)
        self.fp = torch.zeros(n_classes, dtype=torch.long)
        self.fn = torch.zeros(n_classes, dtype=torch.long)

    def update(self, logits: Tensor, batch: Batch) -> None:
        scored = answer_mask(batch)
        logits = logits.float()[scored]
        targets = batch.targets[scored]
        self.nll_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        pred = logits.argmax(-1)
        right = pred == targets
        self.correct += int(right.sum())
        self.tokens += len(targets)
        self.answers.update(targets.tolist())
        k = self.n_classes
        hits = torch.bincount(targets[right].cpu(), minlength=k)[:k]
        self.tp += hits
        self.fn += torch.bincount(targets.cpu(), minlength=k)[:k] - hits
        self.fp += torch.bincount(pred.cpu(), minlength=k)[:k] - hits

    def compute(self) -> dict[str, float]:
        import math

        n = max(self.tokens, 1)
        loss = self.nll_sum / n
        seen = (self.tp + self.fp + self.fn) > 0
        per_class = self.tp[seen] / (self.tp[seen] + self.fn[seen]).clamp_min(1)
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            "tokens": float(self.tokens),
            "accuracy": self.correct / n,
            "majority_accuracy": self.answers.most_common(1)[0][1] / n if self.answers else 0.0,
            "macro_accuracy": float(per_class.mean()) if bool(seen.any()) else 0.0,
        }


# -- deprecated: the hand checks a plugin written from the last round's docs still calls -------
# (a task now declares its options as fields of ``Options``, which the base checks)


def _deprecated(name: str, instead: str) -> None:
    warnings.warn(f"tasks.recall.{name} is deprecated: {instead} (docs/plugins.md)",
                  DeprecationWarning, stacklevel=3)


def positive_int(task: str, name: str, value: Any, minimum: int = 1) -> int:
    """Deprecated: declare ``name: int = Field(default, ge=minimum)`` in the task's Options."""
    _deprecated("positive_int", "declare the option as an int Field with ge= in Options")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"task '{task}' option {name} must be an integer >= {minimum}, "
                          f"got {value!r}")
    return value


def share(task: str, name: str, value: Any, *, upper: float = 1.0) -> float:
    """Deprecated: declare ``name: float = Field(default, ge=0, lt=upper)`` in Options."""
    _deprecated("share", "declare the option as a float Field with ge= and lt= in Options")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < upper:
        raise ConfigError(f"task '{task}' option {name} must be a number in [0, {upper:g}), "
                          f"got {value!r}")
    return float(value)


def split_sizes(task: str, n_train: Any, n_valid: Any, n_test: Any, data_seed: Any
                ) -> dict[str, int]:
    """Deprecated: ``RecallTask.Options`` has the four fields; ``self.split_sizes()`` reads
    them."""
    _deprecated("split_sizes", "RecallTask.Options declares them; use self.split_sizes()")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return {"n_train": positive_int(task, "n_train", n_train),
                "n_valid": positive_int(task, "n_valid", n_valid),
                "n_test": positive_int(task, "n_test", n_test),
                "data_seed": positive_int(task, "data_seed", data_seed, 0)}


class RecallTask(LanguageModelingTask):
    """Generated sequences scored at their answers (module docstring). Causal by default: a
    task whose head reads the whole sequence (MAD's compression) sets ``causal = False``."""

    metric = "accuracy"
    higher_is_better = True
    pad_id = PAD_ID
    params: dict[str, Any]
    # what the record says about needs_attention (describe()["ground_truth"])
    ground_truth: ClassVar[str] = "needs_attention = the scored answer positions"
    _blob: RecallData | None = None  # every split, drawn (or read from the cache) once

    class Options(LanguageModelingTask.Options):
        """The options every recall task has; a task adds its generator's."""

        n_train: int = Field(40_000, ge=1, description="training examples")
        n_valid: int = Field(1_000, ge=1, description="validation examples")
        n_test: int = Field(1_000, ge=1, description="test examples")
        data_seed: int = Field(0, ge=0, description="seeds the draw of every split (not the "
                                                    "run's seed: every run sees the same data)")

    def split_sizes(self) -> dict[str, int]:
        """The ``params`` entries every recall task has, from its options."""
        return {key: getattr(self.options, key)
                for key in ("n_train", "n_valid", "n_test", "data_seed")}

    def generate(self, n: int, g: torch.Generator) -> RecallData:
        raise NotImplementedError  # pragma: no cover - abstract

    def built_from(self) -> str:
        """The draw's full hash (format, sequence length, parameters): what its cache file must
        carry to be used (tasks/cache.py)."""
        blob = json.dumps({"format": FORMAT_VERSION, "seq_len": self.seq_len, **self.params},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def cache_path(self) -> Path:
        return self.cache_dir / self.registry_name / f"{self.built_from()[:16]}.pt"

    def _generate(self) -> dict[str, Any]:
        g = torch.Generator().manual_seed(self.params["data_seed"])
        data = self.generate(sum(self.params[f"n_{split}"] for split in SPLITS), g)
        data.check(self.registry_name)
        small = torch.uint8 if self.vocab_size <= 256 else torch.int32
        return {"inputs": data.inputs.to(small), "targets": data.targets.to(torch.int32),
                "answers": data.answers, "needs_attention": data.needs_attention}

    def _draw(self) -> RecallData:
        stored = cache.load_or_build(
            self.cache_path(), self.built_from(), self._generate,
            needs=("inputs", "targets", "answers", "needs_attention"), what=self.registry_name)
        return RecallData(**stored)

    def load_split(self, split: str) -> RecallExamples:
        if self._blob is None:
            self._blob = self._draw()
        sizes = [self.params[f"n_{s}"] for s in SPLITS]
        start = sum(sizes[: SPLITS.index(split)])
        return RecallExamples(self._blob.rows(start, start + sizes[SPLITS.index(split)]))

    def collate(self, examples: Sequence[tuple[Tensor, Tensor, Tensor, Tensor | None]]
                ) -> RecallBatch:
        inputs, targets, answers, needs = zip(*examples, strict=True)
        tokens = torch.stack(inputs)
        ground_truth = None if needs[0] is None else torch.stack(needs)
        return RecallBatch(tokens, torch.ones_like(tokens, dtype=torch.bool),
                           torch.stack(targets), ground_truth, torch.stack(answers))

    def meter(self, split: str) -> RecallMeter:
        return RecallMeter(self.vocab_size)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": "generated", "vocab_size": self.vocab_size,
                "generator": {**self.params, "format": FORMAT_VERSION},
                "ground_truth": self.ground_truth}
