"""IMDB sentiment (Maas et al., 2011): binary classification of whole movie reviews.

Sources, first match wins:

1. ``data_dir`` holding the Stanford release: an unpacked ``aclImdb/`` folder (or ``data_dir``
   is that folder itself), else an ``aclImdb*.tar.gz`` / ``.tgz`` / ``.tar`` in it (or
   ``data_dir`` is that archive), read by streaming the tar without unpacking. Layout
   ``aclImdb/{train,test}/{pos,neg}/ID_RATING.txt``; ``unsup/``, ``README``, ``*.feat`` and the
   URL lists are ignored.
2. the hub, through ``datasets``: ``stanfordnlp/imdb`` (train and test; ``unsupervised``
   ignored). Without hub access this fails in seconds with one line naming ``--data-dir``.

Labels: the folder is the label (``neg`` = 0, ``pos`` = 1, as on the hub). The file name must be
``ID_RATING.txt`` with a rating that agrees with the folder (the release's rule: ``neg`` <= 4,
``pos`` >= 7); otherwise a ``DataError`` names the file. Reviews are decoded as strict UTF-8
(a bad byte: file and line) and kept raw (``<br />`` included, as in Long Range Arena).
Examples are ordered by (label, ID), so the folder and the archive give identical splits.

Splits: ``valid`` is carved from the official train split, ``valid_fraction`` (default 0.1)
of each label, chosen by a permutation seeded with ``data_seed`` (default 0), independent of
the run's ``seed``; ``train`` is the rest. ``test`` is the official test split, untouched and
never used for model selection.

Tokenisation (option ``tokenizer``): ``bytes`` (default; Long Range Arena style, UTF-8 bytes +
2, 0 = ``<pad>``, 1 = ``<unk>``, vocabulary 258) or ``bpe`` (byte-level BPE of ``vocab_size``,
default 8192, trained on the carved train split only; cached, see ``tasks.text``). Reviews
longer than ``seq_len`` tokens are truncated (the head is kept); ``describe()`` reports how many.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from registry import ConfigError, DataError

from . import register_task, text
from .base import SPLITS, ClassificationTask
from .text import FORMAT_VERSION, MIN_BPE_VOCAB, DocumentExamples

HUB_NAME = "stanfordnlp/imdb"
LABELS = {"neg": 0, "pos": 1}
DEFAULT_BPE_VOCAB = 8192
_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/([^/]+)$")
_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")
_ARCHIVES = ("aclImdb*.tar.gz", "aclImdb*.tgz", "aclImdb*.tar")
_LAYOUT = "aclImdb/{train,test}/{pos,neg}/ID_RATING.txt"

Review = tuple[str, int, int, int, str]  # (split, label, id, rating, text)


def parse_review(split: str, folder: str, name: str, data: bytes, where: str) -> Review:
    """One review from its place in the layout; DataError naming ``where`` if malformed."""
    match = _NAME.match(name)
    if not match:
        raise DataError(
            f"{where}: cannot read ID_RATING from the file name '{name}' "
            f"(expected e.g. 123_8.txt in {_LAYOUT})"
        )
    review_id, rating = int(match.group(1)), int(match.group(2))
    label = LABELS[folder]
    if not 1 <= rating <= 10 or (label == 1 and rating < 7) or (label == 0 and rating > 4):
        raise DataError(
            f"{where}: rating {rating} in the file name contradicts the folder '{folder}' "
            f"(neg <= 4, pos >= 7, out of 10)"
        )
    return split, label, review_id, rating, text.decode_utf8(data, where)


def iter_folder(root: Path) -> Iterator[Review]:
    """Reviews of an unpacked aclImdb folder (``root`` holds train/ and test/)."""
    for split in ("train", "test"):
        for folder in ("neg", "pos"):
            sub = root / split / folder
            if not sub.is_dir():
                raise DataError(f"IMDB: {sub} is missing; expected {root}/{{train,test}}/"
                                f"{{pos,neg}}/ID_RATING.txt (the Stanford aclImdb layout)")
            files = sorted(p for p in sub.iterdir() if p.is_file())
            if not files:
                raise DataError(f"IMDB: {sub} has no reviews")
            for path in text.progress(files, desc=f"reading {split}/{folder}", unit="file"):
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
                yield parse_review(split, folder, path.name, data, str(path))


def iter_tar(path: Path) -> Iterator[Review]:
    """Reviews of an aclImdb tar(.gz), streamed member by member (nothing is unpacked). An
    archive that ends before tar's end-of-archive marker is truncated (or corrupt): DataError,
    not the reviews read so far (tarfile itself stops there without a word)."""
    ended: list[BaseException] = []

    class Member(tarfile.TarInfo):
        """Records why the member loop ended: tarfile stops silently both at the end-of-archive
        marker (a zero block) and at a header cut short or unreadable past the first."""

        @classmethod
        def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
            try:
                return super().fromtarfile(tarfile_)
            except tarfile.HeaderError as exc:
                ended.append(exc)
                raise

    reviews = 0
    try:
        with tarfile.open(path, "r|*", tarinfo=Member) as archive:
            bar = text.progress(desc=f"reading {path.name}", unit="file")
            for member in archive:
                match = _MEMBER.search(member.name)
                if not match or not member.isfile():
                    continue
                split, folder, name = match.groups()
                handle = archive.extractfile(member)
                assert handle is not None
                yield parse_review(split, folder, name, handle.read(), f"{path}:{member.name}")
                reviews += 1
                bar.update()
            bar.close()
    except (tarfile.TarError, EOFError) as exc:
        raise DataError(f"IMDB: cannot read the archive {path}: it is truncated or corrupt "
                        f"({text.one_line(exc, 160)}); download it again") from None
    except OSError as exc:
        raise DataError(f"IMDB: cannot read the archive {path}: {text.one_line(exc, 160)}") \
            from None
    if not ended or type(ended[-1]).__name__ != "EOFHeaderError":  # the marker's own error
        raise DataError(f"IMDB: the archive {path} is truncated or corrupt: it ends before tar's "
                        f"end-of-archive marker, after {reviews} reviews; download it again")


def find_source(data_dir: Path) -> tuple[str, Path]:
    """("folder", aclImdb root) or ("tar", archive) for a --data-dir; DataError otherwise."""
    if data_dir.is_file():
        if data_dir.name.endswith((".tar.gz", ".tgz", ".tar")):
            return "tar", data_dir
        raise DataError(f"IMDB: --data-dir {data_dir} is a file but not a .tar.gz/.tgz/.tar")
    if not data_dir.is_dir():
        raise DataError(f"IMDB: --data-dir {data_dir} does not exist")
    for root in (data_dir / "aclImdb", data_dir):
        if (root / "train").is_dir() or (root / "test").is_dir():
            return "folder", root
    archives = sorted({p for pattern in _ARCHIVES for p in data_dir.glob(pattern)})
    if len(archives) == 1:
        return "tar", archives[0]
    if len(archives) > 1:
        raise DataError(
            f"IMDB: several archives in {data_dir} ({', '.join(p.name for p in archives)}); "
            f"pass --data-dir pointing at one of them"
        )
    raise DataError(
        f"IMDB: no IMDB data in {data_dir}: expected {data_dir}/{_LAYOUT} (the Stanford release "
        f"unpacked) or {data_dir}/aclImdb_v1.tar.gz"
    )


@register_task(
    "imdb", aliases=("imdb-bytes",),
    description="IMDB sentiment, 2 classes; bytes (LRA style) or BPE; hub or aclImdb files",
)
class IMDB(ClassificationTask):
    num_classes = 2
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seq_len": 256},
        "cpu": {"seq_len": 512},
        # Long Range Arena's byte-level text classification uses reviews of up to 4K bytes.
        "paper": {"seq_len": 4000},
    }

    class Options(ClassificationTask.Options):
        tokenizer: Literal["bytes", "bpe"] = Field(
            "bytes", description="bytes: UTF-8 bytes + 2 (Long Range Arena style, 258 ids); "
                                 "bpe: a byte-level BPE trained on the carved train split")
        vocab_size: int | None = Field(
            None, ge=1, description="BPE ids (8192 unless set, at least 259); bpe only")
        valid_fraction: float = Field(
            0.1, gt=0, lt=1, description="share of each label of the official train split "
                                         "carved out as the valid split")
        data_seed: int = Field(0, description="seeds the valid split's carving (not the run's "
                                              "seed)")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name, o = self.registry_name, self.options
        self.tokenizer_kind = o.tokenizer
        vocab = o.vocab_size
        if self.tokenizer_kind == "bytes" and vocab is not None:
            raise ConfigError(f"task '{name}': vocab_size applies to tokenizer=bpe only "
                              f"(the bytes vocabulary is {text.BYTES_VOCAB})")
        if self.tokenizer_kind == "bpe":
            vocab = DEFAULT_BPE_VOCAB if vocab is None else vocab
            if vocab < MIN_BPE_VOCAB:
                raise ConfigError(f"task '{name}': a byte-level BPE needs vocab_size >= "
                                  f"{MIN_BPE_VOCAB}, got {vocab}")
        self.requested_vocab = vocab
        self.valid_fraction = o.valid_fraction
        self.data_seed = o.data_seed
        if self.data_dir is not None:
            self.source_kind, self.source_path = find_source(self.data_dir)
        else:
            self.source_kind, self.source_path = "hub", None
        self._parsed: dict[str, dict[str, torch.Tensor]] | None = None
        self._source_key: str | None = None
        self._split_index: dict[str, torch.Tensor] | None = None
        self._tokenizer: text.ByteTokenizer | text.HFTokenizer | None = None
        self._encoded: dict[str, dict[str, torch.Tensor]] = {}

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def _pack(reviews: list[Review]) -> dict[str, torch.Tensor]:
        reviews.sort(key=lambda r: (r[1], r[2], r[3]))
        blobs = [r[4].encode("utf-8") for r in reviews]
        lengths = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return {
            "text": torch.from_numpy(np.frombuffer(b"".join(blobs), dtype=np.uint8).copy()),
            "offsets": torch.from_numpy(offsets),
            "labels": torch.tensor([r[1] for r in reviews], dtype=torch.long),
            "ids": torch.tensor([r[2] for r in reviews], dtype=torch.long),
            "ratings": torch.tensor([r[3] for r in reviews], dtype=torch.long),
        }

    def _read_local(self) -> dict[str, dict[str, torch.Tensor]]:
        assert self.source_path is not None
        reviews: dict[str, list[Review]] = {"train": [], "test": []}
        source = iter_tar(self.source_path) if self.source_kind == "tar" \
            else iter_folder(self.source_path)
        for review in source:
            reviews[review[0]].append(review)
        for split, items in reviews.items():
            if not items:
                raise DataError(f"IMDB: {self.source_path} has no {split} reviews "
                                f"(expected {_LAYOUT})")
            labels = {r[1] for r in items}
            if labels != {0, 1}:
                missing = "pos" if 1 not in labels else "neg"
                raise DataError(f"IMDB: {self.source_path} has no {split}/{missing} reviews")
        return {split: self._pack(items) for split, items in reviews.items()}

    def _read_hub(self) -> dict[str, dict[str, torch.Tensor]]:
        hint = (f"put the Stanford release (aclImdb/ unpacked, or aclImdb_v1.tar.gz, layout "
                f"{_LAYOUT}) in a folder and pass --data-dir DIR")
        hub = text.load_hub_dataset(HUB_NAME, None, what="IMDB", local_hint=hint)
        out = {}
        for split in ("train", "test"):
            rows = hub[split]
            texts, labels = list(rows["text"]), [int(x) for x in rows["label"]]
            pairs = enumerate(zip(texts, labels, strict=True))
            reviews = [(split, label, i, -1, body) for i, (body, label) in pairs]
            out[split] = self._pack(reviews)
        return out

    def _load_parsed(self) -> dict[str, dict[str, torch.Tensor]]:
        """Both official splits as packed UTF-8 + labels, cached on disk by source sha256."""
        if self._parsed is not None:
            return self._parsed
        if self.source_kind == "tar":
            assert self.source_path is not None
            self._source_key = text.digest("imdb-tar", text.sha256_file(self.source_path))
            key = text.digest("imdb-parsed", self._source_key, FORMAT_VERSION)
            parsed = text.cached_tensors(self.cache_dir, key, self._read_local,
                                         needs=("train", "test"), what="IMDB")
        else:  # a folder or the hub: the content must be read to be identified anyway
            parsed = self._read_local() if self.source_kind == "folder" else self._read_hub()
            h = hashlib.sha256()
            for split in ("train", "test"):
                for name in ("text", "offsets", "labels", "ids", "ratings"):
                    h.update(parsed[split][name].numpy().tobytes())
            self._source_key = text.digest(f"imdb-{self.source_kind}", h.hexdigest())
        self._parsed = parsed
        return parsed

    def source_key(self) -> str:
        self._load_parsed()
        assert self._source_key is not None
        return self._source_key

    def texts(self, split: str) -> list[str]:
        """The raw reviews of a split (in example order)."""
        official, index = self._official(split)
        blob = official["text"].numpy().tobytes()
        off = official["offsets"]
        return [blob[int(off[k]):int(off[k + 1])].decode("utf-8") for k in index.tolist()]

    # -- splits -------------------------------------------------------------------------------

    def split_indices(self) -> dict[str, torch.Tensor]:
        """Indices into the official train split for train/valid (stratified, data_seed)."""
        if self._split_index is None:
            labels = self._load_parsed()["train"]["labels"]
            gen = torch.Generator().manual_seed(self.data_seed)
            valid_parts = []
            for label in range(self.num_classes):
                members = torch.nonzero(labels == label).flatten()
                n = len(members)
                k = min(max(int(round(self.valid_fraction * n)), 1 if n > 1 else 0), n - 1)
                valid_parts.append(members[torch.randperm(n, generator=gen)[:k]])
            valid = torch.sort(torch.cat(valid_parts)).values
            keep = torch.ones(len(labels), dtype=torch.bool)
            keep[valid] = False
            self._split_index = {"train": torch.nonzero(keep).flatten(), "valid": valid}
        return self._split_index

    def _official(self, split: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        parsed = self._load_parsed()
        if split == "test":
            return parsed["test"], torch.arange(len(parsed["test"]["labels"]))
        return parsed["train"], self.split_indices()[split]

    def _split_key(self, split: str) -> str:
        return text.digest("imdb-split", self.source_key(), split, self.valid_fraction,
                           self.data_seed)

    # -- tokenizer ----------------------------------------------------------------------------

    @property
    def tokenizer(self) -> text.ByteTokenizer | text.HFTokenizer:
        if self._tokenizer is None:
            if self.tokenizer_kind == "bytes":
                self._tokenizer = text.ByteTokenizer()
            else:
                self._tokenizer = text.build_tokenizer(
                    "bpe", cache_dir=self.cache_dir, train_key=self._split_key("train"),
                    train_texts=lambda: self.texts("train"), vocab_size=self.requested_vocab,
                    trained_on="train split (valid carved out)",
                )
        return self._tokenizer

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        if self.shape_only and self._tokenizer is None and self.tokenizer_kind != "bytes":
            self.vocab_is_nominal = True  # the tokenizer would be learnt from the data
            return self.requested_vocab or DEFAULT_BPE_VOCAB
        return self.tokenizer.vocab_size

    def encoded(self, split: str) -> dict[str, torch.Tensor]:
        """{"flat", "offsets", "labels"} of a split; bytes are sliced from the packed text."""
        if split not in self._encoded:
            official, index = self._official(split)
            tok = self.tokenizer
            if isinstance(tok, text.ByteTokenizer):  # no copy: + 2 when an example is built
                self._encoded[split] = {"flat": official["text"], "offsets": official["offsets"],
                                        "labels": official["labels"], "index": index,
                                        "add": torch.tensor(text.BYTE_OFFSET)}
            else:
                key = text.digest("imdb-encoded", self._split_key(split), tok.sha256,
                                  FORMAT_VERSION)

                def build() -> dict[str, torch.Tensor]:
                    flat, offsets = text.encode_documents(
                        tok, self.texts(split), desc=f"encoding IMDB {split}")
                    return {"flat": torch.from_numpy(flat), "offsets": torch.from_numpy(offsets),
                            "labels": official["labels"][index].clone()}

                enc = text.cached_tensors(self.cache_dir, key, build,
                                          needs=("flat", "offsets", "labels"),
                                          what=f"IMDB {split}")
                enc["index"] = torch.arange(len(enc["labels"]))
                enc["add"] = torch.tensor(0)
                self._encoded[split] = enc
        return self._encoded[split]

    def load_split(self, split: str) -> DocumentExamples:
        enc = self.encoded(split)
        return DocumentExamples(enc["flat"], enc["offsets"], enc["labels"], self.seq_len,
                                add=int(enc["add"]), index=enc["index"])

    # -- provenance ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.source_kind == "hub":
            source: dict[str, Any] = {"hub": HUB_NAME, "content_sha256": self.source_key()}
        else:
            assert self.source_path is not None
            source = {self.source_kind: str(self.source_path), "layout": _LAYOUT,
                      "content_sha256": self.source_key()}
            if self.source_kind == "tar":
                source["sha256"] = text.sha256_file(self.source_path)
        splits = {}
        for split in SPLITS:
            enc = self.encoded(split)
            index = enc["index"]
            lengths = (enc["offsets"][index + 1] - enc["offsets"][index])
            labels = enc["labels"][index]
            splits[split] = {
                "examples": len(index),
                "pos": int(labels.sum()),
                "neg": int((labels == 0).sum()),
                "tokens": int(lengths.sum()),
                "truncated": int((lengths > self.seq_len).sum()),
                "from": "official test" if split == "test" else "official train",
            }
        out.update(source=source, tokenizer=self.tokenizer.describe(), splits=splits,
                   valid_fraction=self.valid_fraction, data_seed=self.data_seed,
                   labels={"neg": 0, "pos": 1})
        return out


__all__ = ["IMDB", "find_source", "iter_folder", "iter_tar", "parse_review"]
