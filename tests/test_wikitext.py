"""WikiText tasks on synthetic WikiText-format files, the real local copy, and without the hub."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from registry import ConfigError, DataError
from tasks import TASKS, text
from tasks.base import IGNORE_INDEX
from tasks.wikitext import carve_index

WikiText2 = TASKS.get("wikitext2")
WikiText103 = TASKS.get("wikitext103")

WORDS = ("the of and in to a was is for on as with by at from that his her it an were which "
         "film album song game team army ship storm city river , . @-@ <unk>").split()


def shared_data() -> Path:
    env = os.environ.get("CHIAROSCURO_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def wikitext_lines(seed: int, articles: int, extra: str = "") -> list[str]:
    """WikiText layout: ' = Title = ' headings, ' = = Section = = ', paragraphs, blank lines."""
    rng = random.Random(seed)
    lines: list[str] = []
    for a in range(articles):
        lines += [" ", f" = Article {seed} {a} = ", " "]
        for s in range(rng.randint(1, 3)):
            for _ in range(rng.randint(1, 2)):
                words = [rng.choice(WORDS) for _ in range(rng.randint(5, 30))]
                if extra and rng.random() < 0.3:
                    words.append(extra)
                lines += [" " + " ".join(words) + " . ", " "]
            lines += [f" = = Section {s} = = ", " "]
    return lines


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def expected_words(lines: list[str]) -> int:
    return sum(len(line.split()) for line in lines) + len(lines)


@pytest.fixture
def corpus(tmp_path):
    """A folder with wiki.{train,valid,test}.tokens; 'trainonly' never appears outside train,
    'testonly' only in test."""
    d = tmp_path / "wt"
    d.mkdir()
    lines = {"train": wikitext_lines(1, 12, "trainonly"), "valid": wikitext_lines(2, 3),
             "test": wikitext_lines(3, 4, "testonly")}
    for split, ls in lines.items():
        write(d / f"wiki.{split}.tokens", ls)
    return d, lines


def make(data_dir, tmp_path, seq_len=32, **options):
    options.setdefault("vocab_size", 300)
    return WikiText2(seq_len, data_dir=data_dir, cache_dir=tmp_path / "cache", **options)


def test_splits_windows_and_word_counts(corpus, tmp_path):
    d, lines = corpus
    task = make(d, tmp_path, seq_len=32, eval_stride=8)
    assert task.causal and task.pad_id == 0 and 259 < task.vocab_size <= 300
    for split in ("train", "valid", "test"):
        ds = task.dataset(split)
        ids = task.encoded(split)["ids"]
        assert ids.dtype == torch.int32 and ids[0] == task.tokenizer.eos_id
        assert int((ids == task.tokenizer.eos_id).sum()) == len(lines[split]) + 1  # one per line
        stride = 32 if split == "train" else 8
        scored = []
        for i in range(0, len(ds), 16):
            batch = task.collate(ds[i : i + 16])
            assert batch.tokens.shape[1] <= 32
            scored += batch.targets[batch.targets != IGNORE_INDEX].tolist()
        assert scored == ids[1:].tolist()  # every token once, in order
        for k, (window, n_context) in enumerate(ds):
            assert len(window) <= 33
            if k > 0:
                assert n_context >= 32 - stride
        assert task.words_in_split(split) == expected_words(lines[split])
    desc = task.describe()
    assert desc["source"]["test"]["sha256"] == text.sha256_file(d / "wiki.test.tokens")
    assert desc["tokenizer"]["kind"] == "bpe" and len(desc["tokenizer"]["sha256"]) == 64
    assert desc["splits"]["test"]["words"] == expected_words(lines["test"])
    assert desc["splits"]["test"]["scored_tokens"] == desc["splits"]["test"]["tokens"] - 1


@pytest.mark.parametrize("tokenizer", ["bpe", "word"])
def test_meter_counts_the_words_of_the_scored_targets(corpus, tmp_path, tokenizer):
    """Full pass: the meter's words == words_in_split; a partial pass (the harness's
    eval_batches) counts only the words it scored, so word perplexity stays honest."""
    d, _ = corpus
    task = make(d, tmp_path, seq_len=16, tokenizer=tokenizer,
                vocab_size=300 if tokenizer == "bpe" else None)
    ds = task.dataset("test")
    full, part = task.meter("test"), task.meter("test")
    gen = torch.Generator().manual_seed(0)
    for k, i in enumerate(range(0, len(ds), 8)):
        batch = task.collate(ds[i : i + 8])
        logits = torch.randn(*batch.tokens.shape, task.vocab_size, generator=gen)
        full.update(logits, batch)
        if k < 2:
            part.update(logits, batch)
    out = full.compute()
    assert out["words"] == task.words_in_split("test") and out["tokens"] == len(
        task.encoded("test")["ids"]) - 1
    assert out["word_perplexity"] > out["perplexity"] or tokenizer == "word"
    p = part.compute()
    assert 0 < p["words"] < out["words"]
    assert p["words"] <= p["tokens"]


def test_word_tokenizer_maps_unseen_words_to_unk(corpus, tmp_path):
    d, lines = corpus
    task = make(d, tmp_path, tokenizer="word", vocab_size=None)
    tok = task.tokenizer
    train_words = {w for line in lines["train"] for w in line.split()}
    assert task.vocab_size == len(train_words | {"<pad>", "<unk>", "<eos>"})
    assert tok.tok.token_to_id("trainonly") is not None
    assert tok.tok.token_to_id("testonly") is None
    test_ids = task.encoded("test")["ids"]
    n_testonly = sum(line.split().count("testonly") for line in lines["test"])
    n_unk_text = sum(line.split().count("<unk>") for line in lines["test"])
    assert n_testonly > 0
    assert int((test_ids == tok.unk_id).sum()) == n_testonly + n_unk_text
    # one id per word plus the <eos> ids: the scored tokens are exactly the counted words
    assert len(test_ids) - 1 == task.words_in_split("test") == expected_words(lines["test"])


def test_bpe_and_word_score_the_same_words(corpus, tmp_path):
    d, _ = corpus
    bpe = make(d, tmp_path)
    word = make(d, tmp_path, tokenizer="word", vocab_size=None)
    for split in ("train", "valid", "test"):
        assert bpe.words_in_split(split) == word.words_in_split(split)
    assert len(bpe.encoded("test")["ids"]) != len(word.encoded("test")["ids"])


def test_second_construction_uses_both_caches(corpus, tmp_path, monkeypatch):
    d, _ = corpus
    first = make(d, tmp_path)
    ids = first.encoded("test")["ids"]
    tok_file = first.tokenizer.path
    mtime = tok_file.stat().st_mtime_ns

    def fail(*a, **k):
        raise AssertionError("cache miss")

    monkeypatch.setattr(text, "_train_bpe", fail)
    monkeypatch.setattr(text, "encode_lines", fail)
    second = make(d, tmp_path)
    assert torch.equal(second.encoded("test")["ids"], ids)
    assert not second.tokenizer.trained_now and tok_file.stat().st_mtime_ns == mtime
    assert second.words_in_split("test") == first.words_in_split("test")
    # the text is not even decoded again
    monkeypatch.setattr(text, "read_lines", fail)
    assert len(make(d, tmp_path).dataset("test")) == len(first.dataset("test"))


def test_rotated_cache_files_do_not_make_valid_evaluate_on_test(corpus, tmp_path):
    """The encoded valid and test files swapped on disk (rotated, renamed): each is re-encoded
    from its own text, with a line naming the file, instead of scoring 'valid' on test text."""
    d, _ = corpus
    first = make(d, tmp_path)
    valid, test = first.encoded("valid")["ids"], first.encoded("test")["ids"]
    files = sorted((tmp_path / "cache" / "encoded").glob("*.pt"))
    assert len(files) == 2
    a, b = (f.read_bytes() for f in files)
    files[0].write_bytes(b)
    files[1].write_bytes(a)
    with pytest.warns(UserWarning, match="rebuilding the cache .*: it was built from"):
        second = make(d, tmp_path)
        assert torch.equal(second.encoded("valid")["ids"], valid)
        assert torch.equal(second.encoded("test")["ids"], test)


def test_changed_training_text_retrains(corpus, tmp_path):
    d, lines = corpus
    first = make(d, tmp_path)
    sha = first.tokenizer.sha256
    write(d / "wiki.train.tokens", lines["train"][:-40])
    second = make(d, tmp_path)
    assert second.tokenizer.trained_now and second.tokenizer.path != first.tokenizer.path
    assert second.tokenizer.sha256 != sha


def test_train_file_carves_validation(corpus, tmp_path):
    d, lines = corpus
    task = make(None, tmp_path, train_file=d / "wiki.valid.tokens",
                test_file=d / "wiki.test.tokens", tokenizer="word", vocab_size=None)
    assert task.sources["valid"].part == "tail" and task.sources["train"].part == "head"
    train, valid = task.lines("train"), task.lines("valid")
    assert train + valid == lines["valid"]
    assert valid[0].startswith(" = ") and not valid[0].startswith(" = = ")  # at an article
    cut = carve_index(lines["valid"])
    assert abs(cut - 0.9 * len(lines["valid"])) < len(lines["valid"]) / 2
    assert task.words_in_split("train") + task.words_in_split("valid") == \
        expected_words(lines["valid"])
    desc = task.describe()
    assert "carved" in desc["source"]["valid"]["how"]
    # the vocabulary comes from the carved training part only
    only_valid = {w for x in valid for w in x.split()} - {w for x in train for w in x.split()}
    for w in only_valid:
        assert task.tokenizer.tok.token_to_id(w) is None


def test_carve_without_headings_is_at_ninety_percent():
    lines = [f" line {i} " for i in range(100)]
    assert carve_index(lines) == 90


def test_file_names_resolve_inside_data_dir(corpus, tmp_path):
    d, lines = corpus
    (d / "wiki.train.tokens").unlink()
    task = make(d, tmp_path, train_file="wiki.valid.tokens", tokenizer="word")
    assert task.sources["train"].path == d / "wiki.valid.tokens"
    assert task.sources["test"].path == d / "wiki.test.tokens"
    assert task.sources["valid"].how.startswith("carved")  # not data_dir's wiki.valid.tokens


def test_refuses_testing_on_the_training_text(corpus, tmp_path):
    d, _ = corpus
    with pytest.raises(ConfigError, match="same content"):
        make(d, tmp_path, train_file="wiki.valid.tokens", test_file="wiki.valid.tokens")
    with pytest.raises(ConfigError, match="same content"):
        make(None, tmp_path, train_file=d / "wiki.test.tokens", valid_file=d / "wiki.valid.tokens",
             test_file=d / "wiki.test.tokens")


def test_released_subfolder_and_raw_files(corpus, tmp_path):
    d, lines = corpus
    root = tmp_path / "root"
    sub = root / "wikitext-2-raw"
    sub.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (d / f"wiki.{split}.tokens").rename(sub / f"wiki.{split}.raw")
    task = make(root, tmp_path, tokenizer="word")
    assert task.sources["test"].path == sub / "wiki.test.raw"
    assert task.words_in_split("test") == expected_words(lines["test"])


def test_layout_errors_list_expected_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"wiki\.train\.tokens, wiki\.valid\.tokens, wiki\.test"):
        make(empty, tmp_path)
    partial = tmp_path / "partial"
    partial.mkdir()
    for split in ("valid", "test"):
        write(partial / f"wiki.{split}.tokens", wikitext_lines(5, 1))
    with pytest.raises(DataError, match=r"lacks wiki\.train\.tokens.*--train-file") as info:
        make(partial, tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        make(None, tmp_path, train_file=tmp_path / "nope.tokens")
    with pytest.raises(DataError, match="not a folder"):
        make(tmp_path / "missing", tmp_path)


def test_undecodable_and_empty_files(corpus, tmp_path):
    d, lines = corpus
    good = "".join(x + "\n" for x in lines["test"]).encode()
    (d / "wiki.test.tokens").write_bytes(good + b" bad \xc3\x28 byte \n")
    task = make(d, tmp_path)
    with pytest.raises(DataError, match=rf"wiki\.test\.tokens, line {len(lines['test']) + 1}:"):
        task.dataset("test")
    write(d / "wiki.valid.tokens", [" ", "", "   "])
    with pytest.raises(DataError, match=r"valid split \(.*wiki\.valid\.tokens\) has no text"):
        make(d, tmp_path).dataset("valid")


def test_options_are_checked(corpus, tmp_path):
    d, _ = corpus
    with pytest.raises(ConfigError, match="unknown option 'vocab'; did you mean 'vocab_size'"):
        make(d, tmp_path, vocab=100)
    with pytest.raises(ConfigError, match="tokenizer='chars' is invalid"):
        make(d, tmp_path, tokenizer="chars")
    with pytest.raises(ConfigError, match="eval_stride"):
        make(d, tmp_path, eval_stride=64)
    with pytest.raises(ConfigError, match="vocab_size >= 259"):
        make(d, tmp_path, vocab_size=100)
    # values arrive typed (the CLI parses them as JSON): text is not a number
    with pytest.raises(ConfigError, match=r"vocab_size='300' is invalid: Input should be a valid "
                                          r"integer \(set it with --task-option vocab_size="):
        make(d, tmp_path, seq_len=16, vocab_size="300")
    task = make(d, tmp_path, seq_len=16, eval_stride=4, vocab_size=300)
    assert task.eval_stride == 4 and task.requested_vocab == 300
    assert make(d, tmp_path, seq_len=16, vocab_size=300).eval_stride == 8  # default seq_len // 2


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """datasets and huggingface_hub look for cached copies in an empty folder only."""
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    # go_offline() flips these; have them restored after the test
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", datasets.config.HF_HUB_OFFLINE)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, os.environ.get(var, "0"))
    return datasets


@pytest.mark.parametrize("cls,what", [(WikiText2, "WikiText-2"), (WikiText103, "WikiText-103")])
def test_offline_fails_fast_with_one_line(tmp_path, monkeypatch, empty_hf_cache, cls, what,
                                          waits):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(empty_hf_cache.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as info:
        cls(64, cache_dir=tmp_path / "cache").dataset("train")
    assert waits.connections == [] and waits.sleeps == []  # no network tried, no retry waited
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(what)
    assert "--data-dir" in msg and "wiki.train.tokens" in msg and "hub" in msg
    # only the test split lacks a file: the message says so
    d = tmp_path / "two"
    d.mkdir()
    for seed, split in enumerate(("train", "valid")):
        write(d / f"wiki.{split}.tokens", wikitext_lines(7 + seed, 2))
    task = cls(64, cache_dir=tmp_path / "cache", train_file=d / "wiki.train.tokens",
               valid_file=d / "wiki.valid.tokens", vocab_size=300)
    assert len(task.dataset("train")) > 0
    with pytest.raises(DataError, match=r"the test split has no file: pass --test-file FILE"):
        task.dataset("test")


def test_offline_probe_is_used_before_datasets(tmp_path, monkeypatch, empty_hf_cache, waits):
    """With the probe saying 'unreachable', datasets is switched offline (no retries)."""
    datasets = empty_hf_cache
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(text, "hub_reachable", lambda: (False, "huggingface.co:443: timed out"))
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "0")  # restored after the test
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(DataError, match=r"unreachable: huggingface\.co:443: timed out.*--data-dir"):
        _ = WikiText2(64, cache_dir=tmp_path / "cache", train_file=None).vocab_size
    assert waits.connections == [] and waits.sleeps == []  # the probe's answer: no retries
    assert os.environ["HF_HUB_OFFLINE"] == "1" and datasets.config.HF_HUB_OFFLINE is True


def test_hub_path_through_datasets(tmp_path, monkeypatch, corpus):
    """The datasets code path (hub rows end in '\n'), with load_dataset answered locally."""
    datasets = pytest.importorskip("datasets")
    _, lines = corpus
    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return datasets.DatasetDict({
            hub: datasets.Dataset.from_dict({"text": [x + "\n" if x.strip() else ""
                                                      for x in lines[split]]})
            for split, hub in (("train", "train"), ("valid", "validation"), ("test", "test"))})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(text, "hub_reachable", lambda: (True, ""))
    task = WikiText103(32, cache_dir=tmp_path / "cache", tokenizer="word")
    assert task.words_in_split("test") == expected_words(lines["test"])
    assert task.lines("valid") == [x if x.strip() else "" for x in lines["valid"]]
    assert calls == [("Salesforce/wikitext", "wikitext-103-raw-v1")]  # loaded once
    desc = task.describe()
    assert desc["source"]["test"]["hub"] == "Salesforce/wikitext"
    assert desc["source"]["test"]["config"] == "wikitext-103-raw-v1"
    # hub for test, a local file for train: each split from its own place
    mixed = WikiText103(32, cache_dir=tmp_path / "cache", tokenizer="word",
                        train_file=corpus[0] / "wiki.train.tokens")
    assert mixed.sources["test"].kind == "hub" and mixed.sources["valid"].part == "tail"
    assert mixed.words_in_split("test") == expected_words(lines["test"])

    def broken(path, name=None, **kwargs):
        raise FileNotFoundError("no such config\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(DataError, match=r"load_dataset.*FileNotFoundError.*--data-dir") as info:
        _ = WikiText2(32, cache_dir=tmp_path / "cache").vocab_size
    assert "\n" not in str(info.value)


# -- the real WikiText-2 copy (valid and test splits only) -------------------------------------

REAL = shared_data() / "wikitext-2"
needs_real = pytest.mark.skipif(
    not (REAL / "wiki.test.tokens").is_file(),
    reason=f"real WikiText-2 files not found in {REAL} (set CHIAROSCURO_SHARED_DATA)",
)


@needs_real
def test_real_wikitext2_without_train_split_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"lacks wiki\.train\.tokens.*--train-file"):
        WikiText2(128, data_dir=REAL, cache_dir=tmp_path)


@needs_real
def test_real_wikitext2_train_on_valid_test_on_test(tmp_path):
    task = WikiText2(128, data_dir=REAL, cache_dir=tmp_path, train_file="wiki.valid.tokens",
                     tokenizer="word")
    # the published counts: words + one <eos> per line
    assert task.words_in_split("test") == 245_569
    assert task.words_in_split("train") + task.words_in_split("valid") == 217_646
    assert len(task.encoded("test")["ids"]) - 1 == 245_569
    test = task.dataset("test")
    assert sum(len(w) - 1 - c for w, c in test) == 245_569
    # valid.tokens has <unk> already; unseen test words add more
    assert 0 < int((task.encoded("test")["ids"] == task.tokenizer.unk_id).sum()) < 245_569 // 5
    desc = task.describe()
    assert desc["source"]["train"]["file"].endswith("wiki.valid.tokens")
    assert desc["source"]["test"]["file"].endswith("wiki.test.tokens")


@needs_real
def test_real_wikitext2_bpe(tmp_path):
    task = WikiText2(256, data_dir=REAL, cache_dir=tmp_path, train_file="wiki.valid.tokens",
                     vocab_size=2048)
    assert task.vocab_size == 2048
    ids = task.encoded("test")["ids"]
    assert len(ids) > 245_569  # subwords
    assert task.words_in_split("test") == 245_569
    first = task.tokenizer.decode(ids[:30])
    assert "Robert <unk>" in first  # the test split's first article
