"""Shared text plumbing (tasks/text.py): windows, tokenizers, caches, reading, the hub probe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from registry import ConfigError, DataError
from tasks import TASKS, text
from tasks.base import IGNORE_INDEX, LanguageModelingTask

# -- sliding windows ---------------------------------------------------------------------------


def _check_plan(n: int, seq_len: int, stride: int) -> None:
    plan = text.window_plan(n, seq_len, stride)
    scored = np.zeros(max(n, 1), dtype=np.int64)
    for k, (start, stop, n_context) in enumerate(plan.tolist()):
        assert 0 <= start < stop <= n
        assert stop - start <= seq_len + 1  # at most seq_len inputs + 1
        assert 0 <= n_context < stop - start - 1  # every window scores something
        for p in range(start + 1 + n_context, stop):  # the scored target positions
            scored[p] += 1
            context = p - start  # inputs ids[start:p] predict ids[p]
            assert context >= min(p, seq_len - stride + 1)
        if k > 0:
            assert stop - start == seq_len + 1  # later windows are extended to full length
    assert scored[0] == 0
    assert (scored[1:n] == 1).all(), "every target position is scored exactly once"


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 700), st.integers(1, 48), st.data())
def test_window_plan_scores_every_target_once(n, seq_len, data):
    stride = data.draw(st.integers(1, seq_len))
    _check_plan(n, seq_len, stride)


def test_window_plan_edges():
    _check_plan(2, 5, 5)
    _check_plan(6, 5, 5)  # exactly one full window
    _check_plan(7, 5, 5)
    _check_plan(1000, 64, 1)
    assert len(text.window_plan(1, 5, 2)) == 0
    assert text.window_plan(11, 5, 5).tolist() == [[0, 6, 0], [5, 11, 0]]  # contiguous chunks
    for bad in (0, 6):
        with pytest.raises(ConfigError):
            text.window_plan(100, 5, bad)


@pytest.mark.parametrize("n,seq_len,stride", [(1, 8, 4), (2, 8, 4), (100, 8, 4), (100, 8, 8),
                                              (101, 16, 3), (57, 1, 1)])
def test_collated_windows_score_the_stream_once_in_order(n, seq_len, stride):
    """Through LanguageModelingTask.collate: the scored targets, window after window, are
    exactly ids[1:], each with at least min(p, seq_len - stride + 1) tokens of context."""
    ids = torch.arange(n, dtype=torch.int32)  # the id is the position
    windows = text.LMWindows(ids, seq_len, stride)
    task = LanguageModelingTask.__new__(LanguageModelingTask)
    task.pad_id = 0
    scored = []
    for i in range(0, len(windows), 5):
        batch = task.collate(windows[i : i + 5])
        assert batch.tokens.shape[1] <= seq_len
        for row in range(len(batch)):
            cols = torch.nonzero(batch.targets[row] != IGNORE_INDEX).flatten()
            for c in cols.tolist():
                p = int(batch.targets[row, c])
                assert batch.tokens[row, c] == p - 1  # next-token targets
                assert c + 1 >= min(p, seq_len - stride + 1)  # inputs 0..c are visible
                scored.append(p)
    assert scored == list(range(1, n))
    assert windows.scored_tokens == max(n - 1, 0)


# -- tokenizers --------------------------------------------------------------------------------


def test_bytes_tokenizer_round_trip():
    tok = text.ByteTokenizer()
    s = "Ça va? 映画 <br />"
    ids = tok.encode(s)
    assert ids.dtype == np.int32 and ids.min() >= 2 and ids.max() < tok.vocab_size == 258
    assert list(ids) == [b + 2 for b in s.encode("utf-8")]
    assert tok.decode(ids) == s and tok.pad_id == 0


CORPUS = [f"the {w} sat on the mat with {w} and the dog ." for w in
          ["cat", "bird", "fish", "horse", "cow", "sheep", "pig", "goat"] * 20]


def _bpe(tmp_path, texts=CORPUS, vocab=300):
    return text.build_tokenizer("bpe", cache_dir=tmp_path, train_key=text.digest(texts),
                                train_texts=lambda: texts, vocab_size=vocab, trained_on="t")


def test_bpe_trains_once_then_loads_from_cache(tmp_path, monkeypatch):
    first = _bpe(tmp_path)
    assert first.trained_now and first.path.exists()
    assert (first.pad_id, first.eos_id) == (0, 1) and first.vocab_size <= 300
    mtime = first.path.stat().st_mtime_ns

    def no_training(*a, **k):
        raise AssertionError("retrained although the tokenizer is cached")

    monkeypatch.setattr(text, "_train_bpe", no_training)
    second = _bpe(tmp_path)
    assert not second.trained_now
    assert second.sha256 == first.sha256 and second.path == first.path
    assert second.path.stat().st_mtime_ns == mtime
    s = "the cat sat on the <pad> mat"
    assert list(second.encode(s)) == list(first.encode(s))
    assert 0 not in second.encode(s)  # special-token text is text, never <pad>
    assert second.decode(second.encode(s)).strip() == s
    monkeypatch.undo()
    # other options or other training data: another cache entry
    assert _bpe(tmp_path, vocab=320).path != first.path
    assert _bpe(tmp_path, texts=CORPUS[:-1]).path != first.path
    assert len(list((tmp_path / "tokenizers").glob("*.json"))) == 3


def test_word_tokenizer_vocabulary(tmp_path):
    lines = ["b a a c c c", "d b <unk>", ""]
    tok = text.build_tokenizer("word", cache_dir=tmp_path, train_key="k",
                               train_texts=lambda: lines, vocab_size=None, trained_on="t")
    vocab = tok.tok.get_vocab()
    assert [vocab[w] for w in ("<pad>", "<unk>", "<eos>")] == [0, 1, 2]
    assert [vocab[w] for w in ("c", "a", "b", "d")] == [3, 4, 5, 6]  # by frequency, then a-z
    assert tok.vocab_size == 7
    assert list(tok.encode("a zebra <unk> d")) == [4, 1, 1, 6]  # unseen -> <unk>
    capped = text.build_tokenizer("word", cache_dir=tmp_path, train_key="k",
                                  train_texts=lambda: lines, vocab_size=5, trained_on="t")
    assert capped.vocab_size == 5 and list(capped.encode("c a b")) == [3, 4, 1]


def test_encode_lines_stream(tmp_path):
    tok = text.build_tokenizer("word", cache_dir=tmp_path, train_key="k",
                               train_texts=lambda: ["x y"], vocab_size=None, trained_on="t")
    x, y, eos = tok.tok.token_to_id("x"), tok.tok.token_to_id("y"), tok.eos_id
    ids = text.encode_lines(tok, [" x y ", " ", "y q"], desc="t", batch=2)
    assert ids.dtype == np.int32
    assert ids.tolist() == [eos, x, y, eos, eos, y, 1, eos]


ODD_LINES = [" = Title = ", "", "  tabs\tand  double  spaces ", "don't 's 3.5 @-@ <unk>",
             "日本語 テキスト ünïcödé", "nbsp\u00a0inside  emoji 🎬🎬 x\x1cy", " ", "end ."]


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_word_starts_count_exactly_the_counted_words(tmp_path, kind):
    """Scored targets that begin a word == str.split() words + one <eos> per line."""
    train = ODD_LINES[:4] * 5 + CORPUS[:20]
    tok = text.build_tokenizer(kind, cache_dir=tmp_path, train_key=kind,
                               train_texts=lambda: train, vocab_size=300 if kind == "bpe" else None,
                               trained_on="t")
    ids = torch.from_numpy(text.encode_lines(tok, ODD_LINES, desc="t")).long()
    starts = text.word_starts(tok)
    assert starts.shape == (tok.vocab_size,) and not starts[tok.pad_id] and starts[tok.eos_id]
    assert int(starts[ids[1:]].sum()) == sum(len(x.split()) for x in ODD_LINES) + len(ODD_LINES)


def test_unknown_tokenizer_kind(tmp_path):
    with pytest.raises(ConfigError, match="unknown tokenizer"):
        text.build_tokenizer("sentencepiece", cache_dir=tmp_path, train_key="k",
                             train_texts=list, vocab_size=None, trained_on="t")


# -- caches ------------------------------------------------------------------------------------


def _cached(tmp_path, key, build):
    return text.cached_tensors(tmp_path, key, build, needs=("ids", "words"), what="test split")


def test_cached_tensors_atomic_and_rebuilds_corrupt(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"ids": torch.arange(5, dtype=torch.int32), "words": 7}

    a = _cached(tmp_path, "abc", build)
    b = _cached(tmp_path, "abc", build)
    assert len(calls) == 1 and b["words"] == 7 and torch.equal(a["ids"], b["ids"])
    assert b["ids"].dtype == torch.int32
    files = list((tmp_path / "encoded").iterdir())
    assert [f.suffix for f in files] == [".pt"]  # no temp files left behind
    files[0].write_bytes(b"not a tensor file")
    with pytest.warns(UserWarning, match=f"rebuilding the cache {files[0]}: it cannot be read"):
        c = _cached(tmp_path, "abc", build)
    assert len(calls) == 2 and torch.equal(c["ids"], a["ids"])


def test_a_cache_that_loads_but_holds_nothing_is_named_and_rebuilt(tmp_path):
    """A file that torch.load reads as {} (or as data without the fields its reader needs) is
    not handed to the task, which would fail on a missing key with a traceback."""
    build = lambda: {"ids": torch.arange(3), "words": 2}  # noqa: E731
    path = tmp_path / "encoded" / "abc.pt"
    path.parent.mkdir()
    torch.save({}, path)
    with pytest.warns(UserWarning, match=f"rebuilding the cache {path}"):
        assert _cached(tmp_path, "abc", build)["words"] == 2
    torch.save({"built_from": "abc", "data": {"ids": torch.arange(3)}}, path)
    with pytest.warns(UserWarning, match=f"{path}: it holds no words"):
        assert _cached(tmp_path, "abc", build)["words"] == 2
    assert _cached(tmp_path, "abc", lambda: pytest.fail("rebuilt a good cache"))["words"] == 2


def test_a_cache_file_under_another_key_is_rebuilt(tmp_path):
    """A cache file renamed or copied to another key's name carries its own key: it is
    rebuilt, not used for what it is not."""
    _cached(tmp_path, "key-of-valid", lambda: {"ids": torch.tensor([1]), "words": 1})
    _cached(tmp_path, "key-of-test", lambda: {"ids": torch.tensor([2]), "words": 1})
    folder = tmp_path / "encoded"
    valid, test = folder / "key-of-valid.pt", folder / "key-of-test.pt"
    valid.write_bytes(test.read_bytes())
    with pytest.warns(UserWarning, match="built from key-of-test"):
        again = _cached(tmp_path, "key-of-valid", lambda: {"ids": torch.tensor([1]), "words": 1})
    assert again["ids"].tolist() == [1]


def test_a_failed_cache_build_leaves_nothing_behind(tmp_path):
    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _cached(tmp_path, "abc", lambda: {"ids": Boom(), "words": 1})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_tokenizer_of_another_kind_at_a_cache_key_is_not_used(tmp_path):
    """A valid word tokenizer file at the bpe tokenizer's key: the bpe one is trained again
    (with a line saying so) instead of encoding with the word vocabulary under the name bpe."""
    bpe = _bpe(tmp_path)
    word = text.build_tokenizer("word", cache_dir=tmp_path, train_key=text.digest(CORPUS),
                                train_texts=lambda: CORPUS, vocab_size=None, trained_on="t")
    bpe.path.write_bytes(word.path.read_bytes())
    with pytest.warns(UserWarning, match=f"bpe tokenizer: rebuilding the cache {bpe.path}"):
        again = _bpe(tmp_path)
    assert again.trained_now and again.sha256 == bpe.sha256
    assert json.loads(again.tok.to_str())["model"]["type"] == "BPE"


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.warns(UserWarning, match=f"cannot cache in {not_a_folder / 'encoded'}"):
        out = _cached(not_a_folder, "abc", lambda: {"ids": torch.arange(2), "words": 1})
    assert out["words"] == 1


def test_digest_is_stable_and_sensitive():
    assert text.digest("a", 1, {"b": 2}) == text.digest("a", 1, {"b": 2})
    assert text.digest("a", 1) != text.digest("a", 2)
    assert text.sha256_lines(["a", "b"]) != text.sha256_lines(["ab"])


# -- reading -----------------------------------------------------------------------------------


def test_read_lines_semantics(tmp_path):
    f = tmp_path / "f.txt"
    f.write_bytes(b" a b \r\n\n c \x0c d \n")
    assert text.read_lines(f) == [" a b ", "", " c \x0c d "]  # only \n splits lines
    f.write_bytes(b"no newline at end")
    assert text.read_lines(f) == ["no newline at end"]


def test_undecodable_bytes_name_file_and_line(tmp_path):
    f = tmp_path / "bad.tokens"
    f.write_bytes(b"fine\nalso fine\nbroken \xff here\n")
    with pytest.raises(DataError, match=r"bad\.tokens, line 3: not valid UTF-8.*column 8"):
        text.read_lines(f)
    with pytest.raises(DataError, match="cannot read"):
        text.read_lines(tmp_path / "missing")


# -- options and the hub -----------------------------------------------------------------------


def test_hub_probe_respects_offline_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ok, reason = text.hub_reachable()
    assert not ok and "HF_HUB_OFFLINE" in reason


def test_hub_probe_is_quick_when_unreachable(monkeypatch, waits):
    """One connection attempt, bounded by the timeout given; no retry, no wait."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(text, "_hub_cache", {})
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    ok, reason = text.hub_reachable(timeout=1.0)
    assert not ok and "127.0.0.1:9" in reason
    assert waits.connections == [(("127.0.0.1", 9), 1.0)] and waits.sleeps == []


def test_real_tasks_are_registered_with_presets():
    for name in ("wikitext103", "wikitext2", "imdb"):
        cls = TASKS.get(name)
        assert set(cls.presets) == {"smoke", "cpu", "paper"}
    assert TASKS.get("wt2") is TASKS.get("wikitext2")
    assert TASKS.get("wikitext2").causal and not TASKS.get("imdb").causal
