"""The records a claim reads: per run spec, the finished records of its configuration.

A record belongs to a spec when its ``config_hash`` is the digest of the spec's resolved
options in the setting (the seed is not part of the digest): exactly the cells that
``reproduce`` runs, wherever and whenever they ran.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.core.records import RunRecord
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

    def values(self, value: Callable[[RunRecord], float | None]) -> dict[int, float]:
        out = {}
        for r in self.records:
            v = value(r)
            if v is not None:
                out[r.seed] = float(v)
        return out

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


def metric(split: str, name: str) -> Callable[[RunRecord], float | None]:
    def value(r: RunRecord) -> float | None:
        return r.metrics.get(split, {}).get(name)

    value.__name__ = f"{split} {name}"
    return value


def attention_flop_fraction(r: RunRecord) -> float | None:
    return (r.cost.get("test") or {}).get("attention_flop_fraction")


def attention_token_share(r: RunRecord) -> float | None:
    """Share of test tokens the most expensive operator computed, mean over layers."""
    layers = (r.cost.get("test") or {}).get("per_layer") or []
    shares = [layer[r.operators[-1]]["token_fraction"] for layer in layers
              if r.operators[-1] in layer]
    return statistics.fmean(shares) if shares else None


def model_flops_per_token(r: RunRecord) -> float | None:
    return (r.cost.get("test") or {}).get("model_flops_per_token")


def final_gate(r: RunRecord, tail: float = 0.25) -> float | None:
    """The gate where training ended: mean over layers of its mean over the last quarter of
    the logged points (one logged batch is noisy)."""
    points = r.telemetry.gate_history if r.telemetry else []
    if not points:
        return None
    last = points[-max(1, round(tail * len(points))):]
    return statistics.fmean(statistics.fmean(p.gate) for p in last)


def routing_history(r: RunRecord) -> list[dict[str, Any]]:
    return list(getattr(r.telemetry, "routing_history", None) or []) if r.telemetry else []
