"""How far a run has come: the counters a checkpoint carries and the record reports."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Progress:
    step: int = 0
    train_tokens: int = 0
    train_seconds: float = 0.0
    # wall-clock seconds the run's processes spent to reach this state (building, training,
    # evaluating, probing); work a killed process did after its last checkpoint is done again
    # and counted once, as in train_seconds
    wall_seconds: float = 0.0
    resumes: int = 0  # how many processes took the run over from a checkpoint
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per evaluation
    best: dict[str, Any] | None = None  # the history entry with the best validation metric
    stop_reason: str | None = None
    finished: bool = False
    gate_history: list[dict[str, Any]] = field(default_factory=list)
    # per logged step, each layer's share of tokens per operator (harness/engine/meters/collapse.py)
    routing_history: list[dict[str, Any]] = field(default_factory=list)
    # the code each process of the run started on (git commit, "-dirty" for a changed tree), in
    # order: read when the process starts, not when the record is written (a commit made while
    # a run trains is not the code it ran); a run resumed on other code lists both
    code: list[str] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / max(self.train_seconds, 1e-9)

    def to_json(self) -> str:
        """Plain JSON, so a checkpoint loads under ``torch.load(weights_only=True)``."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Progress:
        """Counters of a checkpoint; keys an older harness kept and this one no longer does
        (``evals_since_best``) are dropped."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})

    def ran_on(self, commit: str | None) -> None:
        """This process runs `commit` (None: not a git checkout)."""
        if commit is not None and (not self.code or self.code[-1] != commit):
            self.code.append(commit)

    def valid_values(self, metric: str) -> list[float]:
        """The validation metric at each evaluation so far."""
        return [float(entry["valid"][metric]) for entry in self.history]
