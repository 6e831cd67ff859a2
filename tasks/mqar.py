"""`mqar`: multi-query associative recall (Zoology, Arora et al. 2023), with per-token ground truth.

An example is ``n_pairs`` key-value pairs followed by queries of earlier keys; the target at a
query is the value that key had in the context::

    window:  k1 v1 k2 v2 ... kP vP  _ _ k2 v2 _ _ _ k1 v1 _ ...     (_ = blank filler)
    input:   k1 v1 k2 v2 ... kP vP  _ _ k2 _  _ _ _ k1 _  _ ...
                                        ^ scored: target v2  ^ scored: target v1

As in Zoology, the input after a query is blank: its value is only the target. (With
``show_answers`` it is also the next input, as in this task's first version; then later
queries can be answered by elimination among the context's values, a shortcut a fixed
convolution learns too: single dct reached 0.54 and attention sat at that plateau on some seeds.)

Trained causally (next-token prediction), scored only at query positions (every other target
is IGNORE_INDEX). Answering a query needs the token right after the same key, possibly far
back: a data-dependent lookup that attention does and a fixed convolution (DCT mixing) cannot.
So the batch carries ``needs_attention``: True exactly at the query positions, the ground truth
the `oracle` router reads and that every run on this task scores its routing against
(harness/engine/meters/groundtruth.py).

Vocabulary: 0 pad, 1 blank, then ``n_keys`` key ids, then ``n_values`` value ids, with
``n_keys = n_values = (vocab_size - 2) // 2`` (Zoology's split of one vocabulary in halves).
Keys in an example are distinct; values are drawn with replacement. Queries are distinct keys
of the example in random order, placed in (query, value) slots of the region after the context;
``query_dist`` is ``uniform`` over the slots or ``power`` (Zoology's: slot gaps drawn with
density ~ x^(power_a - 1), which puts most queries soon after the context).

Generated from ``data_seed`` only (not the run's seed), all splits in one draw, cached under
``<cache_dir>/mqar/<key>.pt`` like ListOps.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from registry import ConfigError
from tasks import register_task

from . import cache
from .base import IGNORE_INDEX, SPLITS, Batch, LanguageModelingTask, PerplexityMeter

PAD_ID, BLANK_ID, FIRST_ID = 0, 1, 2
FORMAT_VERSION = 1  # bump when the generator's output or the cache layout changes
QUERY_DISTS = ("uniform", "power")


# -- examples, meter, the shared base of every ground-truth recall task --------------------------


class RecallExamples(Sequence[tuple[Tensor, Tensor]]):
    """Fixed-length windows (n, seq_len + 1) and their query masks (n, seq_len): example i is
    ``(window, is_query)``; input = window[:-1], target at a query t = window[t + 1]."""

    def __init__(self, windows: Tensor, queries: Tensor):
        self.windows, self.queries = windows, queries

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return self.windows[index].long(), self.queries[index]


class RecallMeter(PerplexityMeter):
    """Loss and perplexity on the scored tokens, their accuracy, and the accuracy of always
    predicting the split's most common target (the floor to beat)."""

    def __init__(self) -> None:
        super().__init__()
        self.correct = 0
        self.targets: Counter[int] = Counter()

    def update(self, logits: Tensor, batch: Batch) -> None:
        super().update(logits, batch)
        scored = batch.targets != IGNORE_INDEX
        self.correct += int(((logits.argmax(-1) == batch.targets) & scored).sum())
        self.targets.update(batch.targets[scored].tolist())

    def compute(self) -> dict[str, float]:
        out = super().compute()
        n = max(self.tokens, 1)
        out["accuracy"] = self.correct / n
        out["majority_accuracy"] = self.targets.most_common(1)[0][1] / n if self.targets else 0.0
        return out


def positive_int(task: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"task '{task}' option {name} must be an integer >= {minimum}, "
                          f"got {value!r}")
    return value


class RecallTask(LanguageModelingTask):
    """Causal recall tasks with ground truth: subclasses set ``params`` and ``vocab_size`` and
    implement ``generate(n, generator) -> (windows, queries)``; this class caches the draw,
    collates (targets and ``needs_attention`` at the queries only) and scores accuracy."""

    metric = "accuracy"
    higher_is_better = True
    pad_id = PAD_ID
    params: dict[str, Any]
    _blob: dict[str, Tensor] | None = None  # every split, drawn (or read from cache) once

    def generate(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def built_from(self) -> str:
        """The draw's full hash (format, sequence length, parameters): what its cache file must
        carry to be used."""
        blob = json.dumps({"format": FORMAT_VERSION, "seq_len": self.seq_len, **self.params},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def cache_path(self) -> Path:
        return self.cache_dir / self.registry_name / f"{self.built_from()[:16]}.pt"

    def _generate_blob(self) -> dict[str, Tensor]:
        sizes = [self.params[f"n_{split}"] for split in SPLITS]
        g = torch.Generator().manual_seed(self.params["data_seed"])
        windows, queries = self.generate(sum(sizes), g)
        dtype = torch.uint8 if self.vocab_size <= 256 else torch.int16
        return {"windows": windows.to(dtype), "queries": queries}

    def _draw(self) -> dict[str, Tensor]:
        return cache.load_or_build(self.cache_path(), self.built_from(), self._generate_blob,
                                   needs=("windows", "queries"), what=self.registry_name)

    def load_split(self, split: str) -> RecallExamples:
        if self._blob is None:
            self._blob = self._draw()
        sizes = [self.params[f"n_{s}"] for s in SPLITS]
        start = sum(sizes[: SPLITS.index(split)])
        end = start + sizes[SPLITS.index(split)]
        return RecallExamples(self._blob["windows"][start:end], self._blob["queries"][start:end])

    def inputs(self, windows: Tensor, queries: Tensor) -> Tensor:
        """The model's input tokens for windows (B, N + 1) with scored positions queries (B, N):
        every token but the last (each input's target is the next token). A subclass that
        hides answers from the inputs overrides this."""
        return windows[:, :-1]

    def collate(self, examples: Sequence[tuple[Tensor, Tensor]]) -> Batch:
        windows = torch.stack([w for w, _ in examples])
        queries = torch.stack([q for _, q in examples])
        tokens = self.inputs(windows, queries)
        targets = windows[:, 1:].masked_fill(~queries, IGNORE_INDEX)
        mask = torch.ones_like(tokens, dtype=torch.bool)
        return Batch(tokens, mask, targets, needs_attention=queries.clone())

    def meter(self, split: str) -> RecallMeter:
        return RecallMeter()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": "generated", "vocab_size": self.vocab_size,
                "generator": {**self.params, "format": FORMAT_VERSION},
                "ground_truth": "needs_attention = the scored query positions"}


# -- MQAR -----------------------------------------------------------------------------------------


def query_slots(n: int, n_slots: int, n_queries: int, dist: str, power_a: float,
                g: torch.Generator) -> Tensor:
    """(n, n_queries) distinct slot indices in [0, n_slots), sorted per example."""
    if dist == "uniform":
        weights = torch.ones(n, n_slots)
    else:  # Zoology's power law: slot s drawn with weight ~ (s + 1)^(power_a - 1)
        weights = (torch.arange(1, n_slots + 1, dtype=torch.float64) ** (power_a - 1.0))
        weights = weights.float().expand(n, -1)
    return torch.multinomial(weights, n_queries, replacement=False, generator=g).sort(1).values


def mqar_examples(n: int, seq_len: int, n_pairs: int, n_queries: int, n_keys: int,
                  query_dist: str, power_a: float, g: torch.Generator,
                  noise: float = 0.0) -> tuple[Tensor, Tensor]:
    """Windows (n, seq_len + 1) and query masks (n, seq_len) of MQAR; ``noise`` > 0 replaces
    that share of the blank filler with random value tokens (MAD's noisy recall)."""
    length = seq_len + 1
    keys = torch.rand(n, n_keys, generator=g).argsort(1)[:, :n_pairs] + FIRST_ID
    values = torch.randint(FIRST_ID + n_keys, FIRST_ID + 2 * n_keys, (n, n_pairs), generator=g)
    windows = torch.full((n, length), BLANK_ID, dtype=torch.long)
    windows[:, 0 : 2 * n_pairs : 2] = keys
    windows[:, 1 : 2 * n_pairs : 2] = values
    if noise > 0:
        rest = windows[:, 2 * n_pairs :]
        noisy = torch.rand(rest.shape, generator=g) < noise
        fill = torch.randint(FIRST_ID + n_keys, FIRST_ID + 2 * n_keys, rest.shape, generator=g)
        windows[:, 2 * n_pairs :] = torch.where(noisy, fill, rest)
    asked = torch.rand(n, n_pairs, generator=g).argsort(1)[:, :n_queries]  # which pairs
    slots = query_slots(n, (length - 2 * n_pairs) // 2, n_queries, query_dist, power_a, g)
    at = 2 * n_pairs + 2 * slots  # window position of each query key; its value follows
    rows = torch.arange(n)[:, None]
    windows[rows, at] = torch.gather(keys, 1, asked)
    windows[rows, at + 1] = torch.gather(values, 1, asked)
    queries = torch.zeros(n, seq_len, dtype=torch.bool)
    queries[rows, at] = True
    return windows, queries


@register_task(
    "mqar",
    description="multi-query associative recall (Zoology): key-value pairs, then queries of "
    "earlier keys; causal, scored at the queries, which carry needs_attention ground truth",
)
class MQAR(RecallTask):
    """Options: ``vocab_size`` (total ids, default 64: 31 keys, 31 values), ``n_pairs`` (8),
    ``n_queries`` (default n_pairs: every key asked once), ``query_dist`` (uniform|power),
    ``power_a`` (0.01), ``show_answers`` (False: a query's value is its target only, as in
    Zoology; True puts it in the input after the query too, which opens an elimination
    shortcut), ``n_train``/``n_valid``/``n_test``, ``data_seed`` (0)."""

    noise: ClassVar[float] = 0.0  # share of blank filler replaced by random values (noisy-recall)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seq_len": 32, "n_pairs": 4, "n_train": 256, "n_valid": 64, "n_test": 64},
        # Measured on 2 cores (results/README.md): single attn reaches ~1.0 in 1000 steps, single
        # dct ~0.35. Three layers, not Zoology's two: with two, dct+attn routing learned no
        # recall even with the oracle's positions at attention fraction 0.9 (0.34), while three
        # let the oracle reach 1.0 at 0.375. Batch 64 without weight decay matters: at batch 32
        # and weight decay 0.01 attention sat at 0.42 for 3000 steps.
        "cpu": {"seq_len": 32, "vocab_size": 32, "n_pairs": 4,
                "n_train": 40_000, "n_valid": 1_000, "n_test": 1_000,
                "model": {"layers": 3, "d_model": 64, "heads": 1},
                "optim": {"batch_size": 64, "lr": 3e-3, "weight_decay": 0.0,
                          "warmup_steps": 100},
                "budget": {"max_steps": 1000, "eval_every": 200}},
        "paper": {"seq_len": 512, "vocab_size": 8192, "n_pairs": 64,
                  "n_train": 100_000, "n_valid": 3_000, "n_test": 3_000},
    }  # fmt: skip

    def __init__(self, seq_len: int, *, vocab_size: int = 64, n_pairs: int = 8,
                 n_queries: int | None = None, query_dist: str = "uniform",
                 power_a: float = 0.01, show_answers: bool = False, n_train: int = 40_000,
                 n_valid: int = 1_000,
                 n_test: int = 1_000, data_seed: int = 0, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name = self.registry_name
        n_pairs = positive_int(name, "n_pairs", n_pairs)
        n_queries = positive_int(name, "n_queries", n_pairs if n_queries is None else n_queries)
        if query_dist not in QUERY_DISTS:
            raise ConfigError(f"task '{name}' option query_dist must be one of "
                              f"{', '.join(QUERY_DISTS)}, got {query_dist!r}")
        if not isinstance(power_a, int | float) or not 0 < power_a <= 1:
            raise ConfigError(f"task '{name}' option power_a must be in (0, 1], got {power_a!r}")
        if not isinstance(show_answers, bool):
            raise ConfigError(f"task '{name}' option show_answers must be true or false, got "
                              f"{show_answers!r}")
        n_keys = (positive_int(name, "vocab_size", vocab_size, 4) - FIRST_ID) // 2
        if n_pairs > n_keys:
            raise ConfigError(f"task '{name}': n_pairs ({n_pairs}) exceeds the {n_keys} distinct "
                              f"keys of vocab_size {vocab_size}; raise vocab_size or lower n_pairs")
        if n_queries > n_pairs:
            raise ConfigError(f"task '{name}': n_queries ({n_queries}) exceeds n_pairs "
                              f"({n_pairs}); each query asks a distinct key")
        slots = (seq_len + 1 - 2 * n_pairs) // 2
        if n_queries > slots:
            raise ConfigError(f"task '{name}': seq_len {seq_len} holds {n_pairs} pairs and only "
                              f"{max(slots, 0)} query slots for {n_queries} queries; raise "
                              f"--seq-len to at least {2 * n_pairs + 2 * n_queries - 1}")
        self.n_keys = n_keys
        self.vocab_size = FIRST_ID + 2 * n_keys
        self.params = {
            "vocab_size": vocab_size, "n_pairs": n_pairs, "n_queries": n_queries,
            "query_dist": query_dist, "power_a": float(power_a), "noise": self.noise,
            "show_answers": bool(show_answers),
            "n_train": positive_int(name, "n_train", n_train),
            "n_valid": positive_int(name, "n_valid", n_valid),
            "n_test": positive_int(name, "n_test", n_test),
            "data_seed": positive_int(name, "data_seed", data_seed, 0),
        }  # fmt: skip

    def inputs(self, windows: Tensor, queries: Tensor) -> Tensor:
        tokens = windows[:, :-1]
        if self.params["show_answers"]:
            return tokens
        # the answer is the target at the query, not also the next input (module docstring)
        answered = torch.zeros_like(queries)
        answered[:, 1:] = queries[:, :-1]
        return tokens.masked_fill(answered, BLANK_ID)

    def generate(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        p = self.params
        return mqar_examples(n, self.seq_len, p["n_pairs"], p["n_queries"], self.n_keys,
                             p["query_dist"], p["power_a"], g, noise=p["noise"])
