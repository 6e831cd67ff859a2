"""mqar: the generated examples mean what the task says, ground truth rides on the batch."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from registry import ConfigError
from tasks import TASKS
from tasks.base import IGNORE_INDEX
from tasks.mqar import BLANK_ID, FIRST_ID, mqar_examples


def make(tmp_path, seq_len=32, **options):
    options = {"n_train": 64, "n_valid": 16, "n_test": 16, **options}
    return TASKS.get("mqar")(seq_len, cache_dir=tmp_path, **options)


@settings(max_examples=40, deadline=None)
@given(n_pairs=st.integers(1, 8), extra=st.integers(0, 20), seed=st.integers(0, 2**31),
       dist=st.sampled_from(["uniform", "power"]), noise=st.sampled_from([0.0, 0.3]))
def test_every_query_is_answered_by_its_context_pair(n_pairs, extra, seed, dist, noise):
    n_keys = 10
    seq_len = 4 * n_pairs - 1 + extra
    g = torch.Generator().manual_seed(seed)
    windows, queries = mqar_examples(5, seq_len, n_pairs, n_pairs, n_keys, dist, 0.01, g, noise)
    assert windows.shape == (5, seq_len + 1) and queries.shape == (5, seq_len)
    for window, query in zip(windows, queries):
        keys, values = window[0 : 2 * n_pairs : 2], window[1 : 2 * n_pairs : 2]
        assert len(set(keys.tolist())) == n_pairs  # distinct keys
        assert ((keys >= FIRST_ID) & (keys < FIRST_ID + n_keys)).all()
        assert ((values >= FIRST_ID + n_keys) & (values < FIRST_ID + 2 * n_keys)).all()
        lookup = dict(zip(keys.tolist(), values.tolist()))
        positions = query.nonzero().flatten().tolist()
        assert len(positions) == n_pairs and min(positions) >= 2 * n_pairs
        asked = [int(window[t]) for t in positions]
        assert sorted(asked) == sorted(lookup)  # every key asked exactly once
        for t in positions:
            assert int(window[t + 1]) == lookup[int(window[t])]
        filler = torch.ones(seq_len + 1, dtype=torch.bool)
        filler[: 2 * n_pairs] = False
        for t in positions:
            filler[t : t + 2] = False
        if noise == 0:
            assert (window[filler] == BLANK_ID).all()


def test_batch_scores_only_queries_and_carries_ground_truth(tmp_path):
    task = make(tmp_path)
    batch = task.collate(list(task.dataset("train"))[:4])
    assert batch.needs_attention is not None
    assert torch.equal(batch.needs_attention, batch.targets != IGNORE_INDEX)
    assert batch.needs_attention.sum(1).eq(8).all()
    moved = batch.to("cpu")
    assert torch.equal(moved.needs_attention, batch.needs_attention)
    # the target at a query is the token after it: next-token prediction, nothing shifted wrong
    t = batch.needs_attention[0].nonzero()[0, 0]
    assert batch.targets[0, t] == task.dataset("train")[0][0][t + 1]


@pytest.mark.parametrize("show_answers", [False, True])
def test_a_queries_answer_is_its_target_and_shows_in_the_input_only_when_asked(tmp_path,
                                                                               show_answers):
    task = make(tmp_path, show_answers=show_answers)
    examples = list(task.dataset("train"))[:4]
    batch = task.collate(examples)
    for (window, _), tokens, queries, targets in zip(examples, batch.tokens,
                                                     batch.needs_attention, batch.targets):
        at = queries.nonzero().flatten()
        assert torch.equal(targets[at], window[at + 1])  # the value the key had in the context
        after = at[at + 1 < len(tokens)] + 1
        expected = window[after] if show_answers else torch.full_like(after, BLANK_ID)
        assert torch.equal(tokens[after], expected)
        others = torch.ones_like(queries)
        others[after] = False
        assert torch.equal(tokens[others], window[:-1][others])  # nothing else is touched


def test_generation_is_seeded_and_cached(tmp_path):
    a = make(tmp_path / "a")
    b = make(tmp_path / "b")
    assert torch.equal(a.dataset("test")[3][0], b.dataset("test")[3][0])
    assert a.cache_path().is_file()
    again = make(tmp_path / "a")
    assert torch.equal(again.dataset("train")[0][0], a.dataset("train")[0][0])
    other = make(tmp_path / "c", data_seed=1)
    assert not torch.equal(other.dataset("train")[0][0], a.dataset("train")[0][0])
    # splits are disjoint draws
    assert not torch.equal(a.dataset("train")[0][0], a.dataset("test")[0][0])


def test_the_cache_holds_its_draw_with_the_permissions_of_any_file(tmp_path):
    old = os.umask(0o022)
    try:
        a = make(tmp_path)
        a.dataset("train")
    finally:
        os.umask(old)
    assert a.cache_path().stat().st_mode & 0o777 == 0o644
    # another draw's file under this draw's name is drawn again, not used
    other = make(tmp_path / "other", data_seed=1)
    other.dataset("train")
    a.cache_path().write_bytes(other.cache_path().read_bytes())
    with pytest.warns(UserWarning, match="rebuilding the cache .*: it was built from"):
        again = make(tmp_path)
        assert torch.equal(again.dataset("train")[0][0], a.dataset("train")[0][0])


@pytest.mark.parametrize("options, fragment", [
    ({"n_pairs": 20, "vocab_size": 16}, "exceeds the 7 distinct keys"),
    ({"n_pairs": 8}, "raise --seq-len to at least 31"),
    ({"query_dist": "zipf"}, "query_dist must be one of uniform, power"),
    ({"n_queries": 9}, "n_queries (9) exceeds n_pairs (8)"),
    ({"n_pairs": 0}, "n_pairs must be an integer >= 1"),
    ({"show_answers": "yes"}, "show_answers must be true or false"),
])
def test_bad_options_name_the_fix(tmp_path, options, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        make(tmp_path, seq_len=30 if "n_queries" not in options else 64, **options)
    assert fragment in str(err.value)


@settings(max_examples=30, deadline=None)
@given(n_copy=st.integers(1, 6), extra=st.integers(1, 20), seed=st.integers(0, 2**31))
def test_selective_copy_targets_are_the_scattered_symbols_in_order(n_copy, extra, seed):
    from tasks.mad import SEP_ID, selective_copy_examples

    seq_len = 2 * n_copy + extra
    g = torch.Generator().manual_seed(seed)
    windows, queries = selective_copy_examples(4, seq_len, n_copy, 5, g)
    region = seq_len - n_copy
    for window, query in zip(windows, queries):
        scattered = [int(t) for t in window[:region] if t != BLANK_ID]
        assert len(scattered) == n_copy and int(window[region]) == SEP_ID
        positions = query.nonzero().flatten().tolist()
        assert positions == list(range(region, region + n_copy))
        assert [int(window[t + 1]) for t in positions] == scattered


def test_mad_tasks_are_registered_causal_and_carry_ground_truth(tmp_path):
    for name, seq_len in (("selective-copy", 24), ("noisy-recall", 32)):
        task = TASKS.get(name)(seq_len, cache_dir=tmp_path, n_train=32, n_valid=8, n_test=8,
                               **({"n_pairs": 4} if name == "noisy-recall" else {}))
        assert task.causal
        batch = task.collate(list(task.dataset("valid")))
        assert torch.equal(batch.needs_attention, batch.targets != IGNORE_INDEX)
    noisy = TASKS.get("noisy-recall")(32, cache_dir=tmp_path, n_pairs=4, n_train=32,
                                      n_valid=8, n_test=8)
    window = noisy.dataset("train")[0][0]
    assert (window[8:] != BLANK_ID).sum() > 2 * 4  # distractors beyond the query pairs
