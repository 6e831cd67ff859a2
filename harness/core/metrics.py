"""What a number in a record means on a page: its label, its digits, its direction.

A record's measured fields declare their ``Metric`` where they are defined (the record sections,
harness/core/record_sections.py, as ``Annotated`` metadata; derived quantities with ``derived``)
and every page reads it from there: the board's columns and notes, the run summary and the
claims iterate ``metric_fields`` instead of naming fields and formats of their own. A task's
own metrics (``accuracy``, ``perplexity``, ...) are named by the task; ``task_metric`` is their
metadata, judged by the name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

# where a page shows a metric (``Metric.shown``)
BOARD_COLUMN = "board column"  # a column of each task's ranked table
BOARD_NOTE = "board note"  # in the configuration notes under the table, as a phrase
RUN_SUMMARY = "run summary"  # the table `harness run` prints at the end


@dataclass(frozen=True)
class Metric:
    label: str  # how tables name it
    digits: int  # decimals ("fixed", "grouped") or significant figures ("significant")
    higher_is_better: bool | None = None  # None: neither way is better (a share, a count)
    style: str = "fixed"  # "fixed" | "grouped" (thousands separators) | "significant"
    phrase: str = ""  # how a sentence says it, "{}" the value; default "<label> <value>"
    shown: tuple[str, ...] = field(default=())  # BOARD_COLUMN, BOARD_NOTE, RUN_SUMMARY

    def format(self, value: float) -> str:
        if self.style == "grouped":
            return f"{value:,.{self.digits}f}"
        if self.style == "significant":
            return f"{value:.{self.digits}g}"
        return fixed(value, self.digits)

    def sentence(self, value: float) -> str:
        return (self.phrase or f"{self.label} {{}}").format(self.format(value))


def fixed(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals, never "-0.00"."""
    s = f"{x:.{digits}f}"
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]
    return s


F = TypeVar("F", bound=Callable[..., Any])


def derived(metric: Metric) -> Callable[[F], F]:
    """Declare the metadata of a quantity a record section computes (a method)."""

    def mark(fn: F) -> F:
        fn.__metric__ = metric  # type: ignore[attr-defined]
        return fn

    return mark


def metric_fields(model: type, where: str | None = None) -> list[tuple[str, Metric]]:
    """(field name, Metric) of a pydantic model's measured fields, in declaration order, then
    its derived quantities; only those shown ``where`` when given."""
    found = [(name, m) for name, info in model.model_fields.items()  # type: ignore[attr-defined]
             for m in info.metadata if isinstance(m, Metric)]
    found += [(name, fn.__metric__) for name, fn in vars(model).items()
              if isinstance(getattr(fn, "__metric__", None), Metric)]
    return [(name, m) for name, m in found if where is None or where in m.shown]


def metric_of(model: type, name: str) -> Metric:
    """The Metric a model declares for one field or derived quantity."""
    for field_name, m in metric_fields(model):
        if field_name == name:
            return m
    raise KeyError(f"{model.__name__} declares no metric '{name}'")


# -- a task's own metrics -------------------------------------------------------------------------

_TASK_LABELS = {"perplexity": "token PPL", "word_perplexity": "word PPL"}


def infer_direction(metric: str) -> bool | None:
    """Whether higher is better for a metric of this name (accuracy: True, perplexity or loss:
    False), None when the name does not say."""
    name = metric.lower()
    if "accuracy" in name or name in ("f1", "auc"):
        return True
    if "perplexity" in name or "loss" in name or "error" in name:
        return False
    return None


def task_metric(name: str) -> Metric:
    """A task metric's metadata, from its name: perplexities with 2 decimals, the rest with 4;
    token perplexity is "token PPL" (per token of the run's own tokenizer)."""
    return Metric(_TASK_LABELS.get(name, name), 2 if "perplexity" in name else 4,
                  infer_direction(name))
