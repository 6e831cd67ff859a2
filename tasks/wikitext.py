"""WikiText-103 and WikiText-2 (Merity et al., 2016): causal language modelling.

Where the text comes from, per split (train, valid, test), first match wins:

1. an explicit file: options ``train_file`` / ``valid_file`` / ``test_file`` (a path, or a name
   inside ``data_dir``);
2. ``data_dir``: the released files ``wiki.{train,valid,test}.tokens`` (or ``wiki.*.raw``), in
   the folder itself or in its ``wikitext-2/``, ``wikitext-2-raw/`` (``-103``) subfolder;
   with ``data_dir`` given, every split not named explicitly must be there;
3. the hub, through ``datasets``: ``Salesforce/wikitext``, config ``wikitext-{2,103}-raw-v1``.
   Without hub access this fails in seconds with one line naming ``--data-dir``.

Carving: when ``train_file`` is given and ``valid_file`` is not, the validation split is the
last ~10% of the train file's lines and training uses the rest. The cut is moved to the
top-level heading (`` = Title = ``) nearest to 90% of the lines, so no article is split (if the
file has no such heading, the cut is exactly at 90%). This is how a run on the local copy of
WikiText-2, which has no train split, trains on ``wiki.valid.tokens`` and tests on
``wiki.test.tokens``; ``describe()`` records it. A test (or validation) file with the same
content as the training text is refused.

Tokenisation (option ``tokenizer``): ``bpe`` (default) is a byte-level BPE of ``vocab_size``
ids (default 8192) trained on the training split only; ``word`` keeps WikiText's own
whitespace vocabulary: every word of the training split (``vocab_size``, if given, keeps only
the most frequent ones), and words unseen in training become ``<unk>``. Tokenizers and encoded
splits are cached under ``cache_dir`` (see ``tasks.text``).

What is scored. A split is the stream ``<eos> line_1 <eos> line_2 <eos> ... line_n <eos>``:
every line of the file (blank ones included), whitespace-normalised, contributes its tokens and
one ``<eos>``; the leading ``<eos>`` is context only. Every other token is a target scored
exactly once, in every split: training uses contiguous windows of ``seq_len`` targets (stride
``seq_len``), evaluation a sliding window (``eval_stride``, default ``seq_len // 2``) where
each window scores only its last ``eval_stride`` targets and each of them sees at least
``seq_len - eval_stride + 1`` earlier tokens (in the first window: everything before it).
The last window of a split is extended to the left to full length and scores only what is
left. No random offsets: the windows are the same every epoch.

Word count (``words_in_split``): the number of whitespace-separated tokens of the split's text
(``str.split()`` per line; WikiText's ``<unk>``, punctuation and ``@-@`` each count as one)
plus one per line for its ``<eos>``, blank lines included. This is the count behind the
published WikiText word-level perplexities (the test split of WikiText-2: 245,569), and the
scored targets cover exactly these words with any tokenizer, so
``word_perplexity = exp(total NLL / words)`` compares across tokenizers.

``meter(split)`` counts those words among the targets it actually scores (each word, and each
``<eos>``, begins with exactly one word-initial token: a BPE token starting with the encoded
space, any word-tokenizer id), so it reports ``words`` == ``words_in_split`` after a full pass
and the right, smaller count when the harness evaluates only some batches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from registry import ConfigError, DataError

from . import register_task, text
from .base import IGNORE_INDEX, SPLITS, Batch, LanguageModelingTask, PerplexityMeter
from .text import FORMAT_VERSION, MIN_BPE_VOCAB, LMWindows

HUB_NAME = "Salesforce/wikitext"
HUB_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
CARVE_FRACTION = 0.1
DEFAULT_BPE_VOCAB = 8192
_HEADING = re.compile(r"^ ?= [^=].* = ?$")  # " = Title = ", not " = = Section = = "


@dataclass
class SplitSource:
    """Where one split's lines come from."""

    split: str
    kind: str  # "file" or "hub"
    path: Path | None = None
    part: str = "all"  # "all", or "head" / "tail" of a carved file
    how: str = ""  # "explicit", "data_dir", "carved"
    _file_sha: str | None = field(default=None, repr=False)

    def file_sha256(self) -> str:
        assert self.path is not None
        if self._file_sha is None:
            self._file_sha = text.sha256_file(self.path)
        return self._file_sha


def carve_index(lines: list[str]) -> int:
    """First line of the validation part: the top-level heading nearest to 90% of the lines."""
    n = len(lines)
    target = int(round(n * (1 - CARVE_FRACTION)))
    headings = [i for i, line in enumerate(lines) if 0 < i < n and _HEADING.match(line)]
    if headings:
        return min(headings, key=lambda i: (abs(i - target), i))
    return target


class _WikiText(LanguageModelingTask):
    title: ClassVar[str] = "WikiText"
    hub_config: ClassVar[str] = ""  # "": the corpus has no hub copy, only local files
    folders: ClassVar[tuple[str, ...]] = ()
    # a split's file in a --data-dir: f"{file_stem}.{split}.{ext}", first extension found
    file_stem: ClassVar[str] = "wiki"
    extensions: ClassVar[tuple[str, ...]] = ("tokens", "raw")

    class Options(LanguageModelingTask.Options):
        tokenizer: Literal["bpe", "word"] = Field(
            "bpe", description="bpe: a byte-level BPE trained on the train split; word: the "
                               "train split's whitespace words")
        vocab_size: int | None = Field(
            None, ge=1, description="tokenizer ids (bpe: 8192 unless set, at least 259; word: "
                                    "every training word unless set, at least 4)")
        eval_stride: int | None = Field(
            None, ge=1, description="sliding-window stride at evaluation (seq_len // 2 unless "
                                    "set; at most seq_len)")
        # strict=False: a path may be given as text (a flag, a config file) or as a Path
        train_file: Path | None = Field(
            None, strict=False, description="the train split's text file (a path, or a name in "
                                            "data_dir); without valid_file, its last ~10% of "
                                            "lines is the valid split")
        valid_file: Path | None = Field(
            None, strict=False, description="the valid split's text file")
        test_file: Path | None = Field(
            None, strict=False, description="the test split's text file")
        train_lines: int | None = Field(
            None, ge=1, description="train on the first N lines of the train split only (a "
                                    "data-limited setting: every run can reach its plateau); "
                                    "the tokenizer is trained on them too")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name, o = self.registry_name, self.options
        self.tokenizer_kind = o.tokenizer
        vocab = o.vocab_size
        if self.tokenizer_kind == "bpe":
            vocab = DEFAULT_BPE_VOCAB if vocab is None else vocab
            if vocab < MIN_BPE_VOCAB:
                raise ConfigError(
                    f"task '{name}': a byte-level BPE needs vocab_size >= {MIN_BPE_VOCAB}, "
                    f"got {vocab}"
                )
        elif vocab is not None and vocab < 4:
            raise ConfigError(f"task '{name}': vocab_size must be >= 4 for tokenizer=word")
        self.requested_vocab = vocab
        self.eval_stride = max(seq_len // 2, 1) if o.eval_stride is None else o.eval_stride
        if self.eval_stride > seq_len:
            raise ConfigError(
                f"task '{name}': eval_stride ({self.eval_stride}) must be <= seq_len ({seq_len})"
            )
        files = {s: getattr(o, f"{s}_file") for s in SPLITS}
        self.sources = self._resolve(files)
        self._lines: dict[str, list[str]] = {}
        self._hub_sha: dict[str, str] = {}
        self._hub: Any = None
        self._tokenizer: text.HFTokenizer | None = None
        self._encoded: dict[str, dict[str, Any]] = {}

    # -- where the splits come from ---------------------------------------------------------

    def _file(self, split: str, ext: str | None = None) -> str:
        return f"{self.file_stem}.{split}.{ext or self.extensions[0]}"

    def _expected(self) -> str:
        others = "".join(f" (or {self.file_stem}.*.{e})" for e in self.extensions[1:])
        return ", ".join(self._file(s) for s in SPLITS) + others

    def _local_hint(self) -> str:
        hub = [s for s in SPLITS if self.sources[s].kind == "hub"]
        if len(hub) < len(SPLITS):  # only some splits lack a file: name them
            return (
                f"the {'/'.join(hub)} split has no file: pass "
                f"{' and '.join(f'--{s}-file FILE' for s in hub)} (or put "
                f"{', '.join(self._file(s) for s in SPLITS)} in a folder and pass "
                f"--data-dir DIR)"
            )
        return (
            f"put {', '.join(self._file(s) for s in SPLITS)} in a folder and pass "
            f"--data-dir DIR (or --train-file/--valid-file/--test-file)"
        )

    def _find(self, given: Any, split: str) -> Path:
        path = Path(given).expanduser()
        if path.is_file():
            return path
        if self.data_dir is not None and (self.data_dir / path).is_file():
            return self.data_dir / path
        folder = next((p for p in (path, self.data_dir and self.data_dir / path) if p and
                       p.is_dir()), None)
        if folder is not None:
            raise DataError(f"{self.title}: {split}_file {given} is a folder, not a file; pass "
                            f"a file (e.g. {folder / self._file(split)}), or the folder "
                            f"as --data-dir")
        special = next((p for p in (path, self.data_dir and self.data_dir / path) if p and
                        p.exists()), None)
        if special is not None:  # /dev/zero, a FIFO, a socket: it exists, it is no text file
            raise DataError(f"{self.title}: {split}_file {given} is not a regular file (a "
                            f"device, pipe or socket); pass a text file")
        where = f" (nor in {self.data_dir})" if self.data_dir is not None else ""
        raise DataError(f"{self.title}: {split}_file {given} does not exist{where}")

    def _data_dir_files(self, needed: list[str]) -> dict[str, Path]:
        assert self.data_dir is not None
        root = self.data_dir
        if not root.is_dir():
            raise DataError(f"{self.title}: --data-dir {root} is not a folder")
        candidates = [root, *(root / f for f in self.folders)]
        for folder in candidates:
            present = (sorted(p.name for p in folder.glob(f"{self.file_stem}.*.*"))
                       if folder.is_dir() else [])
            if not present:
                continue
            for ext in self.extensions:
                found = {s: folder / self._file(s, ext) for s in needed}
                if all(p.is_file() for p in found.values()):
                    return found
            missing = [self._file(s) for s in needed if not (folder / self._file(s)).is_file()]
            hint = ""
            if self._file("train") in missing:
                hint = " (to train on another split, pass --train-file FILE)"
            raise DataError(
                f"{self.title}: {folder} lacks {', '.join(missing)} (found: {', '.join(present)});"
                f" expected {self._expected()}{hint}"
            )
        raise DataError(
            f"{self.title}: no {self.title} files in {root}: expected {self._expected()} there"
            f"{' or in ' + '/, '.join(self.folders) + '/' if self.folders else ''}"
        )

    def _resolve(self, files: dict[str, Any]) -> dict[str, SplitSource]:
        sources: dict[str, SplitSource] = {}
        for split in SPLITS:
            if files[split] is not None:
                sources[split] = SplitSource(split, "file", self._find(files[split], split),
                                             how="explicit")
        if files["train"] is not None and files["valid"] is None:
            train = sources["train"]
            train.part, train.how = "head", "explicit, first ~90% of lines"
            sources["valid"] = SplitSource("valid", "file", train.path, part="tail",
                                           how="carved: last ~10% of the train file's lines")
        needed = [s for s in SPLITS if s not in sources]
        if needed and self.data_dir is not None:
            for split, path in self._data_dir_files(needed).items():
                sources[split] = SplitSource(split, "file", path, how="data_dir")
        for split in SPLITS:
            sources.setdefault(split, SplitSource(split, "hub"))
        # refuse evaluating on the training text
        train = sources["train"]
        for split in ("valid", "test"):
            other = sources[split]
            if (train.kind == other.kind == "file" and other.part == "all"
                    and train.file_sha256() == other.file_sha256()):
                raise ConfigError(
                    f"{self.title}: the {split} split ({other.path}) has the same content as "
                    f"the training file ({train.path}); evaluate on other text"
                )
        return sources

    # -- reading ------------------------------------------------------------------------------

    def _hub_dataset(self) -> Any:
        if not self.hub_config:
            raise DataError(f"{self.title} has no hub copy: {self._local_hint()}")
        if self._hub is None:
            self._hub = text.load_hub_dataset(
                HUB_NAME, self.hub_config, what=self.title, local_hint=self._local_hint()
            )
        return self._hub

    def _file_lines(self, src: SplitSource) -> list[str]:
        assert src.path is not None
        lines = text.read_lines(src.path)
        if src.part != "all":
            if sum(1 for line in lines if line.strip()) < 2:
                raise DataError(
                    f"{src.path}: too little text to carve a validation split from it "
                    f"(pass --valid-file)"
                )
            cut = carve_index(lines)
            lines = lines[:cut] if src.part == "head" else lines[cut:]
        return lines

    def lines(self, split: str) -> list[str]:
        """The split's text, one string per line (no newline)."""
        if split not in self._lines:
            src = self.sources[split]
            if src.kind == "hub":
                rows = list(self._hub_dataset()[HUB_SPLITS[split]]["text"])
                lines = [row[:-1] if row.endswith("\n") else row for row in rows]
                where = f"hub {HUB_NAME} {self.hub_config} {HUB_SPLITS[split]}"
            else:
                lines = self._file_lines(src)
                where = str(src.path)
            if split == "train" and self.options.train_lines is not None:
                if self.options.train_lines > len(lines):
                    raise ConfigError(
                        f"{self.title}: train_lines={self.options.train_lines} is more than the "
                        f"train split's {len(lines):,} lines ({where}); pass at most that, or "
                        f"drop the option to train on all of it")
                lines = lines[:self.options.train_lines]
            if not any(line.strip() for line in lines):
                raise DataError(f"{self.title}: the {split} split ({where}) has no text")
            self._lines[split] = lines
        return self._lines[split]

    def source_key(self, split: str) -> str:
        """sha256 identifying the split's text (files: without reading more than the bytes)."""
        src = self.sources[split]
        if src.kind == "hub":
            key = text.digest("hub", HUB_NAME, self.hub_config, self.hub_text_sha256(split))
        else:
            key = text.digest("file", src.file_sha256(), src.part, CARVE_FRACTION)
        if split == "train" and self.options.train_lines is not None:  # another text
            key = text.digest(key, "first lines", self.options.train_lines)
        return key

    def hub_text_sha256(self, split: str) -> str:
        if split not in self._hub_sha:
            self._hub_sha[split] = text.sha256_lines(self.lines(split))
        return self._hub_sha[split]

    # -- tokenizer and encoded splits ---------------------------------------------------------

    @property
    def tokenizer(self) -> text.HFTokenizer:
        if self._tokenizer is None:
            tok = text.build_tokenizer(
                self.tokenizer_kind,
                cache_dir=self.cache_dir,
                train_key=text.digest("wikitext-train-lines", self.source_key("train")),
                train_texts=lambda: [" ".join(line.split()) for line in self.lines("train")],
                vocab_size=self.requested_vocab,
                trained_on="train split",
            )
            assert isinstance(tok, text.HFTokenizer)
            self._tokenizer = tok
        return self._tokenizer

    def use_tokenizer(self, tokenizer: text.HFTokenizer) -> None:
        """Encode with this tokenizer instead of training one on this corpus (the mix task
        shares one across its components); call it before any split is encoded."""
        self._tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        if self.shape_only and self._tokenizer is None and self.tokenizer_kind != "bytes":
            self.vocab_is_nominal = True  # the tokenizer would be learnt from the data
            return self.requested_vocab or DEFAULT_BPE_VOCAB
        return self.tokenizer.vocab_size

    def encoded(self, split: str) -> dict[str, Any]:
        """{"ids": int32 stream, "words": int, "lines": int} for a split (cached on disk)."""
        if split not in self._encoded:
            tok = self.tokenizer
            key = text.digest("wikitext-encoded", self.source_key(split), tok.sha256,
                              FORMAT_VERSION)

            def build() -> dict[str, Any]:
                lines = self.lines(split)
                ids = text.encode_lines(tok, lines, desc=f"encoding {self.title} {split}")
                words = sum(len(line.split()) for line in lines) + len(lines)
                return {"ids": torch.from_numpy(ids), "words": int(words),
                        "lines": len(lines)}

            self._encoded[split] = text.cached_tensors(
                self.cache_dir, key, build, needs=("ids", "words", "lines"),
                what=f"{self.title} {split}")
            self._lines.pop(split, None)  # encoded now: free the text (WikiText-103: ~1 GB)
        return self._encoded[split]

    def load_split(self, split: str) -> LMWindows:
        stride = self.seq_len if split == "train" else self.eval_stride
        return LMWindows(self.encoded(split)["ids"], self.seq_len, stride)

    def words_in_split(self, split: str) -> int | None:
        """Whitespace words of the split plus one <eos> per line (see the module docstring)."""
        return int(self.encoded(split)["words"])

    def meter(self, split: str) -> WordPerplexityMeter:
        """Counts the words of the scored targets (== words_in_split after a full pass)."""
        return WordPerplexityMeter(text.word_starts(self.tokenizer))

    # -- provenance ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        source: dict[str, Any] = {}
        for split in SPLITS:
            src = self.sources[split]
            if src.kind == "hub":
                source[split] = {"hub": HUB_NAME, "config": self.hub_config,
                                 "split": HUB_SPLITS[split],
                                 "text_sha256": self.hub_text_sha256(split)}
            else:
                source[split] = {"file": str(src.path), "sha256": src.file_sha256(),
                                 "lines": {"all": "all", "head": "first ~90%",
                                           "tail": "last ~10%"}[src.part],
                                 "how": src.how}
            if split == "train" and self.options.train_lines is not None:
                source[split]["first_lines"] = self.options.train_lines
        splits: dict[str, Any] = {}
        for split in SPLITS:
            enc = self.encoded(split)
            ds = self.dataset(split)
            splits[split] = {"tokens": int(len(enc["ids"])), "scored_tokens": ds.scored_tokens,
                             "windows": len(ds), "words": int(enc["words"]),
                             "lines": int(enc["lines"])}
        out.update(
            source=source,
            tokenizer=self.tokenizer.describe(),
            eval_stride=self.eval_stride,
            train_stride=self.seq_len,
            splits=splits,
            words_counted="whitespace-separated tokens + one <eos> per line (blank lines too)",
        )
        return out


class WordPerplexityMeter(PerplexityMeter):
    """PerplexityMeter whose word count is that of the targets actually scored: each scored
    word-initial id (``text.word_starts``) is one word. After a full pass over a split it equals
    ``words_in_split``; on a partial evaluation (the harness's eval_batches) it stays right,
    where a whole-split count would make word_perplexity look better than it is."""

    def __init__(self, word_start: Tensor) -> None:
        super().__init__(n_words=0)
        self.word_start = word_start

    def update(self, logits: Tensor, batch: Batch) -> None:
        super().update(logits, batch)
        targets = batch.targets[batch.targets != IGNORE_INDEX]
        if self.word_start.device != targets.device:
            self.word_start = self.word_start.to(targets.device)
        self.n_words = (self.n_words or 0) + int(self.word_start[targets].sum().item())

    def compute(self) -> dict[str, float]:
        out = super().compute()
        out["words"] = float(self.n_words or 0)
        return out


# No vocab_size or eval_stride here, so that --tokenizer word and --seq-len combine with any
# preset (eval_stride defaults to seq_len // 2).
_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"seq_len": 64},
    "cpu": {"seq_len": 128},
    # CHIAR-Former does not state its context length; 512 is this project's reading of the
    # paper setting for its 4-layer model. Compare word_perplexity across tokenizers.
    "paper": {"seq_len": 512},
}


@register_task(
    "wikitext103", aliases=("wikitext-103", "wt103"),
    description="WikiText-103 language modelling (causal); hub or wiki.*.tokens files",
)
class WikiText103(_WikiText):
    title = "WikiText-103"
    hub_config = "wikitext-103-raw-v1"
    folders = ("wikitext-103", "wikitext-103-raw")
    presets: ClassVar[dict[str, dict[str, Any]]] = _PRESETS


@register_task(
    "wikitext2", aliases=("wikitext-2", "wt2"),
    description="WikiText-2 language modelling (causal); hub or wiki.*.tokens files",
)
class WikiText2(_WikiText):
    title = "WikiText-2"
    hub_config = "wikitext-2-raw-v1"
    folders = ("wikitext-2", "wikitext-2-raw")
    presets: ClassVar[dict[str, dict[str, Any]]] = _PRESETS


__all__ = ["WikiText103", "WikiText2", "carve_index"]
