"""Shared text plumbing for the real-data tasks: reading, hashing, the hub, tokenizers, caches.

(Longer than 500 lines on purpose: a sixth of it is this contract, and its parts share the
cache keys and special ids that WikiText and IMDB rely on being defined once.)

Nothing here registers a task. ``tasks.wikitext`` and ``tasks.imdb`` build on it.

Reading
    ``read_lines(path)`` decodes a whole file as strict UTF-8 and splits it on ``\\n`` only
    (a trailing ``\\r`` is dropped; other Unicode line breaks stay inside a line, as in
    ``for line in file``). Undecodable bytes raise ``DataError`` naming the file and line.

The hub
    ``load_hub_dataset`` calls ``datasets.load_dataset`` only after ``hub_reachable()`` says the
    hub answers (a TCP connect to the endpoint's port 443 with a 2 s budget, DNS included, or
    ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` set). When it does not, the offline switches are
    turned on (so ``datasets`` reads its local cache and never retries), and a miss becomes one
    ``DataError`` line that says which files to put where and names ``--data-dir``.

Tokenizers (special ids are the same for every kind: ``<pad>`` = 0, so ``Task.pad_id`` is 0)
    - ``bytes``: UTF-8 bytes, id = byte + 2; 0 = ``<pad>``, 1 = ``<unk>`` (reserved, never
      produced); vocabulary 258 (Long Range Arena style). Nothing to train.
    - ``bpe``: byte-level BPE (``tokenizers``), ``<pad>`` = 0, ``<eos>`` = 1, trained on the
      training split only. Special-token strings inside the text are encoded as ordinary text.
    - ``word``: whitespace words, ``<pad>`` = 0, ``<unk>`` = 1, ``<eos>`` = 2, then every word of
      the training split by decreasing frequency (ties alphabetical), optionally capped to
      ``vocab_size`` ids. Words not in the vocabulary (and a literal ``<unk>``) map to ``<unk>``.

Caches (under ``cache_dir``, through ``tasks.cache``: each file carries its full key and is
rebuilt, with a warning naming it, when it cannot be read, carries another key or lacks a field)
    - ``tokenizers/<key>.json``: key = sha256 of (kind, options, the training data's sha256,
      ``FORMAT_VERSION``). A second construction loads the file and never retrains.
    - ``encoded/<key>.pt``: dicts of tensors (int32 ids etc.), loaded with
      ``torch.load(weights_only=True)``; key = sha256 of (source sha256, the tokenizer's own
      sha256, ``FORMAT_VERSION``, what was encoded).

Progress bars (tqdm) show on a terminal; ``CHIAROSCURO_PROGRESS=1`` forces them (logs),
``CHIAROSCURO_PROGRESS=0`` hides them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch import Tensor

from registry import ConfigError, DataError

from . import cache

FORMAT_VERSION = 1

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
BYTE_OFFSET = 2  # bytes tokenizer: 0 = <pad>, 1 = <unk>, byte b -> b + 2
BYTES_VOCAB = 256 + BYTE_OFFSET
MIN_BPE_VOCAB = 256 + 2 + 1  # the byte alphabet, two specials and at least one merge

HUB_TIMEOUT_S = 2.0

# -- small utilities ---------------------------------------------------------------------------


def progress_disabled() -> bool | None:
    """tqdm's ``disable``: None = show on a terminal only; env CHIAROSCURO_PROGRESS overrides."""
    flag = os.environ.get("CHIAROSCURO_PROGRESS", "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return False
    if flag in ("0", "false", "no", "off"):
        return True
    return None


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    kwargs.setdefault("leave", False)
    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=progress_disabled(), **kwargs)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(*parts: Any) -> str:
    """A stable sha256 of JSON-serialisable parts (the cache keys)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def sha256_lines(lines: Iterable[str]) -> str:
    """sha256 of the lines joined with newlines (how a split's text is identified)."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def cached_tensors(cache_dir: str | Path, key: str, build: Callable[[], dict[str, Any]], *,
                   needs: Sequence[str], what: str) -> dict[str, Any]:
    """``cache_dir/encoded/<key>.pt`` if it was built from ``key`` and holds ``needs``, else
    ``build()``, cached there (``tasks.cache``)."""
    path = Path(cache_dir) / "encoded" / f"{key[:40]}.pt"
    return cache.load_or_build(path, key, build, needs=needs, what=what)


# -- reading -----------------------------------------------------------------------------------


def decode_utf8(data: bytes, source: str) -> str:
    """Strict UTF-8, or a DataError naming the source, line and column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{source}, line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column "
            f"{col}); re-save the file as UTF-8"
        ) from None


def split_lines(text: str) -> list[str]:
    """Split on '\\n' only; the empty piece after a final newline is not a line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_lines(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return split_lines(decode_utf8(data, str(path)))


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the Hugging Face hub ----------------------------------------------------------------------

_TRUE = ("1", "true", "yes", "on")
_hub_cache: dict[str, tuple[bool, str]] = {}


def _hub_endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> tuple[bool, str]:
    """(reachable, reason). Honors the offline env vars; otherwise one TCP connect to the hub
    endpoint, bounded by ``timeout`` including DNS (run in a daemon thread). Cached per process."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return False, f"{var} is set"
    host, port = _hub_endpoint()
    key = f"{host}:{port}"
    if key in _hub_cache:
        return _hub_cache[key]
    result: list[tuple[bool, str]] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append((True, ""))
        except OSError as exc:
            result.append((False, f"{key}: {one_line(exc.strerror or str(exc), 80)}"))

    thread = threading.Thread(target=probe, daemon=True, name="hub-probe")
    thread.start()
    thread.join(timeout + 0.5)
    answer = result[0] if result else (False, f"{key}: no answer in {timeout:g} s")
    _hub_cache[key] = answer
    return answer


def go_offline() -> None:
    """Make ``datasets`` / ``huggingface_hub`` use local caches only (no retries)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import sys

    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True
        if hasattr(datasets.config, "HF_DATASETS_OFFLINE"):
            datasets.config.HF_DATASETS_OFFLINE = True


def load_hub_dataset(path: str, name: str | None, *, what: str, local_hint: str) -> Any:
    """``datasets.load_dataset(path, name)``, failing fast with one line when the hub is away.

    what:       the data set in words ("WikiText-2").
    local_hint: how to run from local files instead (must name --data-dir).
    """
    ok, reason = hub_reachable()
    if not ok:
        go_offline()  # a copy in the local datasets cache still loads
    import datasets

    try:
        return datasets.load_dataset(path, name)
    except Exception as exc:
        if not ok:
            raise DataError(
                f"{what} needs the Hugging Face hub (unreachable: {reason}) or local files: "
                f"{local_hint}"
            ) from None
        raise DataError(
            f"{what}: datasets.load_dataset({path!r}, {name!r}) failed "
            f"({type(exc).__name__}: {one_line(exc, 160)}); or use local files: {local_hint}"
        ) from None


# -- tokenizers --------------------------------------------------------------------------------


class ByteTokenizer:
    """UTF-8 bytes + 2; 0 = <pad>, 1 = <unk> (reserved). Vocabulary 258."""

    kind = "bytes"
    vocab_size = BYTES_VOCAB
    pad_id = 0
    unk_id = 1
    eos_id: int | None = None

    @property
    def sha256(self) -> str:
        return digest("bytes-tokenizer", BYTE_OFFSET, FORMAT_VERSION)

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) + BYTE_OFFSET

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        raw = bytes(int(i) - BYTE_OFFSET for i in ids if int(i) >= BYTE_OFFSET)
        return raw.decode("utf-8", errors="replace")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "sha256": self.sha256,
                "ids": "UTF-8 byte + 2; 0 = <pad>, 1 = <unk> (unused)"}


class HFTokenizer:
    """A trained ``tokenizers.Tokenizer`` (kind "bpe" or "word") with its cache file and hash."""

    def __init__(self, kind: str, tok: Any, path: Path | None, trained_on: str,
                 requested_vocab: int | None, trained_now: bool):
        self.kind = kind
        self.tok = tok
        tok.encode_special_tokens = True  # "<pad>" in the text is text, never the special id
        self.path = path
        self.trained_on = trained_on
        self.requested_vocab = requested_vocab
        self.trained_now = trained_now
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.pad_id = tok.token_to_id(PAD)
        self.eos_id = tok.token_to_id(EOS)
        self.unk_id = tok.token_to_id(UNK)
        if self.pad_id != 0 or self.eos_id is None:
            raise DataError(f"tokenizer file {path} does not have <pad> = 0 and <eos>; delete it")
        self.sha256 = sha256_bytes(tok.to_str().encode("utf-8"))

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        return self.tok.decode([int(i) for i in ids])

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "requested_vocab_size": self.requested_vocab,
            "sha256": self.sha256,
            "trained_on": self.trained_on,
            "file": str(self.path) if self.path else None,
        }


def _train_bpe(texts: Iterable[str], vocab_size: int, total: int | None) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(
        progress(texts, total=total, desc=f"training BPE tokenizer ({vocab_size})", unit="text"),
        trainer=trainer, length=total,
    )
    return tok


def _train_word(texts: Iterable[str], vocab_size: int | None, total: int | None) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    counter = Tokenizer(models.WordLevel(unk_token=UNK))
    counter.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(
        vocab_size=2**31 - 1, min_frequency=0, special_tokens=[], show_progress=False
    )
    counter.train_from_iterator(
        progress(texts, total=total, desc="building word vocabulary", unit="line"),
        trainer=trainer, length=total,
    )
    by_rank = sorted(counter.get_vocab().items(), key=lambda kv: kv[1])  # frequency order
    specials = [PAD, UNK, EOS]
    words = [w for w, _ in by_rank if w not in specials]
    if vocab_size is not None:
        words = words[: max(vocab_size - len(specials), 0)]
    vocab = {w: i for i, w in enumerate([*specials, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


def build_tokenizer(
    kind: str,
    *,
    cache_dir: str | Path,
    train_key: str,
    train_texts: Callable[[], Sequence[str]],
    vocab_size: int | None,
    trained_on: str,
) -> ByteTokenizer | HFTokenizer:
    """The tokenizer of ``kind``, from ``cache_dir/tokenizers`` when an identical one was trained
    before (same kind, options, training data sha256 ``train_key``, format version); otherwise
    trained on ``train_texts()`` and cached. ``train_texts`` is only called on a cache miss."""
    if kind == "bytes":
        return ByteTokenizer()
    if kind not in ("bpe", "word"):
        raise ConfigError(f"unknown tokenizer '{kind}' (bytes, bpe, word)")
    from tokenizers import Tokenizer

    key = digest("tokenizer", kind, vocab_size, train_key, FORMAT_VERSION)
    path = Path(cache_dir) / "tokenizers" / f"{key[:40]}.json"
    trained = []

    def train() -> dict[str, Any]:
        texts = train_texts()
        if kind == "bpe":
            assert vocab_size is not None
            tok = _train_bpe(texts, vocab_size, len(texts))
        else:
            tok = _train_word(texts, vocab_size, len(texts))
        trained.append(True)
        return {"kind": kind, "tokenizer": tok.to_str()}

    entry = cache.load_or_build(path, key, train, needs=("kind", "tokenizer"),
                                what=f"{kind} tokenizer")
    tok = Tokenizer.from_str(entry["tokenizer"])
    return HFTokenizer(kind, tok, path, trained_on, vocab_size, trained_now=bool(trained))


def encode_lines(
    tokenizer: HFTokenizer, lines: Sequence[str], *, desc: str, batch: int = 8192
) -> np.ndarray:
    """One int32 stream: ``<eos>``, then for each line its tokens followed by ``<eos>``.

    Each line is whitespace-normalised first (``" ".join(line.split())``; BPE adds the leading
    space itself), so a blank line is just ``<eos>`` and every whitespace word starts with
    exactly one word-initial token (see ``word_starts``). The leading ``<eos>`` gives the first
    word a context to be predicted from: every line token and every line's ``<eos>`` is a
    prediction target.
    """
    eos = tokenizer.eos_id
    assert eos is not None
    parts: list[np.ndarray] = [np.array([eos], dtype=np.int32)]
    bar = progress(total=len(lines), desc=desc, unit="line")
    for start in range(0, len(lines), batch):
        chunk = [" ".join(line.split()) for line in lines[start : start + batch]]
        encoded = tokenizer.encode_batch(chunk)
        n = sum(len(ids) for ids in encoded) + len(encoded)
        flat = itertools.chain.from_iterable(itertools.chain(ids, (eos,)) for ids in encoded)
        parts.append(np.fromiter(flat, dtype=np.int32, count=n))
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(parts)


def word_starts(tokenizer: HFTokenizer) -> Tensor:
    """Bool (vocab_size,): ids that begin a whitespace word, or are ``<eos>``.

    In a stream from ``encode_lines`` each counted word (``str.split()`` word, or a line's
    ``<eos>``) begins with exactly one such id: for BPE the tokens that start with the encoded
    space (byte-level pieces after the first piece of a word never do), for the word tokenizer
    every id but ``<pad>``. Counting them among the scored targets gives the words of exactly
    the scored text, also when only part of a split is evaluated.
    """
    mask = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
    if tokenizer.kind == "word":
        mask[:] = True
    else:
        space = "\u0120"  # what byte-level BPE writes for b" "
        for token, i in tokenizer.tok.get_vocab(with_added_tokens=True).items():
            mask[i] = token.startswith(space)
    mask[tokenizer.pad_id] = False
    if tokenizer.eos_id is not None:
        mask[tokenizer.eos_id] = True
    return mask


def encode_documents(
    tokenizer: ByteTokenizer | HFTokenizer, texts: Sequence[str], *, desc: str,
    batch: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """(flat int32 ids, int64 offsets of length len(texts) + 1) for whole documents."""
    lengths = np.zeros(len(texts) + 1, dtype=np.int64)
    parts: list[np.ndarray] = []
    bar = progress(total=len(texts), desc=desc, unit="doc")
    for start in range(0, len(texts), batch):
        chunk = list(texts[start : start + batch])
        if isinstance(tokenizer, ByteTokenizer):
            encoded: list[Any] = [tokenizer.encode(t) for t in chunk]
        else:
            encoded = tokenizer.encode_batch(chunk)
        for j, ids in enumerate(encoded):
            lengths[start + j + 1] = len(ids)
        n = sum(len(ids) for ids in encoded)
        parts.append(np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32, count=n))
        bar.update(len(chunk))
    bar.close()
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return flat, np.cumsum(lengths)


# -- sliding windows ---------------------------------------------------------------------------


def window_plan(n_tokens: int, seq_len: int, stride: int) -> np.ndarray:
    """Windows over a stream of ``n_tokens`` ids scoring every target position 1..n-1 once.

    Returns an int64 array (W, 3) of (start, stop, n_context): the window is ids[start:stop]
    (at most seq_len + 1 ids: inputs ids[start:stop-1], targets ids[start+1:stop]) and its first
    n_context targets were scored by an earlier window. The first window starts at 0; each
    later one scores the next ``stride`` targets (fewer at the end) and is extended to the left
    to a full seq_len inputs, so a target at position p is predicted from at least
    min(p, seq_len - stride + 1) earlier ids. stride = seq_len gives contiguous chunks.
    """
    if not 1 <= stride <= seq_len:
        raise ConfigError(f"eval stride must be in 1..seq_len ({seq_len}), got {stride}")
    last = n_tokens - 1  # the last target position
    if last < 1:
        return np.zeros((0, 3), dtype=np.int64)
    first_end = min(seq_len, last)
    ends = np.arange(first_end + stride, last + stride, stride, dtype=np.int64)
    ends = np.minimum(ends, last)
    scored_before = np.concatenate([[first_end], ends[:-1]]) if len(ends) else ends
    starts = ends - seq_len
    plan = np.empty((1 + len(ends), 3), dtype=np.int64)
    plan[0] = (0, first_end + 1, 0)
    plan[1:, 0] = starts
    plan[1:, 1] = ends + 1
    plan[1:, 2] = scored_before - starts
    return plan


class LMWindows(Sequence[tuple[Tensor, int]]):
    """The examples of one language-modelling split: ``(window_ids (L+1,) long, n_context)``."""

    def __init__(self, ids: Tensor, seq_len: int, stride: int):
        self.ids = ids
        self.seq_len = seq_len
        self.stride = stride
        self.plan = window_plan(len(ids), seq_len, stride)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        start, stop, n_context = (int(v) for v in self.plan[index])
        return self.ids[start:stop].long(), n_context

    def __iter__(self) -> Iterator[tuple[Tensor, int]]:
        for i in range(len(self)):
            yield self[i]

    @property
    def scored_tokens(self) -> int:
        return max(len(self.ids) - 1, 0)


class DocumentExamples(Sequence[tuple[Tensor, int]]):
    """Classification examples ``(ids[:max_len] long, label)`` sliced lazily from a flat store."""

    def __init__(self, flat: Tensor, offsets: Tensor, labels: Tensor, max_len: int,
                 add: int = 0, index: Tensor | None = None):
        self.flat = flat
        self.offsets = offsets
        self.labels = labels
        self.max_len = max_len
        self.add = add
        self.index = index if index is not None else torch.arange(len(labels))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        k = int(self.index[i])
        start = int(self.offsets[k])
        stop = min(int(self.offsets[k + 1]), start + self.max_len)
        ids = self.flat[start:stop].long()
        if self.add:
            ids = ids + self.add
        return ids, int(self.labels[k])

    def __iter__(self) -> Iterator[tuple[Tensor, int]]:
        for i in range(len(self)):
            yield self[i]
