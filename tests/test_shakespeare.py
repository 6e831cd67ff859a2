"""The Shakespeare corpus: its files, its splits, its preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.config import resolve
from registry import DataError
from tasks import TASKS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "shakespeare"


def _corpus(folder: Path) -> Path:
    folder.mkdir()
    works = {"train": "To be, or not to be, that is the question:\nWhether 'tis nobler\n" * 40,
             "valid": "Now is the winter of our discontent\n" * 20,
             "test": "All the world's a stage,\nAnd all the men and women merely players\n" * 8}
    for split, text in works.items():
        (folder / f"shakespeare.{split}.txt").write_text(text)
    return folder


def test_reads_its_three_files_and_counts_words_and_lines(tmp_path):
    task = TASKS.get("shakespeare")(16, data_dir=_corpus(tmp_path / "shakespeare"),
                                    cache_dir=tmp_path / "cache", vocab_size=300)
    assert task.causal and task.metric == "perplexity"
    # whitespace words plus one <eos> per line
    assert task.words_in_split("valid") == 20 * (7 + 1)
    assert task.words_in_split("test") == 8 * (5 + 1) + 8 * (8 + 1)
    source = task.describe()["source"]
    assert source["train"]["file"].endswith("shakespeare.train.txt")
    assert len(task.dataset("train")) > 0


def test_without_files_it_says_where_they_go(tmp_path):
    with pytest.raises(DataError, match=r"shakespeare\.train\.txt.*--data-dir"):
        TASKS.get("shakespeare")(16, cache_dir=tmp_path).lines("train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no Shakespeare files"):
        TASKS.get("shakespeare")(16, data_dir=empty, cache_dir=tmp_path)


def test_its_cpu_preset_is_the_plateau_setting():
    cfg = resolve({"preset": "cpu", "data": {"task": "shakespeare"}},
                  TASKS.get("shakespeare").presets)
    assert (cfg.model.layers, cfg.model.d_model, cfg.data.seq_len) == (4, 128, 256)
    assert cfg.data.task_options == {"vocab_size": 300}
    assert cfg.budget.eval_batches is None  # the plateau is judged on the full split
    assert (cfg.budget.patience, cfg.budget.min_delta) == (4, 0.01)
    # warmup-stable-decay under a cap attention's plateau (step 6,500) fits in with its cool-down
    assert (cfg.optim.schedule, cfg.optim.lr, cfg.budget.max_steps) == ("wsd", 1e-3, 24000)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/shakespeare")
def test_the_real_corpus_has_the_word_counts_of_its_readme(tmp_path):
    task = TASKS.get("shakespeare")(256, data_dir=SHARED, cache_dir=tmp_path, vocab_size=300)
    lines = {split: task.lines(split) for split in ("train", "valid", "test")}
    words = {split: sum(len(line.split()) for line in ls) for split, ls in lines.items()}
    assert words == {"train": 742_650, "valid": 91_923, "test": 70_445}


def test_train_lines_trains_on_the_first_lines_only_and_keys_every_cache_by_them(tmp_path):
    from registry import ConfigError

    corpus, cache = _corpus(tmp_path / "shakespeare"), tmp_path / "cache"
    full = TASKS.get("shakespeare")(16, data_dir=corpus, cache_dir=cache, vocab_size=300)
    full_train = full.encoded("train")  # cached first: the subset must not reuse it
    part = TASKS.get("shakespeare")(16, data_dir=corpus, cache_dir=cache, vocab_size=300,
                                    train_lines=20)
    assert part.words_in_split("train") == 10 * (10 + 1) + 10 * (3 + 1)  # 10 of each line
    assert part.encoded("train")["lines"] == 20 and full_train["lines"] == 80
    assert part.source_key("train") != full.source_key("train")
    assert part.source_key("valid") == full.source_key("valid")  # evaluation unchanged
    assert part.describe()["source"]["train"]["first_lines"] == 20
    assert "first_lines" not in full.describe()["source"]["train"]
    with pytest.raises(ConfigError, match=r"train_lines=81 is more than the train split's 80"):
        TASKS.get("shakespeare")(16, data_dir=corpus, cache_dir=cache, vocab_size=300,
                                 train_lines=81).lines("train")
