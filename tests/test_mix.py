"""Mixed-dataset language modelling (tasks/mix.py) on tiny corpora written here."""

from __future__ import annotations

import json
import math

import pytest
import torch

from harness.cli.main import main
from registry import ConfigError
from tasks import TASKS
from tasks.base import Batch, PerplexityMeter
from tasks.mix import Mix, mix_counts, parse_components


def _corpus(folder, words, n_articles):
    folder.mkdir()
    for split, n in (("train", n_articles), ("valid", 2), ("test", 2)):
        lines = []
        for a in range(n):
            lines += [f" = {split} {a} = ", ""]
            lines += [" ".join(words[(a + i + j) % len(words)] for j in range(12))
                      for i in range(6)]
        (folder / f"wiki.{split}.tokens").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def corpora(tmp_path):
    big = _corpus(tmp_path / "big", ["the", "cat", "sat", "on", "a", "mat", "and", "slept"], 12)
    small = _corpus(tmp_path / "small", ["stocks", "fell", "as", "the", "bank", "rates", "rose"],
                    3)
    return big, small


def _mix(tmp_path, big, small, spec="wikitext103:0.8,wikitext2:0.2"):
    return Mix(32, seed=0, cache_dir=tmp_path / "cache", tasks=spec, tokenizer="word",
               **{"wikitext103.data_dir": str(big), "wikitext2.data_dir": str(small)})


def test_parse_components_normalises_and_rejects_bad_specs():
    assert parse_components("a:3,b:1") == {"a": 0.75, "b": 0.25}
    for bad in ("", "a:0", "a:-1,b:1", "a:x", "a:1,a:2", ":1"):
        with pytest.raises(ConfigError, match="tasks"):
            parse_components(bad)


def test_mix_counts_keep_the_largest_whole_and_upsample_the_rest():
    assert mix_counts([100, 10], [0.8, 0.2]) == [100, 25]  # epoch 125: 10 windows x 2.5
    assert mix_counts([100, 10], [0.5, 0.5]) == [100, 100]
    # the large corpus at a small weight sets the epoch: the small one repeats 90 times
    assert mix_counts([10, 100], [0.9, 0.1]) == [900, 100]


def test_mix_shares_one_tokenizer_and_matches_the_weights(tmp_path, corpora):
    task = _mix(tmp_path, *corpora)
    big, small = task.components
    assert big.tokenizer is small.tokenizer is task.tokenizer
    # the shared vocabulary holds words only the small corpus has
    assert task.tokenizer.encode("stocks cat")[0] not in (0, 1)
    train = task.dataset("train")
    n_big, n_small = len(big.dataset("train")), len(small.dataset("train"))
    counts = [int((train.source == i).sum()) for i in range(2)]
    assert counts == mix_counts([n_big, n_small], [0.8, 0.2])
    assert counts[0] == n_big and abs(counts[1] / sum(counts) - 0.2) < 0.05
    ids, n_context, source = train[len(train) - 1]
    assert source == 1 and ids.dtype == torch.long and 0 <= n_context < len(ids)
    # evaluation: every window of each component, once
    valid = task.dataset("valid")
    assert len(valid) == len(big.dataset("valid")) + len(small.dataset("valid"))


def test_per_component_metrics_equal_each_component_alone(tmp_path, corpora):
    task = _mix(tmp_path, *corpora)
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(task.vocab_size, task.vocab_size, generator=gen)

    def logits_of(batch: Batch) -> torch.Tensor:  # a fixed "model": a bigram table
        return table[batch.tokens]

    meter = task.meter("test")
    examples = list(task.dataset("test"))
    for i in range(0, len(examples), 3):  # batches that mix both components
        batch = task.collate(examples[i : i + 3])
        meter.update(logits_of(batch), batch)
    mixed = meter.compute()
    for name, comp in zip(task.names, task.components, strict=True):
        alone = comp.meter("test")
        ds = comp.dataset("test")
        for i in range(len(ds)):
            batch = comp.collate([ds[i]])
            alone.update(logits_of(batch), batch)
        expected = alone.compute()
        assert mixed[f"{name}/perplexity"] == pytest.approx(expected["perplexity"], rel=1e-5)
        assert mixed[f"{name}/word_perplexity"] == pytest.approx(expected["word_perplexity"],
                                                                  rel=1e-5)
    assert min(mixed["wikitext103/perplexity"], mixed["wikitext2/perplexity"]) \
        <= mixed["perplexity"] <= max(mixed["wikitext103/perplexity"],
                                      mixed["wikitext2/perplexity"])
    assert isinstance(meter.overall, PerplexityMeter)


def test_bad_components_are_refused_with_the_fix(tmp_path, corpora):
    big, small = corpora
    with pytest.raises(ConfigError, match="not a text corpus"):
        Mix(32, cache_dir=tmp_path / "c", tasks="listops:1,wikitext2:1")
    with pytest.raises(ConfigError, match="not in tasks"):
        Mix(32, cache_dir=tmp_path / "c", tasks="wikitext2:1", **{"imdb.data_dir": "x"})
    assert TASKS.get("mix") is Mix


def test_a_mix_run_records_each_components_metric(tmp_path, corpora, capsys):
    big, small = corpora
    out = tmp_path / "runs"
    code = main(["run", "--preset", "smoke", "--task", "mix", "--router", "single", "--ops",
                 "attn", "--seq-len", "32", "--out", str(out), "--cache-dir",
                 str(tmp_path / "cache"),
                 "--task-option", "tasks=wikitext103:0.8,wikitext2:0.2",
                 "--task-option", "tokenizer=word",
                 "--task-option", f"wikitext103.data_dir={big}",
                 "--task-option", f"wikitext2.data_dir={small}"])
    assert code == 0
    record = json.loads(next(out.glob("mix__*.json")).read_text())
    test = record["metrics"]["test"]
    for name in ("wikitext103", "wikitext2"):
        assert math.isfinite(test[f"{name}/perplexity"]) and test[f"{name}/perplexity"] > 1
    assert record["data"]["weights"] == {"wikitext103": 0.8, "wikitext2": 0.2}
