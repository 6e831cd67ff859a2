"""ListOps from the Long Range Arena (Tay et al., 2021): evaluate a nested list expression.

(Longer than 500 lines on purpose: the generator, the TSV reader and the task share one
vocabulary and one set of tree invariants, and a third of the file is this description.)

An example is a prefix expression over the digits 0-9 with the operators ``[MIN``, ``[MAX``,
``[MED`` (median, rounded down) and ``[SM`` (sum modulo 10), each closed by ``]``::

    [MAX 2 9 [MIN 4 7 ] 0 ]   ->   9

The label is the value of the expression (10 classes). Two sources:

- **generated** (default): a seeded reimplementation of the LRA generator
  (google-research/long-range-arena, ``lra_benchmarks/data/listops.py``) with its parameters:
  each node below ``max_depth`` is an operator with probability ``VALUE_P`` = 0.25 (else a
  digit), an operator has 2..``max_args`` children, trees are drawn from depth 1 and kept while
  ``min_length < length < max_length`` (strict; a tree's length counts the operator and ``]``
  tokens, not parentheses), distinct trees only, until ``n_train + n_valid + n_test`` are
  collected; the first ``n_train`` form the train split, the next ``n_valid`` the valid split and
  the rest the test split. The data depends on ``data_seed`` only (not on the run's seed), and is
  cached under ``<cache_dir>/listops/<key>.pt``.
- **files**: with ``data_dir``, the released LRA TSV files ``basic_train.tsv``,
  ``basic_val.tsv`` and ``basic_test.tsv`` (header ``Source<TAB>Target``; sources carry
  parentheses, which are dropped, so a tree of length L is exactly L tokens).

The generator builds the flat token list directly (an explicit stack instead of LRA's nested
tuples) with the same per-node probabilities, and abandons a tree as soon as it can no longer be
shorter than ``max_length``. Every tree it keeps has the probability it has under the LRA
generator, so the kept data has the same distribution; the random stream itself differs, so a
seed does not reproduce LRA's released files (those were never seeded anyway).
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any, ClassVar, overload

import torch
from pydantic import Field
from torch import Tensor

from registry import ConfigError, DataError
from tasks import register_task

from . import cache
from .base import SPLITS, ClassificationTask

# -- vocabulary ---------------------------------------------------------------------------------

#: Token ids are positions in this tuple; the order is part of the data format (cached data and
#: trained embeddings depend on it): never reorder, only append.
VOCAB: tuple[str, ...] = (
    "<pad>", "<unk>",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    "[MIN", "[MAX", "[MED", "[SM", "[FIRST", "[LAST",
    "]",
)  # fmt: skip
TOKEN_IDS: dict[str, int] = {tok: i for i, tok in enumerate(VOCAB)}
PAD_ID = TOKEN_IDS["<pad>"]
UNK_ID = TOKEN_IDS["<unk>"]  # reserved; sources with unknown tokens are rejected, not mapped
DIGIT0_ID = TOKEN_IDS["0"]
MIN_ID, MAX_ID, MED_ID, SM_ID = (TOKEN_IDS[t] for t in ("[MIN", "[MAX", "[MED", "[SM"))
FIRST_ID, LAST_ID = TOKEN_IDS["[FIRST"], TOKEN_IDS["[LAST"]
END_ID = TOKEN_IDS["]"]
NUM_CLASSES = 10

#: Operators the LRA generator draws from (FIRST and LAST exist in the format but are unused).
GENERATED_OPERATORS = (MIN_ID, MAX_ID, MED_ID, SM_ID)
VALUE_P = 0.25  # LRA: a node below max_depth is an operator with this probability

SPLIT_FILES = {"train": "basic_train.tsv", "valid": "basic_val.tsv", "test": "basic_test.tsv"}
TSV_HEADER = "Source\tTarget"
_PARENS = ("(", ")")
_PAREN_CODE = 255  # byte code of a parenthesis while tokenising a TSV line; deleted afterwards

FORMAT_VERSION = 1  # bump when the generator's output or the cache layout changes
GENERATOR = "lra-listops-flat-v2"  # v1: a development version with another draw order
# A generator that finds no new tree in this many consecutive draws gives up: the length window
# is (nearly) impossible for max_depth/max_args, or there are fewer distinct trees than asked for.
_STALL_DRAWS = 500_000


# -- generation ---------------------------------------------------------------------------------


def sample_tree(
    rand: Callable[[], float], max_depth: int, max_args: int, max_length: int, out: list[int]
) -> bool:
    """Draw one LRA ListOps tree into ``out`` (cleared first) as flat token ids, in prefix order.

    ``rand`` is a ``random.Random(seed).random``: only ``random()`` is used, whose stream Python
    guarantees across versions. Per node, as in LRA: below ``max_depth``, an operator iff
    ``random() <= VALUE_P``, else a digit; at ``max_depth`` a digit. An operator has 2..max_args
    children (uniform) and one of the four operators (uniform); a digit is uniform over 0-9 (drawn
    from the same ``random()`` value that made the node a digit: given ``u > VALUE_P`` (or any
    ``u`` at max_depth), ``int(u * 40) % 10`` is uniform).

    Returns False (``out`` then holds a partial tree) as soon as the tree's length is certain to
    reach ``max_length``: an operator with n children adds n + 1 tokens whatever its children
    are (itself and ``]``; each child replaces its slot), so a tree's length is
    1 + sum(n + 1) over its operators, and the running sum is a lower bound that only grows.
    """
    out.clear()
    append = out.append
    n_args = max_args - 1  # number of choices for an operator's argument count, 2..max_args
    ops = GENERATED_OPERATORS
    digit0, end, value_p = DIGIT0_ID, END_ID, VALUE_P
    u = rand()
    if max_depth <= 1 or u > value_p:  # a single digit
        append(digit0 + int(u * 40) % 10)
        return True
    n = 2 + int(rand() * n_args)
    length_bound = n + 2
    if length_bound >= max_length:
        return False
    append(ops[int(rand() * 4)])
    slots = [n]  # children still to draw, for each open operator (the path from the root)
    while slots:
        left = slots[-1]
        can_branch = len(slots) + 1 < max_depth  # the children's depth is len(slots) + 1
        while left:
            u = rand()
            if u <= value_p and can_branch:
                break
            append(digit0 + int(u * 40) % 10)
            left -= 1
        if left:  # the next child is an operator: open it
            slots[-1] = left - 1
            n = 2 + int(rand() * n_args)
            length_bound += n + 1
            if length_bound >= max_length:
                return False
            append(ops[int(rand() * 4)])
            slots.append(n)
        else:  # all children drawn: close the operator
            slots.pop()
            append(end)
    return True


def _median(values: list[int]) -> int:
    values = sorted(values)
    half = len(values) // 2
    if len(values) % 2:
        return values[half]
    return (values[half - 1] + values[half]) // 2  # int(np.median(...)) for non-negative ints


def evaluate(ids: bytes | Sequence[int] | Tensor) -> int:
    """The value of a ListOps expression given as token ids (parentheses already dropped)."""
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    stack: list[list[int]] = [[]]  # each open operator: [op_id, arg, arg, ...]
    top = stack[0]
    d0, d9, first_op, last_op, end = DIGIT0_ID, DIGIT0_ID + 9, MIN_ID, LAST_ID, END_ID
    for t in ids:
        if d0 <= t <= d9:
            top.append(t - d0)
        elif first_op <= t <= last_op:
            top = [t]
            stack.append(top)
        elif t == end and len(stack) > 1:
            op, *args = stack.pop()
            if not args:
                raise ValueError(f"operator {VOCAB[op]} has no arguments")
            if op == MIN_ID:
                value = min(args)
            elif op == MAX_ID:
                value = max(args)
            elif op == MED_ID:
                value = _median(args)
            elif op == SM_ID:
                value = sum(args) % 10
            elif op == FIRST_ID:
                value = args[0]
            else:
                value = args[-1]
            top = stack[-1]
            top.append(value)
        else:
            name = VOCAB[t] if 0 <= t < len(VOCAB) else str(t)
            raise ValueError(f"unexpected token {name!r} in a ListOps expression")
    if len(stack) != 1 or len(stack[0]) != 1:
        raise ValueError("not a single complete ListOps expression")
    return stack[0][0]


def generate(
    *,
    min_length: int,
    max_length: int,
    max_depth: int,
    max_args: int,
    n: int,
    data_seed: int,
    progress: bool = True,
) -> tuple[list[bytes], list[int]]:
    """``n`` distinct trees with min_length < length < max_length, in the order drawn, and
    their labels. Token ids are stored one per byte (the vocabulary has fewer than 256)."""
    rand = random.Random(data_seed).random
    out: list[int] = []
    found: dict[bytes, None] = {}  # insertion-ordered set
    draws_since_new = 0
    from tqdm.auto import tqdm

    with tqdm(
        total=n, desc="ListOps: generating trees", unit="tree", delay=1.0, mininterval=0.5,
        disable=not progress,
    ) as bar:
        while len(found) < n:
            if sample_tree(rand, max_depth, max_args, max_length, out) and len(out) > min_length:
                key = bytes(out)
                if key not in found:
                    found[key] = None
                    draws_since_new = 0
                    bar.update()
                    continue
            draws_since_new += 1
            if draws_since_new >= _STALL_DRAWS:
                raise ConfigError(
                    f"listops: found only {len(found)} of {n} distinct trees with "
                    f"{min_length} < length < {max_length} (max_depth={max_depth}, "
                    f"max_args={max_args}) after {_STALL_DRAWS} draws without a new one; widen "
                    "the length window (min_length/max_length) or ask for fewer examples"
                )
    trees = list(found)
    return trees, [evaluate(t) for t in trees]


# -- reading the LRA files ----------------------------------------------------------------------

_BYTE_CODES: dict[str, int] = {tok: i for tok, i in TOKEN_IDS.items() if i not in (PAD_ID, UNK_ID)}
_BYTE_CODES.update({p: _PAREN_CODE for p in _PARENS})
_DELETE = bytes([_PAREN_CODE])


def _tokenize(source: str, where: str) -> bytes:
    try:
        codes = bytes(map(_BYTE_CODES.__getitem__, source.split()))
    except KeyError as exc:
        known = " ".join(t for t in VOCAB if t in _BYTE_CODES)
        raise DataError(f"{where}: unknown token {exc.args[0]!r} (known: {known} ( ))") from None
    ids = codes.translate(None, _DELETE)
    if not ids:
        raise DataError(f"{where}: empty source (no tokens besides parentheses)")
    return ids


def read_tsv(path: Path, progress: bool = True) -> tuple[list[bytes], list[int], str]:
    """Examples (token ids as bytes), labels and the SHA-256 of one LRA ListOps TSV file.

    Raises DataError naming the file and line for anything malformed.
    """
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    trees: list[bytes] = []
    labels: list[int] = []
    with open(path, "rb") as f, tqdm(
        total=path.stat().st_size, desc=f"ListOps: reading {path.name}", unit="B",
        unit_scale=True, delay=1.0, mininterval=0.5, disable=not progress,
    ) as bar:
        lineno = 0
        for lineno, raw in enumerate(f, start=1):
            digest.update(raw)
            bar.update(len(raw))
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start} of the line)"
                ) from None
            line = line.rstrip("\r\n")
            if lineno == 1:
                if line.lstrip("\ufeff") != TSV_HEADER:
                    raise DataError(
                        f"{where}: expected the header line 'Source<TAB>Target' of an LRA "
                        f"ListOps TSV file, got {line[:60]!r}"
                    )
                continue
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or not fields[1].strip():
                raise DataError(f"{where}: row has no label (expected 'Source<TAB>Target')")
            if len(fields) > 2:
                raise DataError(
                    f"{where}: expected 2 tab-separated columns (Source, Target), "
                    f"got {len(fields)}"
                )
            target = fields[1].strip()
            try:
                label = int(target)
            except ValueError:
                raise DataError(f"{where}: label {target!r} is not an integer") from None
            if not 0 <= label < NUM_CLASSES:
                raise DataError(f"{where}: label {label} is outside 0-9")
            trees.append(_tokenize(fields[0], where))
            labels.append(label)
    if lineno == 0:
        raise DataError(f"{path}:1: empty file; expected the header line 'Source<TAB>Target'")
    if not trees:
        raise DataError(f"{path}: no examples after the header")
    return trees, labels, digest.hexdigest()


# -- examples -----------------------------------------------------------------------------------


class ListOpsExamples(Sequence[tuple[Tensor, int]]):
    """A split's examples ``(LongTensor ids, int label)``, stored packed (one byte a token) and
    unpacked on access, so that the paper-size data takes ~100 MB rather than ~800 MB."""

    def __init__(self, tokens: Tensor, offsets: Sequence[int], labels: Sequence[int]):
        self._tokens = tokens  # uint8, all splits
        self._offsets = list(offsets)  # len(labels) + 1 positions into tokens
        self._labels = list(labels)

    def __len__(self) -> int:
        return len(self._labels)

    @overload
    def __getitem__(self, index: int) -> tuple[Tensor, int]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[Tensor, int]]: ...

    def __getitem__(self, index: int | slice) -> tuple[Tensor, int] | list[tuple[Tensor, int]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self._labels)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError(f"example {index} out of range for {n} examples")
        return self._tokens[self._offsets[i] : self._offsets[i + 1]].long(), self._labels[i]

    def __iter__(self) -> Iterator[tuple[Tensor, int]]:
        for i in range(len(self)):
            yield self[i]

    def lengths(self) -> list[int]:
        return [b - a for a, b in zip(self._offsets, self._offsets[1:])]

    def labels(self) -> list[int]:
        return list(self._labels)


def _pack(trees: Sequence[bytes]) -> tuple[Tensor, list[int]]:
    buffer = bytearray().join(trees)
    if not buffer:
        return torch.zeros(0, dtype=torch.uint8), [0] * (len(trees) + 1)
    return torch.frombuffer(buffer, dtype=torch.uint8), list(
        accumulate((len(t) for t in trees), initial=0)
    )


# -- the task -----------------------------------------------------------------------------------


@register_task(
    "listops",
    description="Long Range Arena ListOps: the value (0-9) of a nested MIN/MAX/MED/SUM-mod-10 "
    "expression; generated with LRA's parameters, or read from LRA's TSV files",
)
class ListOps(ClassificationTask):
    """Options (``Options`` below): the exclusive length window ``min_length`` <
    length < ``max_length`` (seq_len // 4 and seq_len unless set, so seq_len 2000 gives LRA's
    500-2000), the tree shape, the split sizes and ``data_seed``. They only shape generated
    data; with ``data_dir`` the LRA files are read instead."""

    num_classes = NUM_CLASSES
    vocab_size = len(VOCAB)
    pad_id = PAD_ID
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # a few hundred short trees: generated in well under a second
        "smoke": {"seq_len": 64, "n_train": 512, "n_valid": 128, "n_test": 128},
        # short trees a small model on 2 CPU cores learns well beyond the majority class in
        # ~2-3 minutes; generated in a few seconds
        "cpu": {
            "seq_len": 128, "min_length": 8, "max_length": 128,
            "n_train": 20_000, "n_valid": 1_000, "n_test": 1_000,
        },
        # Long Range Arena's data (lengths 500-2000, 96000/2000/2000)
        "paper": {
            "seq_len": 2000, "min_length": 500, "max_length": 2000,
            "n_train": 96_000, "n_valid": 2_000, "n_test": 2_000,
        },
    }  # fmt: skip

    class Options(ClassificationTask.Options):
        min_length: int | None = Field(
            None, ge=0, description="generated trees are longer than this (seq_len // 4 unless "
                                    "set)")
        max_length: int | None = Field(
            None, ge=2, description="generated trees are shorter than this (seq_len unless set; "
                                    "at most seq_len)")
        max_depth: int = Field(10, ge=2, description="deepest operator nesting")
        max_args: int = Field(10, ge=2, description="most arguments of one operator")
        n_train: int = Field(96_000, ge=1, description="generated training examples")
        n_valid: int = Field(2_000, ge=1, description="generated validation examples")
        n_test: int = Field(2_000, ge=1, description="generated test examples")
        data_seed: int = Field(0, ge=0, description="seeds the generated data (not the run's "
                                                    "seed)")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        o = self.options
        self.params: dict[str, int] = {
            **o.model_dump(),
            "min_length": seq_len // 4 if o.min_length is None else o.min_length,
            "max_length": seq_len if o.max_length is None else o.max_length,
        }
        self.truncated: dict[str, int] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._generated: dict[str, ListOpsExamples] | None = None
        if self.data_dir is not None:
            defaults = type(o)()
            ignored = sorted(k for k, v in o if v != getattr(defaults, k))
            if ignored:
                warnings.warn(
                    f"listops: options {', '.join(ignored)} shape generated data only; they are "
                    f"ignored when reading the LRA files from {self.data_dir}",
                    UserWarning,
                    stacklevel=2,
                )
            self._check_files()
        else:
            self._check_window()

    # -- options --------------------------------------------------------------------------------

    def _check_window(self) -> None:
        p = self.params
        lo, hi = p["min_length"], p["max_length"]
        if hi > self.seq_len:
            raise ConfigError(
                f"listops: max_length ({hi}) exceeds seq_len ({self.seq_len}); generated trees "
                f"would be truncated. Lower max_length or raise --seq-len"
            )
        if lo + 1 >= hi:
            raise ConfigError(
                f"listops: min_length ({lo}) must be below max_length ({hi}) with room for a "
                f"length strictly between them (min_length < length < max_length)"
            )
        # Lengths a tree can have: 1 (a digit), or 1 + sum(n + 1) over its operators, which is
        # at least 4 and at most the full max_args-ary tree of depth max_depth.
        longest = 1
        for _ in range(p["max_depth"] - 1):
            longest = min(2 + p["max_args"] * longest, hi)
        if not (lo < 1 < hi) and (hi <= 4 or lo + 1 > longest):
            raise ConfigError(
                f"listops: no tree has min_length ({lo}) < length < max_length ({hi}) with "
                f"max_depth={p['max_depth']} and max_args={p['max_args']} (an operator tree has "
                f"length 4..{longest}); widen the window"
            )

    def _check_files(self) -> None:
        assert self.data_dir is not None
        missing = [name for name in SPLIT_FILES.values() if not (self.data_dir / name).is_file()]
        if missing:
            where = (
                f"folder {self.data_dir}" if self.data_dir.is_dir()
                else f"{self.data_dir} (not a folder)"
            )
            raise DataError(
                f"listops: missing {', '.join(missing)} in {where}; a ListOps data_dir holds the "
                f"LRA release files {', '.join(SPLIT_FILES.values())} (lra_release/listops-1000/)"
            )

    # -- generated data -------------------------------------------------------------------------

    def built_from(self) -> str:
        """The generated data's full hash (format, generator, parameters): what its cache file
        must carry to be used."""
        blob = json.dumps(
            {"format": FORMAT_VERSION, "generator": GENERATOR, **self.params}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def cache_key(self) -> str:
        return self.built_from()[:16]

    def cache_path(self) -> Path:
        return self.cache_dir / "listops" / f"{self.cache_key()}.pt"

    def _generate_blob(self) -> dict[str, Any]:
        p = self.params
        trees, labels = generate(
            min_length=p["min_length"], max_length=p["max_length"],
            max_depth=p["max_depth"], max_args=p["max_args"],
            n=p["n_train"] + p["n_valid"] + p["n_test"], data_seed=p["data_seed"],
        )  # fmt: skip
        tokens, offsets = _pack(trees)
        return {
            "tokens": tokens,
            "offsets": torch.tensor(offsets, dtype=torch.int64),
            "labels": torch.tensor(labels, dtype=torch.uint8),
        }

    def _generate_all(self) -> dict[str, ListOpsExamples]:
        if self._generated is None:
            p = self.params
            blob = cache.load_or_build(self.cache_path(), self.built_from(), self._generate_blob,
                                       needs=("tokens", "offsets", "labels"), what="listops")
            offsets = blob["offsets"].tolist()
            labels = blob["labels"].tolist()
            bounds = list(accumulate((p["n_train"], p["n_valid"], p["n_test"]), initial=0))
            self._generated = {
                split: ListOpsExamples(blob["tokens"], offsets[a : b + 1], labels[a:b])
                for split, a, b in zip(SPLITS, bounds, bounds[1:])
            }
        return self._generated

    # -- Task -----------------------------------------------------------------------------------

    def load_split(self, split: str) -> ListOpsExamples:
        if self.data_dir is None:
            examples = self._generate_all()[split]
            self.truncated[split] = 0  # max_length <= seq_len
            return examples
        path = self.data_dir / SPLIT_FILES[split]
        trees, labels, sha256 = read_tsv(path)
        tokens, offsets = _pack(trees)
        examples = ListOpsExamples(tokens, offsets, labels)
        too_long = sum(1 for t in trees if len(t) > self.seq_len)
        self.truncated[split] = too_long
        self._files[split] = {"path": str(path), "sha256": sha256, "examples": len(trees)}
        if too_long:
            warnings.warn(
                f"listops: {too_long} of {len(trees)} {split} sequences in {path} are longer "
                f"than seq_len={self.seq_len} (longest {max(map(len, trees))}) and will be "
                "truncated, which changes what their label means; raise --seq-len to keep them",
                UserWarning,
                stacklevel=3,
            )
        return examples

    def load_examples(self, split: str) -> ListOpsExamples:
        examples = self.dataset(split)
        assert isinstance(examples, ListOpsExamples)
        return examples

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(vocab_size=self.vocab_size, num_classes=self.num_classes)
        data = {split: self.load_examples(split) for split in SPLITS}
        if self.data_dir is None:
            info["source"] = "generated"
            info["generator"] = {
                "algorithm": f"{GENERATOR}: LRA lra_benchmarks/data/listops.py generate_tree "
                f"semantics (VALUE_P={VALUE_P}), flat-token reimplementation",
                **self.params,
                "cache_key": self.cache_key(),
            }
        else:
            info["source"] = "files"
            info["data_dir"] = str(self.data_dir)
            info["files"] = {split: self._files[split] for split in SPLITS}
        info["sizes"] = {split: len(examples) for split, examples in data.items()}
        info["truncated"] = dict(self.truncated)
        test = data["test"]
        counts = Counter(test.labels())
        info["test_label_counts"] = [counts.get(c, 0) for c in range(NUM_CLASSES)]
        info["test_majority_share"] = max(counts.values()) / len(test)
        lengths = test.lengths()
        info["test_lengths"] = {
            "min": min(lengths), "mean": sum(lengths) / len(lengths), "max": max(lengths)
        }
        return info
