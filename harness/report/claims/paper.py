"""The paper's reported numbers (results/reference.json): read once, for the claims' rules and
for the board's reference rows.

The file holds what the paper reports, never what is measured here: ``rows`` (numbers shown on
the board as reference rows, labelled "reported, not reproduced") and ``numbers`` (other
reported values, such as the MetaRouter gate). Each has an ``id``; a claim reads the numbers it
tests by id (``Paper.value``), so correcting a transcription in the file moves the claims' rules
with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.records import describe_error
from registry import DataError

REPORTED = "reported, not reproduced"  # how every page labels the paper's numbers


@dataclass
class Reference:
    """A row of the paper's, shown on the board under the runs of its task."""

    task: str
    label: str
    router: str
    operators: str
    split: str
    metric: str
    value: float
    source: str
    id: str = ""
    attention_flop_fraction: float | None = None
    flop_saving: tuple[float, float] | None = None  # "35-40% fewer FLOPs": (0.35, 0.40)
    parameters: str | None = None
    note: str | None = None

    @property
    def flops_text(self) -> str | None:
        if self.flop_saving is None:
            return None
        low, high = (100 * x for x in self.flop_saving)
        return f"{low:g}-{high:g}% fewer FLOPs overall"


@dataclass
class Paper:
    path: str = ""  # where the numbers were read, for messages
    caveat: str = ""
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    rows: list[Reference] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)  # other reported values, by id

    def source_text(self, key: str) -> str:
        src = self.sources.get(key, {})
        citation = src.get("citation", key)
        url = src.get("url")
        return f"{citation} ({url})" if url else citation

    def row(self, id_: str) -> Reference:
        for r in self.rows:
            if r.id == id_:
                return r
        raise DataError(f"{self.path or 'the reference file'} has no row with id '{id_}'; "
                        f"the claims read the paper's numbers from it (restore it from git)")

    def stated(self, id_: str, name: str) -> Any:
        """Another number a row states (``attention_flop_fraction``, ``flop_saving``)."""
        value = getattr(self.row(id_), name)
        if value is None:
            raise DataError(f"{self.path or 'the reference file'}: row '{id_}' states no "
                            f"{name}; the claims read it from there (restore it from git)")
        return value

    def value(self, id_: str) -> float:
        """A reported number by id: a row's value or one of ``numbers``."""
        if id_ in self.numbers:
            return self.numbers[id_]
        return self.row(id_).value


def _reference(row: dict) -> Reference:
    known = {k: row[k] for k in Reference.__dataclass_fields__ if k in row}
    known["value"] = float(known["value"])
    if known.get("flop_saving") is not None:
        low, high = known["flop_saving"]
        known["flop_saving"] = (float(low), float(high))
    return Reference(**known)


def load_paper(path: Path | None) -> tuple[Paper, list[str]]:
    """The paper's numbers, and one problem line if the file cannot be read (then no numbers:
    the board omits its reference rows and claims, and says why)."""
    if path is None or not Path(path).exists():
        return Paper(), []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Paper(path=str(path), caveat=str(data.get("caveat", "")),
                     sources=dict(data.get("sources", {})),
                     rows=[_reference(row) for row in data.get("rows", [])],
                     numbers={str(n["id"]): float(n["value"])
                              for n in data.get("numbers", [])}), []
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return Paper(), [f"{Path(path).name}: reference file unreadable, reference rows and "
                         f"claims omitted ({describe_error(exc)})"]
