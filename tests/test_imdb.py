"""IMDB on a tiny aclImdb folder and tar.gz written here, on the real archive, and offline."""

from __future__ import annotations

import io
import itertools
import os
import tarfile
from pathlib import Path

import pytest

from registry import ConfigError, DataError
from tasks import TASKS, text
from tasks.imdb import find_source, iter_tar

IMDB = TASKS.get("imdb")


def shared_data() -> Path:
    env = os.environ.get("CHIAROSCURO_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


IDS = [10, 2, 33, 4, 5, 6, 7, 8, 9, 1, 11, 12]  # numeric order differs from name order


def review(split: str, folder: str, i: int) -> str:
    word = "great" if folder == "pos" else "awful"
    return f"{split} {folder} #{i}: " + f"{word} " * (i % 5 + 1) + "<br /><br />Ça, 映画!"


def make_acl(root: Path, n: int = 12) -> dict[tuple[str, str], dict[int, str]]:
    """root/aclImdb in the Stanford layout, plus the parts that must be ignored."""
    written: dict[tuple[str, str], dict[int, str]] = {}
    for split in ("train", "test"):
        for folder, ratings in (("neg", (1, 2, 3, 4)), ("pos", (7, 8, 9, 10))):
            d = root / "aclImdb" / split / folder
            d.mkdir(parents=True)
            written[split, folder] = {}
            for k, i in enumerate(IDS[:n]):
                body = review(split, folder, i)
                (d / f"{i}_{ratings[k % 4]}.txt").write_text(body, encoding="utf-8")
                written[split, folder][i] = body
    unsup = root / "aclImdb" / "train" / "unsup"
    unsup.mkdir()
    (unsup / "0_0.txt").write_text("unlabelled", encoding="utf-8")
    (root / "aclImdb" / "README").write_text("readme", encoding="utf-8")
    (root / "aclImdb" / "train" / "labeledBow.feat").write_text("0 0:1", encoding="utf-8")
    return written


def make_tar(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as archive:
        archive.add(src / "aclImdb", arcname="aclImdb")
    return dest


@pytest.fixture
def acl(tmp_path):
    folder = tmp_path / "folder"
    written = make_acl(folder)
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    tar = make_tar(folder, archive_dir / "aclImdb_v1.tar.gz")
    return folder, tar, written


def make(data_dir, tmp_path, seq_len=64, **options):
    return IMDB(seq_len, data_dir=data_dir, cache_dir=tmp_path / "cache", **options)


def examples(task, split):
    return [(ids.tolist(), label) for ids, label in task.dataset(split)]


def test_folder_and_tar_give_identical_examples(acl, tmp_path):
    folder, tar, _ = acl
    a, b = make(folder, tmp_path), make(tar.parent, tmp_path)
    assert (a.source_kind, b.source_kind) == ("folder", "tar")
    for split in ("train", "valid", "test"):
        assert examples(a, split) == examples(b, split)
        assert a.texts(split) == b.texts(split)
    da, db = a.describe(), b.describe()
    assert da["splits"] == db["splits"]
    assert db["source"]["sha256"] == text.sha256_file(tar)


def test_bytes_examples_labels_and_truncation(acl, tmp_path):
    folder, _, written = acl
    task = make(folder, tmp_path, seq_len=40)
    assert task.vocab_size == 258 and task.pad_id == 0 and task.num_classes == 2
    test = task.dataset("test")
    expected = [(0, i, written["test", "neg"][i]) for i in sorted(IDS)] + \
               [(1, i, written["test", "pos"][i]) for i in sorted(IDS)]
    assert len(test) == len(expected)
    for (ids, label), (want_label, _, body) in zip(test, expected, strict=True):
        assert label == want_label
        assert ids.tolist() == [b + 2 for b in body.encode("utf-8")][:40]
    assert task.texts("test") == [body for _, _, body in expected]  # ordered by (label, ID)
    batch = task.collate([test[0], test[-1]])
    assert batch.tokens.shape == (2, 40) and batch.targets.tolist() == [0, 1]
    desc = task.describe()
    assert desc["splits"]["test"]["truncated"] == len(expected)


def test_validation_is_carved_deterministically(acl, tmp_path):
    folder, _, written = acl
    task = make(folder, tmp_path, valid_fraction=0.25)
    again = make(folder, tmp_path, valid_fraction=0.25)
    train, valid = task.texts("train"), task.texts("valid")
    assert valid == again.texts("valid") and train == again.texts("train")
    assert not set(train) & set(valid)
    official = [b for f in ("neg", "pos") for b in written["train", f].values()]
    assert sorted(train + valid) == sorted(official)
    assert [label for _, label in task.dataset("valid")].count(1) == 3  # 25% of 12, per label
    assert [label for _, label in task.dataset("valid")].count(0) == 3
    assert all(t.startswith("train ") for t in train + valid)
    other = make(folder, tmp_path, valid_fraction=0.25, data_seed=1)
    assert other.texts("valid") != valid
    # the run seed does not move the split; the test split is untouched
    assert IMDB(64, data_dir=folder, cache_dir=tmp_path, seed=5,
                valid_fraction=0.25).texts("valid") == valid
    assert sorted(task.texts("test")) == sorted(
        b for f in ("neg", "pos") for b in written["test", f].values())


def test_bpe_is_trained_on_train_only_and_cached(acl, tmp_path, monkeypatch):
    folder, _, _ = acl
    seen: list[list[str]] = []
    original = text._train_bpe

    def spy(texts, vocab_size, total):
        seen.append(list(texts))
        return original(seen[-1], vocab_size, total)

    monkeypatch.setattr(text, "_train_bpe", spy)
    task = make(folder, tmp_path, tokenizer="bpe", vocab_size=300)
    assert 259 < task.vocab_size <= 300
    assert len(seen) == 1 and sorted(seen[0]) == sorted(task.texts("train"))
    ids, label = task.dataset("test")[0]
    assert task.tokenizer.decode(ids) == " " + task.texts("test")[0]  # BPE adds the space
    second = make(folder, tmp_path, tokenizer="bpe", vocab_size=300)
    assert second.vocab_size == task.vocab_size and len(seen) == 1  # no retraining
    monkeypatch.setattr(text, "encode_documents", lambda *a, **k: 1 / 0)  # encoded cache hit
    assert examples(second, "test") == examples(task, "test")


def test_data_dir_can_be_the_archive_or_the_aclimdb_folder(acl, tmp_path):
    folder, tar, _ = acl
    assert find_source(tar) == ("tar", tar)
    assert find_source(folder / "aclImdb") == ("folder", folder / "aclImdb")
    assert find_source(folder) == ("folder", folder / "aclImdb")
    assert examples(make(tar, tmp_path), "valid") == examples(make(folder / "aclImdb", tmp_path),
                                                              "valid")
    make_tar(folder, tar.parent / "aclImdb_v1_copy.tar.gz")
    with pytest.raises(DataError, match="several archives"):
        make(tar.parent, tmp_path)


def test_layout_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"aclImdb/\{train,test\}/\{pos,neg\}/ID_RATING\.txt"):
        make(empty, tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        make(tmp_path / "missing", tmp_path)
    partial = tmp_path / "partial"
    (partial / "aclImdb" / "train" / "pos").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train/neg is missing"):
        make(partial, tmp_path).dataset("train")


def test_malformed_file_names_and_bytes(acl, tmp_path):
    folder, _, _ = acl
    neg = folder / "aclImdb" / "test" / "neg"
    bad = neg / "review.txt"
    bad.write_text("no rating in the name", encoding="utf-8")
    with pytest.raises(DataError, match=r"neg/review\.txt.*file name 'review\.txt'"):
        make(folder, tmp_path).dataset("test")
    bad.unlink()
    wrong = neg / "50_9.txt"
    wrong.write_text("a 9/10 in the neg folder", encoding="utf-8")
    with pytest.raises(DataError, match=r"50_9\.txt: rating 9.*contradicts the folder 'neg'"):
        make(folder, tmp_path).dataset("test")
    wrong.unlink()
    (neg / "51_1.txt").write_bytes(b"first line\nsecond \xff line\n")
    with pytest.raises(DataError, match=r"51_1\.txt, line 2: not valid UTF-8"):
        make(folder, tmp_path).dataset("test")
    tar = make_tar(folder, tmp_path / "bad.tar.gz")
    with pytest.raises(DataError, match=r"bad\.tar\.gz:aclImdb/test/neg/51_1\.txt, line 2"):
        make(tar, tmp_path).dataset("test")


def test_broken_archive(tmp_path):
    broken = tmp_path / "aclImdb_v1.tar.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot read the archive"):
        make(tmp_path, tmp_path).dataset("train")


def test_options_are_checked(acl, tmp_path):
    folder, _, _ = acl
    with pytest.raises(ConfigError, match="vocab_size applies to tokenizer=bpe"):
        make(folder, tmp_path, vocab_size=1000)
    for bad in (0, 1, 1.5, "x"):
        with pytest.raises(ConfigError, match="valid_fraction"):
            make(folder, tmp_path, valid_fraction=bad)
    with pytest.raises(ConfigError, match="unknown option 'train_file'"):
        make(folder, tmp_path, train_file="x")
    with pytest.raises(ConfigError, match="tokenizer='word' is invalid"):
        make(folder, tmp_path, tokenizer="word")


def test_offline_fails_fast_with_one_line(tmp_path, monkeypatch, waits):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        make(None, tmp_path).dataset("train")
    assert waits.connections == [] and waits.sleeps == []  # no network tried, no retry waited
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("IMDB needs the Hugging Face hub")
    assert "--data-dir" in msg and "aclImdb" in msg


def test_hub_path_through_datasets(tmp_path, monkeypatch, acl):
    """The datasets code path (stanfordnlp/imdb: text, label 0/1), answered locally."""
    datasets = pytest.importorskip("datasets")
    _, _, written = acl
    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        out = {}
        for split in ("train", "test"):
            rows = [(body, int(f == "pos")) for f in ("pos", "neg")
                    for body in written[split, f].values()]
            out[split] = datasets.Dataset.from_dict(
                {"text": [r[0] for r in rows], "label": [r[1] for r in rows]})
        out["unsupervised"] = datasets.Dataset.from_dict({"text": ["x"], "label": [-1]})
        return datasets.DatasetDict(out)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(text, "hub_reachable", lambda: (False, "offline, but cached"))
    import huggingface_hub.constants as hub_constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # go_offline() sets them; restore
        monkeypatch.setenv(var, "0")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    task = make(None, tmp_path, valid_fraction=0.25)
    assert calls == []  # nothing is loaded before it is needed
    assert task.vocab_size == 258
    assert sorted(task.texts("test")) == sorted(
        b for f in ("neg", "pos") for b in written["test", f].values())
    assert len(task.dataset("train")) + len(task.dataset("valid")) == 2 * len(IDS)
    for ids, label in task.dataset("test"):
        body = bytes(int(i) - 2 for i in ids).decode("utf-8", errors="ignore")
        assert ("pos" in body[:12]) == (label == 1)
    assert task.describe()["source"]["hub"] == "stanfordnlp/imdb"
    assert calls == [("stanfordnlp/imdb", None)]  # once, the local copy used while offline


# -- the real archive --------------------------------------------------------------------------

REAL = shared_data() / "imdb" / "aclImdb_v1_labeled.tar.gz"


@pytest.mark.skipif(not REAL.is_file(), reason=f"real IMDB archive not found at {REAL} "
                                               f"(set CHIAROSCURO_SHARED_DATA)")
def test_real_archive_streams_a_slice(tmp_path, monkeypatch):
    assert find_source(REAL.parent) == ("tar", REAL)
    read = []

    class Counted(io.FileIO):
        def read(self, size=-1):
            data = super().read(size)
            read.append(len(data))
            return data

    real_open = tarfile.open
    with Counted(REAL) as raw:
        monkeypatch.setattr(tarfile, "open",
                            lambda path, mode, **kw: real_open(fileobj=raw, mode=mode, **kw))
        first = list(itertools.islice(iter_tar(REAL), 400))
    assert sum(read) < REAL.stat().st_size / 10  # streaming: only a slice of it was read
    assert len(first) == 400
    for split, label, review_id, rating, body in first:
        assert split in ("train", "test") and label in (0, 1)
        assert (rating >= 7) if label else (rating <= 4)
        assert review_id >= 0 and len(body) > 10
