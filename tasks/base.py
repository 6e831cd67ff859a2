"""The task contract: data, batches, head, loss and metric of one benchmark.

A task is built from ``(seq_len, data_dir=..., seed=..., cache_dir=..., **options)`` and provides:

- ``Options``: a pydantic model (``registry.options.ComponentOptions``) of the options it takes
  (``--task-option KEY=VALUE``, and the presets' keys). The constructor validates them once
  (an unknown key names the closest known one; a wrong type or a value out of range is one
  ``ConfigError`` line naming the task, the option and the flag) and keeps ``self.options``;
  a subclass extends its parent's model (``class Options(Parent.Options)``). Checks that
  relate an option to another, or to ``seq_len``, stay in the constructor.

- ``causal``: language modelling (True: operators and routers must not see the future) or
  classification (False).
- ``vocab_size``, ``pad_id``.
- ``dataset(split)`` for split in ``SPLITS``: a sequence of examples (built once, cached).
- ``collate(examples) -> Batch``.
- ``head(d_model) -> nn.Module`` mapping hidden states (B, N, D) and the batch to logits.
- ``loss(logits, batch)`` (mean over scored items) and ``meter(split)`` accumulating metrics.
- ``describe()`` what a result record must say about the data (source, sizes, hashes).

Two base classes do the modelling part, so a concrete task only loads data:
``ClassificationTask`` (examples are ``(token_ids, label)``) and ``LanguageModelingTask``
(examples are ``(window_ids, n_context)``: a window of seq_len + 1 ids whose first
``n_context`` targets are context only and not scored, for sliding-window evaluation).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from registry import ConfigError
from registry.options import ComponentOptions, Configurable

SPLITS = ("train", "valid", "test")
IGNORE_INDEX = -100


@dataclass
class Batch:
    tokens: Tensor  # (B, N) long
    padding_mask: Tensor  # (B, N) bool, True = real token
    targets: Tensor  # (B,) class labels, or (B, N) next-token ids with IGNORE_INDEX where unscored
    # (B, N) bool, ground truth of tasks that know it: True where the token needs a long-range
    # lookup (attention). Read by the `oracle` router and by harness/engine/meters/groundtruth.py.
    needs_attention: Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) if t is not None else None
                       for t in (self.tokens, self.padding_mask, self.targets,
                                 self.needs_attention)))

    def __len__(self) -> int:
        return self.tokens.shape[0]


class Meter:
    """Accumulates a split's metric over batches; ``compute()`` returns a flat dict."""

    def update(self, logits: Tensor, batch: Batch) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError


class Task(Configurable):
    # Declarations (class attributes, the one place they are written: the registry reads them
    # from the source for `python -m harness list` and checks them on import)
    causal: ClassVar[bool] = False
    metric: ClassVar[str] = "accuracy"  # the headline metric, a key of meter().compute()
    higher_is_better: ClassVar[bool] = True
    roles: ClassVar[tuple[str, ...]] = ()  # none defined for tasks yet
    registry_name: ClassVar[str] = "?"  # set by the registry
    # What each harness preset ("smoke", "cpu", "paper") sets for this task: task options and
    # optionally "seq_len". Lets a preset shrink a task without the harness knowing the task.
    # Dict-valued keys "model", "optim", "budget" override those RunConfig sections.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    vocab_size: int
    pad_id: int = 0
    # True when built for its shape only (``python -m harness check``): vocab_size, seq_len,
    # causal, head and loss are used, no split is read. A task whose vocabulary is learnt from
    # data reports its nominal size then and sets ``vocab_is_nominal``.
    shape_only: bool = False
    vocab_is_nominal: bool = False

    option_kind: ClassVar[str] = "task"  # Options and parse_options: registry.options
    options_flag: ClassVar[str] = "--task-option {key}=VALUE"

    def __init__(
        self,
        seq_len: int,
        *,
        data_dir: str | Path | None = None,
        seed: int = 0,
        cache_dir: str | Path = ".cache/chiaroscuro",
        **options: Any,
    ):
        self.options = self.parse_options(options)
        if seq_len <= 0:
            raise ConfigError(f"--seq-len must be positive, got {seq_len}")
        self.seq_len = seq_len
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.seed = seed
        self.cache_dir = Path(cache_dir)
        self._datasets: dict[str, Sequence[Any]] = {}

    def dataset(self, split: str) -> Sequence[Any]:
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; splits are {', '.join(SPLITS)}")
        if self.shape_only:
            raise ConfigError(f"task '{self.registry_name}' was built for its shape only "
                              f"(checks on random inputs); it reads no {split} data")
        if split not in self._datasets:
            self._datasets[split] = self.load_split(split)
        return self._datasets[split]

    def load_split(self, split: str) -> Sequence[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def collate(self, examples: Sequence[Any]) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def head(self, d_model: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def meter(self, split: str) -> Meter:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Data provenance for result records. Subclasses add source, sizes, hashes."""
        return {"name": self.registry_name, "seq_len": self.seq_len, "causal": self.causal}


# -- classification ----------------------------------------------------------------------------


class MeanPoolClassifier(nn.Module):
    """Padding-aware mean over real tokens, then a linear layer: appending padding never
    changes a prediction."""

    def __init__(self, d_model: int, num_classes: int):
        super().__init__()
        self.proj = nn.Linear(d_model, num_classes)

    def forward(self, h: Tensor, batch: Batch) -> Tensor:
        m = batch.padding_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return self.proj(pooled)


class AccuracyMeter(Meter):
    def __init__(self) -> None:
        self.correct = 0
        self.count = 0
        self.loss_sum = 0.0
        self.labels: Counter[int] = Counter()

    def update(self, logits: Tensor, batch: Batch) -> None:
        logits = logits.float()
        self.loss_sum += F.cross_entropy(logits, batch.targets, reduction="sum").item()
        self.correct += (logits.argmax(-1) == batch.targets).sum().item()
        self.count += len(batch.targets)
        self.labels.update(batch.targets.tolist())

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        majority = self.labels.most_common(1)[0][1] / n if self.labels else 0.0
        return {
            "accuracy": self.correct / n,
            "loss": self.loss_sum / n,
            "majority_accuracy": majority,  # always predicting this split's most common label
            "examples": float(self.count),
        }


class ClassificationTask(Task):
    """Examples are ``(token_ids: LongTensor (L,), label: int)``; sequences longer than
    seq_len are truncated, shorter ones padded on the right with pad_id."""

    causal = False
    metric = "accuracy"
    higher_is_better = True
    num_classes: int

    def collate(self, examples: Sequence[tuple[Tensor, int]]) -> Batch:
        length = min(self.seq_len, max(len(ids) for ids, _ in examples))
        tokens = torch.full((len(examples), length), self.pad_id, dtype=torch.long)
        for i, (ids, _) in enumerate(examples):
            ids = ids[:length]
            tokens[i, : len(ids)] = ids
        mask = torch.zeros_like(tokens, dtype=torch.bool)
        for i, (ids, _) in enumerate(examples):
            mask[i, : min(len(ids), length)] = True
        labels = torch.tensor([label for _, label in examples], dtype=torch.long)
        return Batch(tokens, mask, labels)

    def head(self, d_model: int) -> nn.Module:
        return MeanPoolClassifier(d_model, self.num_classes)

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(logits.float(), batch.targets)

    def meter(self, split: str) -> Meter:
        return AccuracyMeter()


# -- language modelling ------------------------------------------------------------------------


class PerplexityMeter(Meter):
    """Token-level loss and perplexity, plus word-level perplexity exp(total NLL / words) when
    the number of words in the scored text is known (comparable across tokenizers)."""

    def __init__(self, n_words: int | None = None) -> None:
        self.nll_sum = 0.0
        self.tokens = 0
        self.n_words = n_words

    def update(self, logits: Tensor, batch: Batch) -> None:
        nll = F.cross_entropy(
            logits.float().flatten(0, 1), batch.targets.flatten(),
            ignore_index=IGNORE_INDEX, reduction="sum",
        )
        self.nll_sum += nll.item()
        self.tokens += int((batch.targets != IGNORE_INDEX).sum().item())

    def compute(self) -> dict[str, float]:
        import math

        loss = self.nll_sum / max(self.tokens, 1)
        out = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": float(self.tokens)}
        if self.n_words:
            out["word_perplexity"] = math.exp(min(self.nll_sum / self.n_words, 50.0))
        return out


class LanguageModelingTask(Task):
    """Examples are ``(window_ids: LongTensor (L + 1,), n_context: int)``, L <= seq_len.

    Inputs are window_ids[:-1], targets window_ids[1:]; the first n_context targets are not
    scored (they were scored by the previous window in sliding-window evaluation).
    """

    causal = True
    metric = "perplexity"
    higher_is_better = False

    def collate(self, examples: Sequence[tuple[Tensor, int]]) -> Batch:
        length = max(len(ids) - 1 for ids, _ in examples)
        tokens = torch.full((len(examples), length), self.pad_id, dtype=torch.long)
        targets = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros_like(tokens, dtype=torch.bool)
        for i, (ids, n_context) in enumerate(examples):
            n = len(ids) - 1
            tokens[i, :n] = ids[:-1]
            targets[i, n_context:n] = ids[1 + n_context :]
            mask[i, :n] = True
        return Batch(tokens, mask, targets)

    def head(self, d_model: int) -> nn.Module:
        return LMHead(d_model, self.vocab_size)

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(
            logits.float().flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX
        )

    def words_in_split(self, split: str) -> int | None:
        """Number of words in the scored text of a split (for word-level perplexity)."""
        return None

    def meter(self, split: str) -> Meter:
        return PerplexityMeter(self.words_in_split(split))


class LMHead(nn.Module):
    def __init__(self, d_model: int, vocab_size: int):
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, h: Tensor, batch: Batch) -> Tensor:
        return self.proj(h)


def validate_task(obj: Any) -> None:
    if not isinstance(obj, type):
        raise TypeError(f"{obj!r} is not a class")
    for attr in ("causal", "dataset", "collate", "head", "loss", "meter"):
        if not hasattr(obj, attr):
            raise TypeError(f"{obj.__name__} does not declare '{attr}' (see tasks/base.py)")
    options = getattr(obj, "Options", ComponentOptions)
    if not (isinstance(options, type) and issubclass(options, ComponentOptions)):
        raise TypeError(f"{obj.__name__}.Options is not a registry.options.ComponentOptions "
                        f"model (see tasks/base.py)")
