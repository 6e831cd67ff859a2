"""mqar: the generated examples mean what the task says, as Zoology defines them in every
preset; the first form stays exactly the data its committed rows were trained on."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.config import RunConfig, resolve
from registry import ConfigError
from tasks import TASKS
from tasks.base import IGNORE_INDEX, SPLITS
from tasks.mqar import BLANK_ID, FIRST_ID, ZOOLOGY, mqar_examples

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"


def make(tmp_path, seq_len=32, **options):
    options = {"n_train": 64, "n_valid": 16, "n_test": 16, **options}
    return TASKS.get("mqar")(seq_len, cache_dir=tmp_path, **options)


@settings(max_examples=40, deadline=None)
@given(n_pairs=st.integers(1, 8), extra=st.integers(0, 20), seed=st.integers(0, 2**31),
       dist=st.sampled_from(["uniform", "power"]), filler=st.sampled_from(["blank", "random"]),
       distinct=st.booleans(), shown=st.booleans())
def test_every_query_is_answered_by_its_context_pair(n_pairs, extra, seed, dist, filler,
                                                     distinct, shown):
    n_keys = 10
    seq_len = 4 * n_pairs - 1 + extra
    g = torch.Generator().manual_seed(seed)
    data = mqar_examples(5, seq_len, n_pairs, n_pairs, n_keys, g, query_dist=dist,
                         filler=filler, distinct_values=distinct, show_answers=shown)
    assert data.inputs.shape == data.targets.shape == data.answers.shape == (5, seq_len)
    assert torch.equal(data.answers, data.needs_attention)
    assert torch.equal(data.targets != IGNORE_INDEX, data.answers)  # trained = scored
    for i in range(5):
        x = data.inputs[i]
        keys, values = x[0 : 2 * n_pairs : 2], x[1 : 2 * n_pairs : 2]
        assert len(set(keys.tolist())) == n_pairs  # distinct keys
        if distinct:
            assert len(set(values.tolist())) == n_pairs
        assert ((keys >= FIRST_ID) & (keys < FIRST_ID + n_keys)).all()
        assert ((values >= FIRST_ID + n_keys) & (values < FIRST_ID + 2 * n_keys)).all()
        lookup = dict(zip(keys.tolist(), values.tolist()))
        positions = data.answers[i].nonzero().flatten().tolist()
        assert len(positions) == n_pairs and min(positions) >= 2 * n_pairs
        assert (torch.tensor(positions) - 2 * n_pairs).remainder(2).eq(0).all()  # query slots
        assert sorted(int(x[t]) for t in positions) == sorted(lookup)  # each key asked once
        for t in positions:
            assert int(data.targets[i][t]) == lookup[int(x[t])]
            if t + 1 < seq_len:  # the input after a query: its answer only when shown
                assert (int(x[t + 1]) == lookup[int(x[t])]) if shown else (
                    filler == "random" or int(x[t + 1]) == BLANK_ID)
        if filler == "blank":
            rest = torch.ones(seq_len, dtype=torch.bool)
            rest[: 2 * n_pairs] = False
            for t in positions:
                rest[t : t + 2] = False
            assert (x[rest] == BLANK_ID).all()


def test_zoology_filler_is_drawn_from_the_whole_vocabulary(tmp_path):
    """Every position after the context that is not a query (the one right after a query
    included) holds a uniform draw over every id but padding: keys and values among them."""
    g = torch.Generator().manual_seed(0)
    n_keys, n = 6, 4000
    data = mqar_examples(n, 32, 4, 4, n_keys, g, filler="random", distinct_values=True,
                         query_dist="power")
    free = torch.zeros_like(data.answers)
    free[:, 8:] = True
    free &= ~data.answers
    ids = data.inputs[free]
    counts = torch.bincount(ids, minlength=FIRST_ID + 2 * n_keys).float()
    assert counts[0] == 0  # never padding
    share = counts[BLANK_ID:] / counts.sum()
    assert torch.allclose(share, torch.full_like(share, 1 / len(share)), atol=0.01)
    # the input after a query is filler too, not the answer: as often equal to it as chance
    after = torch.zeros_like(data.answers)
    after[:, 1:] = data.answers[:, :-1]
    answer_after = data.targets[:, :-1][data.answers[:, :-1]]
    same = (data.inputs[after] == answer_after).float().mean()
    assert same < 3 / len(share)


def test_zoology_values_are_distinct_and_the_first_form_repeats_them():
    g = torch.Generator().manual_seed(1)
    zoology = mqar_examples(2000, 32, 8, 8, 10, g, distinct_values=True)
    first = mqar_examples(2000, 32, 8, 8, 10, g)
    distinct = [len(set(x[1:16:2].tolist())) for x in zoology.inputs]
    assert min(distinct) == 8
    repeats = sum(len(set(x[1:16:2].tolist())) < 8 for x in first.inputs)
    assert repeats > 1500  # 8 draws from 10 values: a repeat in 98% of examples


@pytest.mark.parametrize("dist", ["power", "uniform"])
def test_query_slots_follow_their_distribution(dist):
    """One query per example: slot s is drawn with probability (s + 1)^(a - 1) / Z (Zoology's
    power law, a = 0.01) or 1 / slots."""
    n, slots, a = 30_000, 12, 0.01
    g = torch.Generator().manual_seed(2)
    data = mqar_examples(n, 2 * 2 + 2 * slots, 2, 1, 10, g, query_dist=dist, power_a=a)
    slot = (data.answers.float().argmax(1) - 4) // 2
    freq = torch.bincount(slot, minlength=slots).double() / n
    weights = torch.arange(1, slots + 1, dtype=torch.float64) ** (a - 1)
    expected = weights / weights.sum() if dist == "power" else torch.full((slots,), 1 / slots,
                                                                          dtype=torch.float64)
    assert torch.allclose(freq, expected, atol=0.01)
    if dist == "power":
        assert freq[0] > 0.3 and freq[-1] < 0.04  # most queries come soon after the context


def test_every_preset_selects_zoology_and_a_vocabulary_larger_than_the_sequence():
    for name, preset in TASKS.get("mqar").presets.items():
        assert {k: preset[k] for k in ZOOLOGY} == ZOOLOGY, name
        assert preset["vocab_size"] > preset["seq_len"], name


def test_batch_scores_only_queries_and_carries_ground_truth(tmp_path):
    task = make(tmp_path, **ZOOLOGY, vocab_size=64)
    batch = task.collate(list(task.dataset("train"))[:4])
    assert torch.equal(batch.needs_attention, batch.targets != IGNORE_INDEX)
    assert torch.equal(batch.answers, batch.needs_attention)
    assert batch.needs_attention.sum(1).eq(8).all()
    moved = batch.to("cpu")
    assert torch.equal(moved.needs_attention, batch.needs_attention)
    assert torch.equal(moved.answers, batch.answers)
    assert task.describe()["generator"]["filler"] == "random"


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


@pytest.mark.parametrize("options, fragment", [
    ({"n_pairs": 20, "vocab_size": 16}, "exceeds the 7 distinct keys"),
    ({"n_pairs": 8}, "raise --seq-len to at least 31"),
    ({"query_dist": "zipf"}, "query_dist='zipf' is invalid: Input should be 'uniform' or "
                             "'power'"),
    ({"filler": "noise"}, "filler='noise' is invalid: Input should be 'blank' or 'random'"),
    ({"n_queries": 9}, "n_queries (9) exceeds n_pairs (8)"),
    ({"n_pairs": 0}, "n_pairs=0 is invalid: Input should be greater than or equal to 1 (set "
                     "it with --task-option n_pairs=VALUE)"),
    ({"show_answers": "yes"}, "show_answers='yes' is invalid: Input should be a valid boolean"),
    ({"distinct_values": 1}, "distinct_values=1 is invalid: Input should be a valid boolean"),
])
def test_bad_options_name_the_fix(tmp_path, options, fragment):
    with pytest.raises(ConfigError) as err:
        make(tmp_path, seq_len=30 if "n_queries" not in options else 64, **options)
    assert fragment in str(err.value)


def test_noisy_recall_refuses_random_filler(tmp_path):
    with pytest.raises(ConfigError, match="its distractors are its filler"):
        TASKS.get("noisy-recall")(32, cache_dir=tmp_path, n_pairs=4, filler="random")


# -- the first form: committed rows keep their configuration and their data -------------------

# sha256 (16 hex) of every split's collated tokens, targets and needs_attention, as made by the
# generator these rows were trained with (computed with it, before Zoology's definition)
FIRST_FORM_DATA = {
    "mqar": "8e0afd0ee89a545b",
    "noisy-recall": "555170b0841a49f1",
    "selective-copy": "d4e58199e0cdf45c",
}


def content_digest(task) -> str:
    h = hashlib.sha256()
    for split in SPLITS:
        data = task.dataset(split)
        batch = task.collate([data[i] for i in range(len(data))])
        for t in (batch.tokens, batch.targets, batch.needs_attention):
            h.update(t.to(torch.int64).numpy().tobytes())
    return h.hexdigest()[:16]


def committed(task: str) -> list[dict]:
    """The committed records of the task's first form: those whose config names none of
    Zoology's definition options (the difficulty sweep's Zoology-form records do)."""
    records = [json.loads(p.read_text()) for p in sorted(RUNS.glob(f"{task}__*.json"))]
    return [r for r in records
            if not set(ZOOLOGY) & set(r["config"]["data"].get("task_options") or {})]


@pytest.mark.parametrize("name", sorted(FIRST_FORM_DATA))
def test_committed_configs_regenerate_the_data_their_rows_were_trained_on(tmp_path, name):
    from harness.engine.data import build_task

    records = committed(name)
    assert records, f"no committed {name} records"
    data_configs = {json.dumps(r["config"]["data"], sort_keys=True): r for r in records}
    for record in data_configs.values():
        cfg = RunConfig.model_validate(record["config"])
        assert cfg.digest() == record["config_hash"]
        cfg.data.cache_dir = str(tmp_path)
        assert content_digest(build_task(cfg)) == FIRST_FORM_DATA[name]


@pytest.mark.parametrize("name", ["noisy-recall", "selective-copy"])
def test_variants_presets_resolve_to_their_committed_rows(name):
    record = next(r for r in committed(name) if r["router"] == "single")
    over = {"preset": "cpu", "data": {"task": name},
            "routing": {"router": "single", "ops": record["operators"]}}
    assert resolve(over, TASKS.get(name).presets).digest() == record["config_hash"]


def test_mqar_cpu_preset_is_a_new_configuration_and_the_first_form_stays_reachable(tmp_path):
    """`--task mqar --preset cpu` now means Zoology's MQAR (a new config hash); the committed
    rows' config (no definition options) still builds the first form."""
    record = next(r for r in committed("mqar") if r["router"] == "single")
    over = {"preset": "cpu", "data": {"task": "mqar"},
            "routing": {"router": "single", "ops": record["operators"]}}
    assert resolve(over, TASKS.get("mqar").presets).digest() != record["config_hash"]
    first = TASKS.get("mqar")(32, cache_dir=tmp_path, **record["config"]["data"]["task_options"])
    assert {k: first.params[k] for k in ZOOLOGY} == {
        "filler": "blank", "distinct_values": False, "query_dist": "uniform"}


@settings(max_examples=30, deadline=None)
@given(n_copy=st.integers(1, 6), extra=st.integers(1, 20), seed=st.integers(0, 2**31))
def test_selective_copy_targets_are_the_scattered_symbols_in_order(n_copy, extra, seed):
    from tasks.mad import SEP_ID, selective_copy_examples

    seq_len = 2 * n_copy + extra
    g = torch.Generator().manual_seed(seed)
    data = selective_copy_examples(4, seq_len, n_copy, 5, g)
    region = seq_len - n_copy
    for x, targets, answers in zip(data.inputs, data.targets, data.answers):
        scattered = [int(t) for t in x[:region] if t != BLANK_ID]
        assert len(scattered) == n_copy and int(x[region]) == SEP_ID
        positions = answers.nonzero().flatten().tolist()
        assert positions == list(range(region, region + n_copy))
        assert [int(targets[t]) for t in positions] == scattered
        assert x[region + 1 :].tolist() == scattered[:-1]  # teacher forced


def test_mad_variants_are_registered_causal_and_carry_ground_truth(tmp_path):
    for name, seq_len in (("selective-copy", 24), ("noisy-recall", 32)):
        task = TASKS.get(name)(seq_len, cache_dir=tmp_path, n_train=32, n_valid=8, n_test=8,
                               **({"n_pairs": 4} if name == "noisy-recall" else {}))
        assert task.causal
        batch = task.collate(list(task.dataset("valid")))
        assert torch.equal(batch.needs_attention, batch.targets != IGNORE_INDEX)
    noisy = TASKS.get("noisy-recall")(32, cache_dir=tmp_path, n_pairs=4, n_train=32,
                                      n_valid=8, n_test=8)
    x = noisy.dataset("train")[0][0]
    assert (x[8:] != BLANK_ID).sum() > 4  # distractors beyond the query keys


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
