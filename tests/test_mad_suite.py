"""The MAD suite: each task's generated data has the statistics of MAD's definition (at small
sizes), its ground truth marks what needs a lookup, and its presets carry MAD's settings."""

from __future__ import annotations

import torch

from tasks import TASKS
from tasks.base import IGNORE_INDEX, SPLITS
from tasks.mad_common import MAD_ID_OFFSET as OFF
from tasks.mad_common import MAD_TASKS
from tasks.mad_compression import compression_examples
from tasks.mad_copying import selective_copying_examples
from tasks.mad_memorization import memorization_examples
from tasks.mad_recall import fuzzy_recall_examples, in_context_recall_examples


def test_mad_tasks_are_registered_under_mads_names_with_its_baselines():
    baselines = {  # MAD-lab's configs/tasks/*.yml baselines
        "in-context-recall": {"seq_len": 128, "vocab_size": 16},
        "fuzzy-in-context-recall": {"seq_len": 128, "vocab_size": 16},
        "noisy-in-context-recall": {"seq_len": 128, "vocab_size": 32,
                                    "noise_vocab_size": 16, "frac_noise": 0.2},
        "selective-copying": {"seq_len": 256, "vocab_size": 16, "n_copy": 16},
        "compression": {"seq_len": 32, "vocab_size": 16},
        "memorization": {"seq_len": 32, "vocab_size": 256, "n_train": 256},
    }
    assert set(baselines) == set(MAD_TASKS)
    for name in MAD_TASKS:
        cls = TASKS.get(name)
        assert cls.causal == (name != "compression"), name
        paper = cls.presets["paper"]
        assert {k: paper[k] for k in baselines[name]} == baselines[name], name
        assert paper["optim"]["batch_size"] == 128 and paper["optim"]["lr"] == 5e-4, name
        assert paper["model"]["d_model"] == 128, name
        assert paper.get("n_train", 12_800) == baselines[name].get("n_train", 12_800)


def pairs_of(x):
    return x.reshape(-1, 2)


def test_in_context_recall_scores_every_value_of_a_repeated_key():
    n, seq_len, vocab = 300, 64, 16
    g = torch.Generator().manual_seed(0)
    d = in_context_recall_examples(n, seq_len, vocab, 0, 0.0, g)
    assert d.inputs.shape == (n, seq_len - 1)  # MAD: seq_len tokens, the last one only a target
    assert torch.equal(d.targets[:, :-1], d.inputs[:, 1:])  # trained on every next token
    assert torch.equal(d.answers, d.needs_attention)
    keys = range(OFF, OFF + 8)
    for i in range(n):
        seq = torch.cat([d.inputs[i], d.targets[i, -1:]])
        value_of: dict[int, int] = {}
        for p, (k, v) in enumerate(pairs_of(seq).tolist()):
            assert k in keys and v in range(OFF + 8, OFF + 16)
            assert value_of.setdefault(k, v) == v  # a key keeps its value in a sequence
            repeated = k in pairs_of(seq)[:p, 0].tolist()
            assert bool(d.answers[i, 2 * p]) == repeated  # scored at the key: value is next
        assert not d.answers[i, 1::2].any()
        assert d.answers[i, -1]  # the probe: a key that appeared, always asked
    # keys are uniform over the key ids; values uniform over the value ids
    k = torch.bincount(pairs_of(d.inputs[:, :62])[:, 0] - OFF, minlength=8).float()
    assert (k / k.sum() - 1 / 8).abs().max() < 0.02


def test_noisy_recall_noise_is_its_own_ids_at_its_share_and_never_scored():
    n, seq_len = 2000, 64
    g = torch.Generator().manual_seed(1)
    d = in_context_recall_examples(n, seq_len, 32, 16, 0.4, g)
    pairs = torch.cat([d.inputs, d.targets[:, -1:]], 1).view(n, -1, 2)[:, :-1]  # not the probe
    noise = pairs[..., 0] >= OFF + 16
    assert torch.equal(noise, pairs[..., 1] >= OFF + 16)  # a noise pair is two noise tokens
    assert (pairs[noise] < OFF + 32).all()
    assert abs(float(noise.float().mean()) - 0.4 * 30 / 31) < 0.01  # one of 31 forced real
    assert not d.answers[:, :-1].view(n, -1, 2)[..., 0][noise].any()


def runs(seq, is_key):
    """Split a fuzzy sequence into alternating runs of key ids and value ids."""
    out, start = [], 0
    for t in range(1, len(seq) + 1):
        if t == len(seq) or is_key(seq[t]) != is_key(seq[start]):
            out.append((start, seq[start:t]))
            start = t
    return out


def test_fuzzy_recall_values_follow_their_key_motifs():
    n, n_train, seq_len, vocab = 400, 200, 64, 16
    g = torch.Generator().manual_seed(2)
    d = fuzzy_recall_examples(n, n_train, seq_len, vocab, 3, 3, g)
    fill = vocab - 1 + OFF
    assert torch.equal(d.targets[:, :-1], d.inputs[:, 1:])
    missing, key_sizes = 0, {True: set(), False: set()}
    for i in range(n):
        seq = torch.cat([d.inputs[i], d.targets[i, -1:]]).tolist()
        body = [t for t in seq if t != fill]
        start = len(seq) - len(body)
        assert all(t == fill for t in seq[:start])  # the fill only leads
        pieces = runs(body, lambda t: t < OFF + 7)
        assert pieces[0][1][0] < OFF + 7  # a key first; key and value runs alternate
        scored = torch.zeros(len(seq), dtype=torch.bool)
        scored[1:] = d.answers[i]
        seen: dict[tuple, tuple] = {}
        for (_, key), (vat, value) in zip(pieces[0::2], pieces[1::2]):
            assert len(set(key)) == len(key) <= 3 and len(set(value)) == len(value) <= 3
            key_sizes[i < n_train].add(len(key))
            value_scored = scored[start + vat : start + vat + len(value)]
            last = vat + len(value) == len(body)
            if tuple(key) in seen:
                assert value_scored.all() and seen[tuple(key)] == tuple(value)
            elif last:  # the probe missed the context (MAD's loop can overshoot it)
                missing += 1
                assert value_scored.all()
            else:
                assert not value_scored.any()
            seen.setdefault(tuple(key), tuple(value))
        assert not scored[start + torch.tensor([a for a, _ in pieces[0::2]])].any()
    assert key_sizes[True] == {1, 2, 3} and key_sizes[False] == {3}  # MAD: train vs test
    assert missing / n < 0.1


def test_selective_copying_is_not_teacher_forced_and_blanks_fall_before_symbols():
    n, seq_len, n_copy, vocab = 3000, 40, 8, 16
    g = torch.Generator().manual_seed(3)
    d = selective_copying_examples(n, seq_len, n_copy, vocab, g)
    blank, copy = vocab - 2 + OFF, vocab - 1 + OFF
    region = seq_len - n_copy - 1
    assert (d.inputs[:, region] == copy).all()
    assert (d.inputs[:, region + 1 :] == blank).all()  # the copy is emitted over blanks
    assert torch.equal(d.answers, d.targets != IGNORE_INDEX)
    assert torch.equal(d.answers[:, region + 1 :], torch.ones(n, n_copy, dtype=torch.bool))
    assert not d.answers[:, : region + 1].any()
    before = torch.zeros(n, n_copy)
    for i in range(n):
        symbols = d.inputs[i, :region][d.inputs[i, :region] != blank]
        assert torch.equal(symbols, d.targets[i, region + 1 :])
        assert d.inputs[i, region - 1] != blank  # nothing after the last symbol
        where = (d.inputs[i, :region] != blank).nonzero().flatten()
        before[i] = torch.diff(where, prepend=torch.tensor([-1])) - 1
    # each blank goes before a symbol chosen uniformly: the same mean count before each
    assert (before.mean(0) - (seq_len - 2 * n_copy - 1) / n_copy).abs().max() < 0.1


def test_compression_rebuilds_every_token_and_memorization_keeps_one_map(tmp_path):
    g = torch.Generator().manual_seed(4)
    c = compression_examples(500, 32, 16, g)
    assert (c.inputs[:, -1] == 15 + OFF).all() and (c.inputs[:, :-1] < 15 + OFF).all()
    assert torch.equal(c.targets, c.inputs) and c.answers.all() and c.needs_attention is None
    task = TASKS.get("memorization")(32, cache_dir=tmp_path, n_train=64, n_valid=64, n_test=64)
    value_of: dict[int, int] = {}
    for split in SPLITS:
        for x, targets, answers, needs in task.dataset(split):
            assert needs is None
            assert (x[1::2] == 256).all() and (x[0::2] <= 127).all()  # key, insert token
            assert torch.equal(answers, targets != IGNORE_INDEX) and answers[1::2].all()
            for k, v in zip(x[0::2].tolist(), targets[1::2].tolist()):
                assert value_of.setdefault(k, v) == v  # one map for every split
    assert len(set(value_of.values())) == len(value_of)  # one-to-one
    d = memorization_examples(10, 32, 256, torch.Generator().manual_seed(5))
    assert not (d.inputs[..., None] == d.targets[:, None, :]).any()  # values never inputs


def test_compression_head_reads_only_the_last_real_position(tmp_path):
    task = TASKS.get("compression")(16, cache_dir=tmp_path, n_train=8, n_valid=8, n_test=8)
    batch = task.collate(list(task.dataset("train"))[:2])
    head = task.head(8)
    h = torch.randn(2, 16, 8)
    out = head(h, batch)
    changed = h.clone()
    changed[:, :-1] = torch.randn(2, 15, 8)
    assert torch.equal(head(changed, batch), out)
    assert out.shape == (2, 16, task.vocab_size)
    assert torch.isfinite(task.loss(out, batch))


def test_recall_tasks_train_on_every_token_but_score_only_the_recalled_values(tmp_path):
    task = TASKS.get("in-context-recall")(16, cache_dir=tmp_path, n_train=8, n_valid=8,
                                          n_test=8)
    batch = task.collate(list(task.dataset("valid")))
    assert (batch.targets != IGNORE_INDEX).all()
    assert 0 < int(batch.answers.sum()) < batch.answers.numel()
    logits = torch.full((*batch.targets.shape, task.vocab_size), -10.0)
    logits.scatter_(2, batch.targets.unsqueeze(-1), 10.0)  # right everywhere ...
    wrong = batch.answers.clone()
    logits[wrong] = torch.roll(logits[wrong], 1, dims=-1)  # ... but at the answers
    meter = task.meter("valid")
    meter.update(logits, batch)
    assert meter.compute()["accuracy"] == 0.0
    assert meter.compute()["tokens"] == float(batch.answers.sum())
