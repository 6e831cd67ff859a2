"""The training protocol a record was made under, read from its config: its budget (a number of
training tokens, or "to plateau" with a cap) and how a tuned value is chosen on validation.

One definition for every page: the board groups and ranks rows by ``budget_of``, the claims
judge arms of one budget, and the sweep (harness/sweep/driver.py) and the board pick a tuned
learning rate by ``validation_score``. Light: no pydantic, no torch (a record here is a
``RunRecord`` or its JSON as a dict).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.metrics import infer_direction

if TYPE_CHECKING:
    from harness.core.records import RunRecord

PLATEAU = "to plateau"
TOKENS = "tokens"


@dataclass(frozen=True)
class Budget:
    """What a run was allowed to train for. ``tokens`` is max_steps x batch_size x seq_len
    (batch_size is the global batch; ``max_tokens`` caps it when set), the budget itself for
    a token budget, the cap for a plateau budget; None when the config does not say."""

    kind: str  # TOKENS | PLATEAU
    tokens: int | None
    preset: str  # "" when the run had none
    # data-limited: trained on the train split's first N lines only (option train_lines), so
    # never ranked with rows that saw all of it
    train_lines: int | None = None

    @property
    def plateau(self) -> bool:
        return self.kind == PLATEAU

    @property
    def label(self) -> str:
        """'1.23M training tokens, preset cpu' or 'to plateau (cap 6.14M tokens), preset cpu',
        with ', trained on the first N lines' for a data-limited run."""
        amount = "unknown" if self.tokens is None else tokens_text(self.tokens)
        what = (f"{PLATEAU} (cap {amount} tokens)" if self.plateau
                else f"{amount} training tokens")
        data = "" if self.train_lines is None else \
            f", trained on the first {self.train_lines:,} lines"
        return f"{what}, preset {self.preset or 'none'}{data}"

    @property
    def slug(self) -> str:
        """A short name for files: 'plateau-6.14M-cpu', '1.23M-cpu'."""
        amount = "unknown" if self.tokens is None else tokens_text(self.tokens)
        data = "" if self.train_lines is None else f"-lines{self.train_lines}"
        return ("plateau-" if self.plateau else "") + f"{amount}-{self.preset or 'none'}{data}"


def tokens_text(n: int) -> str:
    """12,345 -> '12.3k', 6,144,000 -> '6.14M': three significant figures."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    part = config.get(name) if isinstance(config, Mapping) else None
    return part if isinstance(part, Mapping) else {}


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


def budget_of(record: RunRecord) -> Budget:
    """The record's budget, from its config: "to plateau" when ``budget.patience`` is set,
    else a number of training tokens; with the preset. seq_len falls back to what the task
    recorded (``data.seq_len``) when the config left it to the task."""
    config = record.config if isinstance(record.config, Mapping) else {}
    budget, optim = _section(config, "budget"), _section(config, "optim")
    seq_len = _positive_int(_section(config, "data").get("seq_len")) or _positive_int(
        record.data.get("seq_len") if isinstance(record.data, Mapping) else None)
    steps, batch = _positive_int(budget.get("max_steps")), _positive_int(optim.get("batch_size"))
    tokens = steps * batch * seq_len if steps and batch and seq_len else None
    cap = _positive_int(budget.get("max_tokens"))
    if cap is not None:
        tokens = cap if tokens is None else min(tokens, cap)
    kind = PLATEAU if _positive_int(budget.get("patience")) else TOKENS
    lines = _positive_int(_section(_section(config, "data"), "task_options").get("train_lines"))
    return Budget(kind, tokens, record.preset or "", lines)


def checkpoint_metrics(record: RunRecord) -> dict[str, dict[str, float]]:
    """valid and test metrics of the weights a row is ranked on: the best-validation
    checkpoint's when the record has both splits of it, else the final weights'."""
    best = record.best_checkpoint.metrics if record.best_checkpoint else {}
    return best if "valid" in best and "test" in best else record.metrics


def validation_score(record: RunRecord | Mapping[str, Any]) -> float | None:
    """The validation metric a tuned value is chosen by, oriented so that higher is better:
    of the best-validation checkpoint when the record has one (plateau rows are ranked on
    it), else of the final weights. None for a record without one. The one rule of the
    sweep's ``--tune`` and the board's tuned rows."""
    if not isinstance(record, Mapping):
        record = record.model_dump(include={"task_metric", "higher_is_better", "metrics",
                                            "best_checkpoint"})
    metric = record.get("task_metric") or "accuracy"
    best = record.get("best_checkpoint") or {}
    valid = (best.get("metrics") or {}).get("valid") or (record.get("metrics") or {}).get(
        "valid") or {}
    value = valid.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    higher = record.get("higher_is_better")
    if higher is None:
        higher = infer_direction(metric) is not False
    return float(value) if higher else -float(value)
