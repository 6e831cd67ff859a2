"""The public recall base: a task written the way docs/plugins.md says (generate() only) gets
batches scored at its answers, its ground truth on the batch, MAD's macro accuracy and the
harness's accuracy; targets need not be the next inputs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import Field

from tasks.base import IGNORE_INDEX
from tasks.recall import RecallBatch, RecallData, RecallMeter, RecallTask


class Reverse(RecallTask):
    """A plugin-style task: a few symbols, a separator, then blanks at which the symbols are
    emitted in reverse order (not teacher forced: the answers are never inputs)."""

    registry_name = "reverse"

    class Options(RecallTask.Options):
        n: int = Field(3, ge=1, description="symbols to reverse")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        self.n = self.options.n
        self.vocab_size = 8  # 0 pad, 1 blank, 2 separator, 3..7 symbols
        self.params = {"n": self.n, **self.split_sizes()}

    def generate(self, n: int, g: torch.Generator) -> RecallData:
        symbols = torch.randint(3, 8, (n, self.n), generator=g)
        inputs = torch.ones(n, 2 * self.n + 1, dtype=torch.long)
        inputs[:, : self.n] = symbols
        inputs[:, self.n] = 2
        targets = torch.full_like(inputs, IGNORE_INDEX)
        targets[:, self.n + 1 :] = symbols.flip(1)
        answers = targets != IGNORE_INDEX
        return RecallData(inputs, targets, answers, answers.clone())


def test_a_generate_only_task_gets_batches_scored_at_its_answers(tmp_path):
    task = Reverse(7, n_train=16, n_valid=8, n_test=8, cache_dir=tmp_path)
    examples = list(task.dataset("train"))
    batch = task.collate(examples[:4])
    assert isinstance(batch, RecallBatch) and batch.padding_mask.all()
    assert torch.equal(batch.answers, batch.targets != IGNORE_INDEX)
    assert torch.equal(batch.needs_attention, batch.answers)
    assert (batch.tokens[:, 4:] == 1).all()  # the answers are not inputs
    assert torch.equal(batch.to("cpu").answers, batch.answers)
    assert task.cache_path().is_file() and task.cache_path().parent.name == "reverse"
    assert task.describe()["generator"]["n"] == 3
    # perfect logits score 1, with loss near 0, in both accuracies
    logits = torch.full((*batch.targets.shape, 8), -20.0)
    logits.scatter_(2, batch.targets.clamp_min(0).unsqueeze(-1), 20.0)
    meter = task.meter("train")
    meter.update(logits, batch)
    out = meter.compute()
    assert out["accuracy"] == out["macro_accuracy"] == 1.0 and out["loss"] < 1e-6
    assert out["tokens"] == 12.0


def test_generate_must_give_every_answer_a_target(tmp_path):
    class Broken(Reverse):
        def generate(self, n, g):
            d = super().generate(n, g)
            return RecallData(d.inputs, d.targets.masked_fill(d.answers, IGNORE_INDEX),
                              d.answers)

    with pytest.raises(ValueError, match="answers without a target"):
        Broken(7, n_train=4, n_valid=4, n_test=4, cache_dir=tmp_path).dataset("train")


def test_macro_accuracy_is_torchmetrics_macro_average():
    """Per class (id) that occurs as an answer or a prediction there: tp / (tp + fn), then
    the plain mean; a class only ever predicted scores 0, classes absent everywhere do not
    count, and positions that are not answers are ignored."""
    targets = torch.tensor([[3, 3, 3, 3, 4, 4, IGNORE_INDEX, 5]])
    preds = torch.tensor([[3, 3, 3, 4, 4, 6, 7, 5]])
    answers = targets != IGNORE_INDEX
    logits = torch.nn.functional.one_hot(preds, 8).float()
    meter = RecallMeter(8)
    meter.update(logits, RecallBatch(preds, torch.ones_like(answers), targets, None, answers))
    out = meter.compute()
    # class 3: 3/4, class 4: 1/2, class 5: 1/1, class 6: predicted only -> 0; 7 was not scored
    assert out["macro_accuracy"] == pytest.approx((0.75 + 0.5 + 1.0 + 0.0) / 4)
    assert out["accuracy"] == pytest.approx(5 / 7)  # the harness's: every answer token once
    assert out["majority_accuracy"] == pytest.approx(4 / 7)
