"""Mixed-dataset language modelling: several registered text corpora, one shared tokenizer.

    python -m harness run --task mix --task-option tasks=wikitext103:0.8,wikitext2:0.2 \\
        --task-option wikitext103.data_dir=DIR103 --task-option wikitext2.data_dir=DIR2

Options:
- ``tasks``: ``name:weight,...`` of registered language-modelling tasks whose text the harness
  reads (WikiText-103, WikiText-2, or a plugin built on the same reader). Weights are shares of
  the training windows; they are normalised to sum to 1.
- ``tokenizer`` (bpe | word), ``vocab_size``: one tokenizer, trained on the concatenated
  training text of every component, encodes every component.
- ``<name>.<option>``: an option for one component (``wikitext2.train_file=wiki.valid.tokens``,
  ``wikitext2.data_dir=DIR``); ``--data-dir`` applies to every component that names none.

Training windows: the component whose windows-per-weight is largest contributes all of its
windows; every other one is upsampled to its share (whole copies plus a seeded subset), so the
mix matches the weights exactly and no text is dropped. Validation and test are each
component's own split, kept apart: the record carries the mix's overall metrics plus every
component's (``"wikitext2/perplexity"``, ``"wikitext2/word_perplexity"``, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from registry import ConfigError
from registry.options import ComponentOptions

from . import register_task, text
from .base import Batch, LanguageModelingTask, Meter, PerplexityMeter


def parse_components(spec: str) -> dict[str, float]:
    """'wikitext103:0.8,wikitext2:0.2' -> {'wikitext103': 0.8, 'wikitext2': 0.2}."""
    if not spec.strip():
        raise ConfigError("task 'mix' needs --task-option tasks=NAME:WEIGHT,... "
                          "(e.g. tasks=wikitext103:0.8,wikitext2:0.2)")
    weights: dict[str, float] = {}
    for item in spec.split(","):
        name, sep, weight = item.strip().partition(":")
        try:
            value = float(weight) if sep else 1.0
        except ValueError:
            value = -1.0
        if not name or value <= 0 or not np.isfinite(value):
            raise ConfigError(f"task 'mix': '{item.strip()}' is not NAME:WEIGHT with a positive "
                              f"weight (e.g. tasks=wikitext103:0.8,wikitext2:0.2)")
        if name in weights:
            raise ConfigError(f"task 'mix': {name} is listed twice in tasks={spec}")
        weights[name] = value
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def mix_counts(sizes: list[int], weights: list[float]) -> list[int]:
    """Windows drawn from each component per epoch: the largest windows-per-weight sets the
    epoch, the others are upsampled to their weight."""
    if any(n <= 0 for n in sizes):
        raise ConfigError("task 'mix': a component has no training windows")
    epoch = max(n / w for n, w in zip(sizes, weights, strict=True))
    return [max(1, round(w * epoch)) for w in weights]


class MixWindows(Sequence[tuple[Tensor, int, int]]):
    """Examples ``(window_ids, n_context, source)``: a component's window and its index."""

    def __init__(self, parts: list[Sequence[Any]], picks: list[np.ndarray]):
        self.parts = parts
        self.source = np.concatenate([np.full(len(p), i) for i, p in enumerate(picks)])
        self.index = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        source = int(self.source[i])
        ids, n_context = self.parts[source][int(self.index[i])]
        return ids, n_context, source

    def __iter__(self) -> Iterator[tuple[Tensor, int, int]]:
        for i in range(len(self)):
            yield self[i]


class MixBatch(Batch):
    """A language-modelling batch that remembers which component each example came from."""

    def __init__(self, tokens: Tensor, padding_mask: Tensor, targets: Tensor, source: Tensor):
        super().__init__(tokens, padding_mask, targets)
        self.source = source

    def to(self, device: torch.device | str) -> MixBatch:
        b = super().to(device)
        return MixBatch(b.tokens, b.padding_mask, b.targets, self.source.to(device))


class MixMeter(Meter):
    """The mix's overall metrics, plus each component's own meter on its own examples."""

    def __init__(self, names: list[str], overall: Meter, parts: list[Meter]):
        self.names, self.overall, self.parts = names, overall, parts

    def update(self, logits: Tensor, batch: Batch) -> None:
        self.overall.update(logits, batch)
        source = batch.source  # type: ignore[attr-defined]
        for i, meter in enumerate(self.parts):
            rows = source == i
            if bool(rows.any()):
                meter.update(logits[rows], Batch(batch.tokens[rows], batch.padding_mask[rows],
                                                 batch.targets[rows]))

    def compute(self) -> dict[str, float]:
        out = self.overall.compute()
        for name, meter in zip(self.names, self.parts, strict=True):
            out.update({f"{name}/{k}": v for k, v in meter.compute().items()})
        return out


@register_task(
    "mix",
    description="mixed-dataset language modelling over registered LM corpora "
                "(tasks=NAME:WEIGHT,...), one shared tokenizer, evaluated per corpus",
)
class Mix(LanguageModelingTask):
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seq_len": 64}, "cpu": {"seq_len": 128}, "paper": {"seq_len": 512},
    }

    class Options(LanguageModelingTask.Options):
        tasks: str = Field(description="NAME:WEIGHT,... of language-modelling corpora, e.g. "
                                       "wikitext103:0.8,wikitext2:0.2")
        tokenizer: Literal["bpe", "word"] = Field(
            "bpe", description="one tokenizer trained on every component's training text")
        vocab_size: int | None = Field(None, ge=4, description="tokenizer ids (bpe: 8192 unless "
                                                               "set)")

    @classmethod
    def parse_options(cls, values: dict[str, Any]) -> ComponentOptions:
        """The mix's own options; a dotted key (``wikitext2.train_file``) is a component's,
        checked when that component is built."""
        return super().parse_options({k: v for k, v in values.items() if "." not in k})

    def __init__(self, seq_len: int, **kwargs: Any):
        dotted = {key: kwargs.pop(key) for key in [k for k in kwargs if "." in k]}
        super().__init__(seq_len, **kwargs)
        kind, vocab = self.options.tokenizer, self.options.vocab_size
        self.weights = parse_components(self.options.tasks)
        per_part = self._component_options(dotted)
        self.names = list(self.weights)
        self.components = [self._build(name, per_part.get(name, {}), kind, vocab)
                           for name in self.names]
        self._share_tokenizer(kind, vocab)

    def _component_options(self, dotted: dict[str, Any]) -> dict[str, dict[str, Any]]:
        per_part: dict[str, dict[str, Any]] = {}
        for key, value in dotted.items():
            name, _, option = key.partition(".")
            if name not in self.weights:
                raise ConfigError(f"task 'mix': option {key} names {name}, which is not in "
                                  f"tasks ({', '.join(self.weights)})")
            per_part.setdefault(name, {})[option] = value
        return per_part

    def _build(self, name: str, opts: dict[str, Any], kind: str, vocab: int | None) -> Any:
        from tasks import TASKS

        cls = TASKS.get(name)
        if cls is Mix or not getattr(cls, "causal", False) or not all(
                hasattr(cls, attr) for attr in ("lines", "source_key", "use_tokenizer")):
            raise ConfigError(f"task 'mix': {name} is not a text corpus for language modelling "
                              f"(components need lines(), source_key() and use_tokenizer(), "
                              f"like wikitext2)")
        data_dir = opts.pop("data_dir", self.data_dir)
        opts = {"tokenizer": kind, **({"vocab_size": vocab} if vocab else {}), **opts}
        return cls(self.seq_len, data_dir=data_dir, seed=self.seed, cache_dir=self.cache_dir,
                   **opts)

    def _share_tokenizer(self, kind: str, vocab: int | None) -> None:
        """One tokenizer from the concatenated training text; every component encodes with
        it (set before any component encodes, so none trains its own)."""
        if kind == "bpe" and vocab is None:
            vocab = 8192
        key = text.digest("mix-train-lines", [(n, c.source_key("train"))
                                              for n, c in zip(self.names, self.components)])

        def texts() -> list[str]:
            return [" ".join(line.split()) for c in self.components for line in c.lines("train")]

        self.tokenizer = text.build_tokenizer(kind, cache_dir=self.cache_dir, train_key=key,
                                              train_texts=texts, vocab_size=vocab,
                                              trained_on="train splits of " + "+".join(self.names))
        for c in self.components:
            c.use_tokenizer(self.tokenizer)

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.tokenizer.vocab_size

    def load_split(self, split: str) -> MixWindows:
        parts = [c.dataset(split) for c in self.components]
        if split != "train":  # evaluation: every window of every component, once
            return MixWindows(parts, [np.arange(len(p)) for p in parts])
        counts = mix_counts([len(p) for p in parts], [self.weights[n] for n in self.names])
        rng = np.random.default_rng(self.seed)
        picks = []
        for part, count in zip(parts, counts, strict=True):
            copies, rest = divmod(count, len(part))
            extra = rng.choice(len(part), size=rest, replace=False)
            picks.append(np.concatenate([np.tile(np.arange(len(part)), copies), extra]))
        return MixWindows(parts, picks)

    def collate(self, examples: Sequence[tuple[Tensor, int, int]]) -> MixBatch:
        b = super().collate([(ids, n_context) for ids, n_context, _ in examples])
        source = torch.tensor([s for _, _, s in examples], dtype=torch.long)
        return MixBatch(b.tokens, b.padding_mask, b.targets, source)

    def meter(self, split: str) -> MixMeter:
        return MixMeter(self.names, PerplexityMeter(),
                        [c.meter(split) for c in self.components])

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        train = self.dataset("train")
        out.update(
            weights=self.weights,
            tokenizer=self.tokenizer.describe(),
            train_windows={n: int((train.source == i).sum()) for i, n in enumerate(self.names)},
            components={n: c.describe() for n, c in zip(self.names, self.components)},
        )
        return out
