"""The records a claim reads: per run spec, the finished records of its configuration.

A record belongs to a spec when its ``config_hash`` is the digest of the spec's resolved
options in the setting (the seed is not part of the digest): exactly the cells that
``reproduce`` runs, wherever and whenever they ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.records import Measure, RunRecord, measure, task_measure
from harness.report.claims.runs import SPEC_BY_KEY, RunSpec, overrides, runnable


def spec_digest(spec: RunSpec, setting: str, data_dir: str | None = None) -> str:
    from harness.core.config import resolve
    from tasks import TASKS

    cell = overrides(spec, setting, 0, out="results/runs", data_dir=data_dir)
    task_cls = TASKS.get(cell["data"]["task"])
    return resolve(cell, getattr(task_cls, "presets", {}) or {}).digest()


@dataclass
class Runs:
    """One spec's finished records (one per seed) in a setting."""

    spec: RunSpec
    records: list[RunRecord]
    runnable: bool  # whether the setting can run this spec at all

    def values(self, value: Measure) -> dict[int, float]:
        """Per seed, the record's value (seeds without one are left out)."""
        return {r.seed: v for r in self.records if (v := value(r)) is not None}

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.records)

    @property
    def leaky(self) -> bool:
        return any(r.leaky for r in self.records)

    @property
    def label(self) -> str:
        s = self.spec
        text = f"{s.router} {'+'.join(s.ops)}"
        return text + (" ⚠ leaky" if self.leaky or s.leaky else "")


class Evidence:
    """The committed records, looked up by run spec for one setting."""

    def __init__(self, records: list[RunRecord], setting: str, data_dir: str | None = None):
        self.setting = setting
        self.data_dir = data_dir
        self._by_hash: dict[str, list[RunRecord]] = {}
        for r in records:
            if r.status == "finished":
                self._by_hash.setdefault(r.config_hash, []).append(r)

    def runs(self, key: str) -> Runs:
        spec = SPEC_BY_KEY[key]
        if not runnable(spec, self.setting):
            return Runs(spec, [], False)
        found = self._by_hash.get(spec_digest(spec, self.setting, self.data_dir), [])
        latest: dict[int, RunRecord] = {}
        for r in sorted(found, key=lambda r: r.created):  # one record per seed: the latest
            latest[r.seed] = r
        return Runs(spec, [latest[s] for s in sorted(latest)], True)


# -- the values claims read from a record ---------------------------------------------------------


# the numbers claims read from each record (with their metadata: digits, direction)
VALID_PPL = task_measure("valid", "perplexity")
TEST_PPL = task_measure("test", "perplexity")
ATTENTION_FLOP_FRACTION = measure("attention_flop_fraction")
TOP_TOKEN_SHARE = measure("top_token_share")  # the share of test tokens routed to attention
MODEL_FLOPS_PER_TOKEN = measure("model_flops_per_token")
GATE = measure("gate")  # the MetaRouter gate of the trained model on the test split


def routing_history(r: RunRecord) -> list[dict[str, Any]]:
    """The record's routing history as the collapse functions read it (plain dicts)."""
    return [p.model_dump() for p in r.telemetry.routing_history] if r.telemetry else []
