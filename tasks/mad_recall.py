"""MAD's three recall tasks, as MAD-lab defines them (multi-query, its benchmark's setting):
`in-context-recall`, `noisy-in-context-recall` and `fuzzy-in-context-recall`.

`in-context-recall`: a sequence made entirely of key-value pairs (seq_len / 2 of them) over a
small vocabulary: keys from the first half of the ids, values from the second; within a
sequence each key keeps one value (drawn when the key first appears), keys repeat. Every value
whose key appeared before is scored (the final pair's key is always one that appeared)::

    k3 v7 k1 v2 k3 v7 k5 v1 k1 v2 ...          (scored: the v after a repeated key)

`noisy-in-context-recall`: the same, but each pair but one is, with probability
``frac_noise``, two tokens from ``noise_vocab_size`` separate noise ids instead (never scored).

`fuzzy-in-context-recall`: keys and values are motifs of 1 to ``k_motif_size`` (resp.
``v_motif_size``) distinct tokens; a key motif keeps its value motif within the sequence;
every token of the value of a repeated key is scored. In training the key motifs have random
sizes; in evaluation (valid and test) every key motif has ``k_motif_size`` tokens, as in MAD.
One pair, the probe, is inserted at a random point and repeated at the end; the sequence is
left-filled with a fill id to seq_len + 1 tokens. As in MAD, the probe's first copy can miss
the context when the pairs overshoot its insertion point: that final answer is then scored but
cannot be recalled (a few percent of sequences; the tests measure it).

Inputs are the sequence but its last token; as in MAD, training targets are every next token
(keys and first values are random, so most of them cannot be predicted), while the metrics
score only the recalled values. MAD's in-context and noisy recall sequences therefore have
seq_len - 1 inputs, the fuzzy ones seq_len. Ground truth: ``needs_attention`` is True at the
positions whose next token is a scored value (they need the earlier occurrence of their key).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import torch
from pydantic import Field

from registry import ConfigError
from tasks import register_task

from .mad_common import CPU_TRAINING, MAD_ID_OFFSET, MAD_SPLITS, MAD_TRAINING, smoke
from .mad_options import MadOptions
from .recall import RecallData, RecallTask


def in_context_recall_examples(n: int, seq_len: int, vocab_size: int, noise_vocab_size: int,
                               frac_noise: float, g: torch.Generator) -> RecallData:
    """``n`` sequences of MAD's multi-query in-context recall (module docstring), in MAD's ids
    shifted by MAD_ID_OFFSET."""
    pairs = seq_len // 2 - 1  # then the probe pair
    n_real = vocab_size - noise_vocab_size
    n_keys = n_real // 2
    first_value, first_noise = n_keys, n_real
    value_of = torch.randint(first_value, n_real, (n, n_keys), generator=g)
    keys = torch.randint(0, n_keys, (n, pairs), generator=g)
    noise = torch.rand(n, pairs, generator=g) < frac_noise
    # one pair is always a key-value pair (MAD picks it among all the pairs; here among those
    # before the probe, so that the probe always has a key to ask)
    noise[torch.arange(n), torch.randint(0, pairs, (n,), generator=g)] = False
    noise_tokens = torch.randint(first_noise, first_noise + max(noise_vocab_size, 1),
                                 (n, pairs, 2), generator=g)
    position = torch.arange(pairs).expand(n, -1)
    never = torch.full((n, n_keys), pairs)  # first pair index of each key, `pairs` if absent
    first = never.scatter_reduce(1, keys, torch.where(noise, pairs, position), "amin")
    seen_before = (torch.gather(first, 1, keys) < position) & ~noise
    probe = torch.multinomial((first < pairs).float(), 1, generator=g)  # a key that appeared
    tokens = torch.empty(n, pairs + 1, 2, dtype=torch.long)
    tokens[:, :-1, 0] = torch.where(noise, noise_tokens[..., 0], keys)
    tokens[:, :-1, 1] = torch.where(noise, noise_tokens[..., 1], torch.gather(value_of, 1, keys))
    tokens[:, -1, 0] = probe[:, 0]
    tokens[:, -1, 1] = torch.gather(value_of, 1, probe)[:, 0]
    sequence = tokens.flatten(1) + MAD_ID_OFFSET  # (n, 2 * pairs + 2)
    answered = torch.zeros(n, pairs + 1, 2, dtype=torch.bool)  # at the key: its value is next
    answered[:, :-1, 0] = seen_before
    answered[:, -1, 0] = True
    answers = answered.flatten(1)[:, :-1]
    return RecallData(sequence[:, :-1], sequence[:, 1:].clone(), answers, answers.clone())


def motif(rng: random.Random, vocab: range, size: int) -> tuple[int, ...]:
    """``size`` distinct tokens of ``vocab`` in random order: one of MAD's permutations."""
    return tuple(rng.sample(vocab, size))


def fuzzy_sequence(rng: random.Random, seq_len: int, vocab_size: int, k_max: int, v_max: int,
                   training: bool) -> tuple[list[int], list[bool]]:
    """One fuzzy in-context recall sequence of seq_len + 1 MAD ids (fill first) and, per
    token, whether it is a scored value token."""
    fill = vocab_size - 1
    n_real = vocab_size - 1
    keys, values = range(n_real // 2), range(n_real // 2, n_real)
    k_sizes = range(1, k_max + 1) if training else range(k_max, k_max + 1)
    v_sizes = range(1, v_max + 1)
    probe_k = motif(rng, keys, rng.choice(k_sizes))
    probe_v = motif(rng, values, rng.choice(v_sizes))
    probe_size = len(probe_k) + len(probe_v)
    insert_at = rng.randrange(seq_len - 2 * probe_size)
    value_of: dict[tuple[int, ...], tuple[int, ...]] = {}
    tokens: list[int] = []
    scored: list[bool] = []
    probe_added = False
    while len(tokens) < seq_len - probe_size - (k_max + v_max):
        k_size, v_size = rng.choice(k_sizes), rng.choice(v_sizes)
        if len(tokens) >= insert_at and not probe_added:
            tokens += [*probe_k, *probe_v]
            scored += [False] * probe_size
            value_of[probe_k] = probe_v
            probe_added = True
            continue
        key = motif(rng, keys, k_size)
        if key == probe_k:
            value, probe_added = probe_v, True
        else:
            value = value_of.get(key) or motif(rng, values, v_size)
        tokens += [*key, *value]
        scored += [False] * len(key) + [key in value_of] * len(value)
        value_of[key] = value
    tokens += [*probe_k, *probe_v]
    scored += [False] * len(probe_k) + [True] * len(probe_v)
    pad = seq_len + 1 - len(tokens)
    return [fill] * pad + tokens, [False] * pad + scored


def fuzzy_recall_examples(n: int, n_train: int, seq_len: int, vocab_size: int, k_max: int,
                          v_max: int, g: torch.Generator) -> RecallData:
    """``n`` sequences, the first ``n_train`` in MAD's training form (key motifs of every
    size), the rest in its evaluation form (key motifs of k_max tokens)."""
    rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=g)))
    drawn = [fuzzy_sequence(rng, seq_len, vocab_size, k_max, v_max, i < n_train)
             for i in range(n)]
    sequence = torch.tensor([s for s, _ in drawn], dtype=torch.long) + MAD_ID_OFFSET
    answers = torch.tensor([s for _, s in drawn], dtype=torch.bool)[:, 1:]
    return RecallData(sequence[:, :-1], sequence[:, 1:].clone(), answers, answers.clone())


class MadRecall(RecallTask):
    """What MAD's recall tasks share: MAD's split sizes and ``vocab_size`` (MAD's, the model
    sees one id more)."""

    class Options(MadOptions):
        vocab_size: int = Field(16, ge=2, description="MAD's vocabulary (the model sees one id "
                                                      "more)")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        self.vocab_size = self.options.vocab_size + MAD_ID_OFFSET
        self.params = {"vocab_size": self.options.vocab_size, **self.split_sizes()}


@register_task(
    "in-context-recall",
    description="MAD in-context recall (multi-query): a sequence of key-value pairs, every value "
    "of a repeated key scored; causal, trained on every next token, needs_attention ground truth",
)
class InContextRecall(MadRecall):
    """MAD's in-context recall (``vocab_size`` 16: 8 keys, 8 values); ``noise_vocab_size`` and
    ``frac_noise`` are noisy-in-context-recall's, off here."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": smoke(32),
        # measured (seed 0, one thread on 2 busy cores): attn 0.552 (still rising), identity
        # 0.126 (456 s)
        "cpu": {"seq_len": 64, "vocab_size": 16, **MAD_SPLITS, **CPU_TRAINING},
        "paper": {"seq_len": 128, "vocab_size": 16, **MAD_SPLITS, **MAD_TRAINING},
    }

    class Options(MadRecall.Options):
        noise_vocab_size: int = Field(0, ge=0, description="ids of vocab_size that are noise, "
                                                           "not keys or values")
        frac_noise: float = Field(0.0, ge=0, lt=1, description="share of the pairs that are "
                                                               "noise")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name, o = self.registry_name, self.options
        vocab_size, noise_vocab_size, frac_noise = o.vocab_size, o.noise_vocab_size, o.frac_noise
        if frac_noise > 0 and noise_vocab_size == 0:
            raise ConfigError(f"task '{name}': frac_noise {frac_noise} needs noise tokens; set "
                              f"noise_vocab_size > 0")
        if vocab_size - noise_vocab_size < 2:
            raise ConfigError(f"task '{name}': vocab_size {vocab_size} leaves no keys and values "
                              f"beside {noise_vocab_size} noise ids; raise vocab_size")
        if seq_len < 4 or seq_len % 2:
            raise ConfigError(f"task '{name}': its sequences are key-value pairs, a pair and "
                              f"the probe at least: --seq-len must be even and >= 4, got "
                              f"{seq_len}")
        self.params.update(noise_vocab_size=noise_vocab_size, frac_noise=frac_noise)

    def generate(self, n: int, g: torch.Generator) -> RecallData:
        p = self.params
        return in_context_recall_examples(n, self.seq_len, p["vocab_size"],
                                          p["noise_vocab_size"], p["frac_noise"], g)


@register_task(
    "noisy-in-context-recall",
    description="MAD noisy in-context recall (multi-query): in-context-recall with noise pairs "
    "from separate noise ids; causal, trained on every next token, needs_attention ground truth",
)
class NoisyInContextRecall(InContextRecall):
    """MAD's noisy in-context recall: in-context-recall's options with MAD's defaults
    ``vocab_size`` 32 of which ``noise_vocab_size`` 16 are noise, ``frac_noise`` 0.2."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": smoke(32),
        # measured (seed 0, 2 busy cores): attn 0.948, identity 0.123 (296 s)
        "cpu": {"seq_len": 64, "vocab_size": 32, "noise_vocab_size": 16, "frac_noise": 0.2,
                **MAD_SPLITS, **CPU_TRAINING},
        "paper": {"seq_len": 128, "vocab_size": 32, "noise_vocab_size": 16, "frac_noise": 0.2,
                  **MAD_SPLITS, **MAD_TRAINING},
    }

    class Options(InContextRecall.Options):
        vocab_size: int = Field(32, ge=2, description="MAD's vocabulary, noise ids included "
                                                      "(the model sees one id more)")
        noise_vocab_size: int = Field(16, ge=0, description="ids of vocab_size that are noise, "
                                                            "not keys or values")
        frac_noise: float = Field(0.2, ge=0, lt=1, description="share of the pairs that are "
                                                               "noise")


@register_task(
    "fuzzy-in-context-recall",
    description="MAD fuzzy in-context recall (multi-query): keys and values are motifs of 1-3 "
    "tokens; causal, trained on every next token, needs_attention ground truth",
)
class FuzzyInContextRecall(MadRecall):
    """MAD's fuzzy in-context recall (``vocab_size`` 16: one fill id, 7 key ids, 8 value
    ids)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": smoke(32),
        # measured (seed 0, 2 busy cores): attn 0.462, identity 0.091 (409 s); mostly the
        # probe is scored (repeats of a 3-token key motif are rare at 64 tokens)
        "cpu": {"seq_len": 64, "vocab_size": 16, **MAD_SPLITS, **CPU_TRAINING},
        "paper": {"seq_len": 128, "vocab_size": 16, **MAD_SPLITS, **MAD_TRAINING},
    }

    class Options(MadRecall.Options):
        k_motif_size: int = Field(3, ge=1, description="longest key motif (distinct tokens)")
        v_motif_size: int = Field(3, ge=1, description="longest value motif (distinct tokens)")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name, vocab_size = self.registry_name, self.options.vocab_size
        k_max, v_max = self.options.k_motif_size, self.options.v_motif_size
        n_keys, n_values = (vocab_size - 1) // 2, vocab_size - 1 - (vocab_size - 1) // 2
        if k_max > n_keys or v_max > n_values:
            raise ConfigError(f"task '{name}': vocab_size {vocab_size} has {n_keys} key and "
                              f"{n_values} value ids, too few for motifs of {k_max} and {v_max} "
                              f"distinct tokens; raise vocab_size or lower the motif sizes")
        if seq_len <= 2 * (k_max + v_max):
            raise ConfigError(f"task '{name}': --seq-len must exceed twice the largest pair "
                              f"({2 * (k_max + v_max)}), got {seq_len}")
        self.params.update(k_motif_size=k_max, v_motif_size=v_max)

    def generate(self, n: int, g: torch.Generator) -> RecallData:
        p = self.params
        return fuzzy_recall_examples(n, p["n_train"], self.seq_len, p["vocab_size"],
                                     p["k_motif_size"], p["v_motif_size"], g)

