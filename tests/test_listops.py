"""ListOps: the generator against an independent evaluator and the exact LRA length
distribution, caching, the LRA TSV reader and its errors, vocabulary, options and collate."""

from __future__ import annotations

import csv
import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from registry import ConfigError, DataError
from tasks import TASKS, listops
from tasks.listops import VOCAB, ListOps

SMALL: dict[str, Any] = {"n_train": 200, "n_valid": 50, "n_test": 50}
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")

# -- an independent evaluator: recursive descent over token strings into a tree -----------------

Tree = Any  # an int (a digit) or (operator, [children])


def parse(tokens: list[str]) -> Tree:
    pos = 0

    def node() -> Tree:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok in "0123456789":
            return int(tok)
        assert tok in OPERATORS, tok
        children = []
        while tokens[pos] != "]":
            children.append(node())
        pos += 1
        return (tok, children)

    tree = node()
    assert pos == len(tokens), "trailing tokens"
    return tree


def value(tree: Tree) -> int:
    if isinstance(tree, int):
        return tree
    op, children = tree
    args = [value(c) for c in children]
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":
        return int(np.median(args))
    return int(np.sum(args)) % 10


def depth(tree: Tree) -> int:
    return 1 if isinstance(tree, int) else 1 + max(depth(c) for c in tree[1])


def arities(tree: Tree) -> list[int]:
    if isinstance(tree, int):
        return []
    return [len(tree[1])] + [a for c in tree[1] for a in arities(c)]


def words(ids: Any) -> list[str]:
    return [VOCAB[int(i)] for i in ids]


def lra_string(tree: Tree) -> str:
    """A tree written as LRA's to_string writes its nested pairs: ( ( ( [MAX 2 ) 9 ) ] )."""
    if isinstance(tree, int):
        return str(tree)
    op, children = tree
    text = f"( {op} {lra_string(children[0])} )"
    for child in children[1:]:
        text = f"( {text} {lra_string(child)} )"
    return f"( {text} ] )"


# -- the generator ------------------------------------------------------------------------------


def test_vocabulary_order_is_the_documented_one():
    assert list(VOCAB) == [
        "<pad>", "<unk>", *"0123456789", "[MIN", "[MAX", "[MED", "[SM", "[FIRST", "[LAST", "]",
    ]  # fmt: skip
    assert TASKS.get("listops") is ListOps
    assert ListOps.vocab_size == len(VOCAB) == 19
    assert ListOps.pad_id == 0 and VOCAB[ListOps.pad_id] == "<pad>"
    assert ListOps.num_classes == 10 and not ListOps.causal


@settings(max_examples=30, deadline=None)
@given(
    data_seed=st.integers(0, 2**32 - 1),
    max_depth=st.integers(3, 6),
    max_args=st.integers(3, 6),
    min_length=st.integers(0, 8),
    width=st.integers(10, 40),
)
def test_generated_labels_agree_with_an_independent_evaluator(
    data_seed: int, max_depth: int, max_args: int, min_length: int, width: int
):
    max_length = min_length + width
    trees, labels = listops.generate(
        min_length=min_length, max_length=max_length, max_depth=max_depth, max_args=max_args,
        n=40, data_seed=data_seed, progress=False,
    )  # fmt: skip
    assert len(trees) == len(set(trees)) == len(labels) == 40
    for ids, label in zip(trees, labels):
        assert min_length < len(ids) < max_length
        tree = parse(words(ids))
        assert label == value(tree)
        assert depth(tree) <= max_depth
        assert all(2 <= a <= max_args for a in arities(tree))


def exact_length_distribution(max_depth: int, max_args: int, cap: int) -> np.ndarray:
    """P(length = L) for L < cap under LRA's generate_tree(1, max_depth, max_args), by dynamic
    programming over depth: a node is a digit (length 1) w.p. 0.75 (always at max_depth), else
    an operator with n ~ U{2..max_args} children and length 2 + the children's lengths."""
    dist = np.zeros(cap)
    dist[1] = 1.0
    for _ in range(max_depth - 1):
        child = dist
        node = np.zeros(cap)
        node[1] = 0.75
        power = child
        for _n in range(2, max_args + 1):
            power = np.convolve(power, child)[:cap]
            node[2:] += 0.25 / (max_args - 1) * power[: cap - 2]
        dist = node
    return dist


@pytest.mark.parametrize("max_depth,max_args,cap", [(4, 4, 60), (10, 10, 128), (3, 2, 12)])
def test_raw_tree_lengths_follow_the_lra_distribution(max_depth: int, max_args: int, cap: int):
    exact = exact_length_distribution(max_depth, max_args, cap)
    rand = random.Random(12345).random
    out: list[int] = []
    counts = np.zeros(cap + 1)  # the last bin: abandoned (length >= cap)
    draws = 40_000
    tokens: list[int] = []
    for i in range(draws):
        if listops.sample_tree(rand, max_depth, max_args, cap, out):
            counts[len(out)] += 1
            tokens.extend(out)
            if i < 2_000:
                tree = parse(words(out))
                assert depth(tree) <= max_depth
                assert all(2 <= a <= max_args for a in arities(tree))
        else:
            assert len(out) < cap  # abandoned before reaching cap tokens
            counts[cap] += 1
    ids = np.array(tokens)
    digits = np.bincount(ids[(ids >= 2) & (ids <= 11)] - 2, minlength=10)
    ops = np.bincount(ids[(ids >= 12) & (ids <= 15)] - 12, minlength=4)
    expected = np.append(exact, 1.0 - exact.sum()) * draws
    # Pearson's chi-square over the bins expected to hold at least 5 trees (the rest pooled):
    # its mean is the degrees of freedom; allow 6 standard deviations (sqrt(2 df)) above it.
    keep = expected >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    if expected[-1] < 5:
        observed, expected = observed[:-1], expected[:-1]
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    df = len(expected) - 1
    assert chi2 < df + 6 * np.sqrt(2 * df), (chi2, df)
    assert np.allclose(digits / digits.sum(), 0.1, atol=0.01)
    if ops.sum():
        assert np.allclose(ops / ops.sum(), 0.25, atol=0.02)


def test_generator_gives_up_when_there_are_not_enough_distinct_trees(monkeypatch):
    monkeypatch.setattr(listops, "_STALL_DRAWS", 20_000)
    # max_depth 2, max_args 2: the only trees of length 4 are [OP a b ]: 4 * 10 * 10 of them
    trees, _ = listops.generate(
        min_length=3, max_length=5, max_depth=2, max_args=2, n=400, data_seed=0, progress=False
    )
    assert len(set(trees)) == 400
    with pytest.raises(ConfigError, match="found only 400 of 401 distinct trees"):
        listops.generate(
            min_length=3, max_length=5, max_depth=2, max_args=2, n=401, data_seed=0,
            progress=False,
        )  # fmt: skip


def test_evaluate_handles_every_operator_and_rejects_malformed_input():
    ids = [listops.TOKEN_IDS[t] for t in "[SM 9 [MED 1 2 4 5 ] [FIRST 7 1 ] [LAST 7 1 ] ]".split()]
    assert listops.evaluate(ids) == (9 + 3 + 7 + 1) % 10
    for bad in ("[MAX 1 2", "1 2", "[MIN ]", "]"):
        with pytest.raises(ValueError):
            listops.evaluate([listops.TOKEN_IDS[t] for t in bad.split()])


# -- the task on generated data -----------------------------------------------------------------


def make(tmp_path: Path, seq_len: int = 64, **options: Any) -> ListOps:
    return ListOps(seq_len, cache_dir=tmp_path / "cache", **{**SMALL, **options})


def all_examples(task: ListOps) -> list[tuple[list[int], int]]:
    splits = ("train", "valid", "test")
    return [(ids.tolist(), label) for s in splits for ids, label in task.dataset(s)]


def test_generated_splits(tmp_path):
    task = make(tmp_path)  # seq_len 64: lengths 16 < L < 64
    sizes = {s: len(task.dataset(s)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 200, "valid": 50, "test": 50}
    examples = all_examples(task)
    assert len({tuple(ids) for ids, _ in examples}) == 300  # distinct across splits
    for ids, label in examples:
        assert 16 < len(ids) < 64
        assert label == value(parse(words(ids)))
    ids, label = task.dataset("train")[0]
    assert ids.dtype == torch.long and isinstance(label, int)
    info = task.describe()
    assert info["source"] == "generated"
    assert info["generator"]["min_length"] == 16 and info["generator"]["max_length"] == 64
    assert info["generator"]["cache_key"] == task.cache_key()
    assert info["sizes"] == sizes
    assert sum(info["test_label_counts"]) == 50
    assert info["test_majority_share"] == max(info["test_label_counts"]) / 50
    assert info["truncated"] == {"train": 0, "valid": 0, "test": 0}


def test_same_params_load_from_cache(tmp_path, monkeypatch):
    first = make(tmp_path)
    data = all_examples(first)
    path = first.cache_path()
    assert path.is_file() and path.parent.name == "listops"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    mtime = path.stat().st_mtime_ns

    def no_generation(**_: Any) -> None:
        raise AssertionError("regenerated instead of loading the cache")

    monkeypatch.setattr(listops, "generate", no_generation)
    again = make(tmp_path, seed=7)  # the run seed does not change the data
    assert again.cache_key() == first.cache_key()
    assert all_examples(again) == data
    assert path.stat().st_mtime_ns == mtime


def test_corrupt_cache_is_regenerated(tmp_path):
    first = make(tmp_path)
    data = all_examples(first)
    first.cache_path().write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="rebuilding the cache .*: it cannot be read"):
        again = make(tmp_path)
        assert all_examples(again) == data


def test_generated_data_cache_gets_the_permissions_of_any_file(tmp_path):
    """Written 0600 before (tempfile.mkstemp): unreadable to the others sharing a cache."""
    old = os.umask(0o022)
    try:
        path = make(tmp_path).cache_path()
        all_examples(make(tmp_path))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_cache_file_of_other_parameters_is_not_used(tmp_path):
    """Another draw's file under this draw's name (copied, renamed) is regenerated."""
    other = make(tmp_path, data_seed=1)
    all_examples(other)
    base = make(tmp_path)
    base.cache_path().parent.mkdir(parents=True, exist_ok=True)
    base.cache_path().write_bytes(other.cache_path().read_bytes())
    with pytest.warns(UserWarning, match="rebuilding the cache .*: it was built from"):
        data = all_examples(make(tmp_path))
    assert data != all_examples(other)
    assert data == all_examples(make(tmp_path / "fresh"))


def test_data_seed_and_params_change_the_data(tmp_path):
    base = make(tmp_path)
    other = make(tmp_path, data_seed=1)
    assert other.cache_key() != base.cache_key()
    assert all_examples(other) != all_examples(base)
    assert make(tmp_path, max_args=5).cache_key() != base.cache_key()
    assert make(tmp_path, n_test=51).cache_key() != base.cache_key()


@pytest.mark.parametrize(
    "seq_len,options,message",
    [
        (64, {"min_length": 64, "max_length": 64}, "min_length"),
        (64, {"min_length": 10, "max_length": 11}, "strictly between"),
        (64, {"max_length": 65}, "exceeds seq_len"),
        (64, {"n_train": 0}, "n_train=0 is invalid: Input should be greater than or equal to 1"),
        (64, {"n_test": -3}, "n_test=-3 is invalid: Input should be greater than or equal to 1"),
        (64, {"max_args": 1}, "max_args"),
        (64, {"max_depth": 1}, "max_depth"),
        (64, {"min_length": "8"}, "min_length='8' is invalid: Input should be a valid integer"),
        (64, {"max_depth": 2, "max_args": 2, "min_length": 10}, "no tree has"),
        (64, {"colour": "red"}, "unknown option 'colour'"),
        (0, {}, "seq-len"),
    ],
)
def test_invalid_options_raise_config_error(tmp_path, seq_len, options, message):
    with pytest.raises(ConfigError, match=message):
        ListOps(seq_len, cache_dir=tmp_path, **options)


def test_presets_construct_and_smoke_is_fast(tmp_path):
    assert set(ListOps.presets) == {"smoke", "cpu", "paper"}
    for name, preset in ListOps.presets.items():
        options = dict(preset)
        task = ListOps(options.pop("seq_len"), cache_dir=tmp_path, **options)  # no generation yet
        if name == "paper":
            assert task.params["min_length"] == 500 and task.params["max_length"] == 2000
            assert (task.params["n_train"], task.params["n_valid"], task.params["n_test"]) == (
                96_000, 2_000, 2_000,
            )  # fmt: skip
    options = dict(ListOps.presets["smoke"])
    smoke = ListOps(options.pop("seq_len"), cache_dir=tmp_path, **options)
    assert len(smoke.dataset("train")) == options["n_train"]


def test_collate_pads_and_masks(tmp_path):
    task = make(tmp_path, seq_len=8)
    long = torch.tensor([13, 2, 3, 4, 5, 6, 7, 8, 9, 18])  # 10 tokens > seq_len
    batch = task.collate([(torch.tensor([13, 2, 3, 18]), 3), (torch.tensor([2]), 0), (long, 9)])
    assert batch.tokens.tolist() == [
        [13, 2, 3, 18, 0, 0, 0, 0],
        [2, 0, 0, 0, 0, 0, 0, 0],
        [13, 2, 3, 4, 5, 6, 7, 8],
    ]
    assert batch.padding_mask.sum(1).tolist() == [4, 1, 8]
    assert (batch.tokens[~batch.padding_mask] == task.pad_id).all()
    assert batch.targets.tolist() == [3, 0, 9]
    generated = [task.dataset("train")[i] for i in range(5)]
    batch = task.collate(generated)
    assert batch.tokens.shape == (5, max(len(ids) for ids, _ in generated))
    assert batch.padding_mask.sum(1).tolist() == [len(ids) for ids, _ in generated]


def test_examples_behave_like_a_sequence(tmp_path):
    examples = make(tmp_path).dataset("valid")
    items = list(examples)
    assert len(items) == len(examples) == 50
    assert examples[-1][0].tolist() == items[-1][0].tolist()
    assert [ids.tolist() for ids, _ in examples[2:5]] == [ids.tolist() for ids, _ in items[2:5]]
    with pytest.raises(IndexError):
        examples[50]


# -- the LRA TSV files --------------------------------------------------------------------------


def write_lra_files(folder: Path, seed: int = 0) -> dict[str, list[tuple[list[int], int]]]:
    """Write basic_{train,val,test}.tsv as LRA's generator does (csv, tab, parentheses)."""
    folder.mkdir(parents=True, exist_ok=True)
    trees, labels = listops.generate(
        min_length=4, max_length=40, max_depth=6, max_args=5, n=60, data_seed=seed,
        progress=False,
    )  # fmt: skip
    examples = [(list(t), label) for t, label in zip(trees, labels)]
    splits = {"train": examples[:40], "valid": examples[40:50], "test": examples[50:]}
    for split, rows in splits.items():
        with open(folder / listops.SPLIT_FILES[split], "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["Source", "Target"])
            writer.writerows([lra_string(parse(words(ids))), label] for ids, label in rows)
    return splits


def test_tsv_round_trip(tmp_path):
    folder = tmp_path / "listops-1000"
    splits = write_lra_files(folder)
    assert "( ( (" in (folder / "basic_train.tsv").read_text()
    task = ListOps(64, data_dir=folder, cache_dir=tmp_path / "cache")
    for split, rows in splits.items():
        assert [(ids.tolist(), label) for ids, label in task.dataset(split)] == rows
    info = task.describe()
    assert info["source"] == "files"
    assert info["sizes"] == {"train": 40, "valid": 10, "test": 10}
    for split, name in listops.SPLIT_FILES.items():
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert info["files"][split]["sha256"] == digest
        assert info["files"][split]["path"] == str(folder / name)
    assert not (tmp_path / "cache").exists()  # reading files generates nothing


def test_long_file_sequences_warn_and_are_truncated(tmp_path):
    folder = tmp_path / "lra"
    splits = write_lra_files(folder)
    n_long = sum(len(ids) > 8 for ids, _ in splits["train"])
    assert n_long > 0
    task = ListOps(8, data_dir=folder, cache_dir=tmp_path)
    with pytest.warns(UserWarning, match=f"{n_long} of 40 train sequences .* longer than seq_len"):
        train = task.dataset("train")
    assert task.truncated["train"] == n_long
    batch = task.collate(list(train))
    assert batch.tokens.shape[1] == 8


def test_generation_options_with_data_dir_warn(tmp_path):
    folder = tmp_path / "lra"
    write_lra_files(folder)
    with pytest.warns(UserWarning, match="max_args.*ignored"):
        ListOps(64, data_dir=folder, cache_dir=tmp_path, max_args=3)


def test_missing_files_name_the_files_and_folder(tmp_path):
    folder = tmp_path / "lra"
    write_lra_files(folder)
    (folder / "basic_test.tsv").unlink()
    with pytest.raises(DataError, match=r"missing basic_test\.tsv in folder .*lra") as err:
        ListOps(64, data_dir=folder, cache_dir=tmp_path)
    assert "basic_train.tsv, basic_val.tsv, basic_test.tsv" in str(err.value)
    with pytest.raises(DataError, match="not a folder"):
        ListOps(64, data_dir=tmp_path / "nowhere", cache_dir=tmp_path)


GOOD_ROW = b"( ( ( [MAX 2 ) 9 ) ] )\t9\r\n"


@pytest.mark.parametrize(
    "content,line,message",
    [
        (b"Source\tTarget\r\n" + GOOD_ROW + b"( ( ( [MAX 2 ) 9 ) ] )\r\n", 3, "no label"),
        (b"Source\tTarget\r\n" + GOOD_ROW + b"( ( ( [MAX 2 ) 9 ) ] )\t\r\n", 3, "no label"),
        (b"Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\tnine\r\n", 2, "'nine' is not an integer"),
        (b"Source\tTarget\r\n" + GOOD_ROW * 3 + b"( ( [MAX 2 ) ] )\t10\r\n", 5, "outside 0-9"),
        (b"Source\tTarget\r\n( ( ( [MAX 2 ) 19 ) ] )\t9\r\n", 2, "unknown token '19'"),
        (b"Source\tTarget\r\n( ( ( [FOO 2 ) 9 ) ] )\t9\r\n", 2, r"unknown token '\[FOO'"),
        (b"Source\tTarget\r\n( <pad> 2 ] )\t2\r\n", 2, "unknown token '<pad>'"),
        (b"Source\tTarget\r\n( ( ) )\t2\r\n", 2, "empty source"),
        (b"Source\tTarget\r\n[MAX 2 9 ]\t9\tx\r\n", 2, "2 tab-separated columns"),
        (GOOD_ROW, 1, "header"),
        (b"", 1, "empty file"),
        (b"Source\tTarget\r\n" + GOOD_ROW + b"( [MAX 2 \xff 9 ] )\t9\r\n", 3, "not UTF-8"),
    ],
)
def test_malformed_files_raise_data_error_with_file_and_line(tmp_path, content, line, message):
    folder = tmp_path / "lra"
    write_lra_files(folder)
    (folder / "basic_train.tsv").write_bytes(content)
    task = ListOps(64, data_dir=folder, cache_dir=tmp_path)
    with pytest.raises(DataError, match=message) as err:
        task.dataset("train")
    assert f"basic_train.tsv:{line}:" in str(err.value)


def test_header_only_file_has_no_examples(tmp_path):
    folder = tmp_path / "lra"
    write_lra_files(folder)
    (folder / "basic_val.tsv").write_bytes(b"Source\tTarget\r\n\r\n")
    task = ListOps(64, data_dir=folder, cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"basic_val\.tsv: no examples"):
        task.dataset("valid")
