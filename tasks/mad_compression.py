"""`compression`: MAD's compression, a sequence squeezed through one state and rebuilt.

``seq_len - 1`` tokens drawn uniformly, then a compression token. The model reads the whole
sequence; its state at the last position (the compression token, which has seen everything)
is the only thing the head keeps: a decoder rebuilds every position t from that one vector plus
a fixed sinusoidal encoding of t (MAD's autoencoder: a non-expanding two-layer MLP, then the
unembedding). Trained and scored at every position: the targets are the inputs.

Not causal: every output reads the last position, so the task declares ``causal = False`` (the
mixers then see the whole sequence, as any encoder does; the last position sees it either
way). No per-token ground truth: no single position needs a lookup, the whole sequence has to
pass through one state (``needs_attention`` is None).

Ids (MAD's shifted by one, tasks/mad_common.py): tokens 1 .. vocab_size - 1, compression
token vocab_size.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from registry import ConfigError
from tasks import register_task

from .base import Batch
from .mad_common import CPU_TRAINING, MAD_ID_OFFSET, MAD_SPLITS, MAD_TRAINING, smoke
from .mad_options import MadOptions
from .recall import RecallData, RecallTask


def sinusoids(length: int, dim: int) -> Tensor:
    """(length, dim) fixed sine/cosine position encodings (sines in the first half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half) / max(half, 1))
    angles = torch.arange(length)[:, None] * freqs[None, :]
    out = torch.zeros(length, dim)
    out[:, :half], out[:, half : 2 * half] = angles.sin(), angles.cos()
    return out


class BottleneckDecoder(nn.Module):
    """MAD's compression decoder: each position is rebuilt from the last real position's
    state alone, plus that position's fixed encoding."""

    def __init__(self, d_model: int, vocab_size: int, max_len: int):
        super().__init__()
        self.register_buffer("positions", sinusoids(max_len, d_model), persistent=False)
        self.decoder = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model),
                                     nn.GELU(), nn.LayerNorm(d_model),
                                     nn.Linear(d_model, d_model), nn.GELU())
        self.unembed = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, vocab_size))

    def forward(self, h: Tensor, batch: Batch) -> Tensor:
        last = batch.padding_mask.sum(1) - 1  # the compression token (padding follows it)
        code = h[torch.arange(h.shape[0], device=h.device), last]
        return self.unembed(self.decoder(code[:, None, :] + self.positions[: h.shape[1]]))


def compression_examples(n: int, seq_len: int, vocab_size: int,
                         g: torch.Generator) -> RecallData:
    tokens = torch.randint(0, vocab_size - 1, (n, seq_len), generator=g)
    tokens[:, -1] = vocab_size - 1
    tokens = tokens + MAD_ID_OFFSET
    return RecallData(tokens, tokens.clone(), torch.ones_like(tokens, dtype=torch.bool), None)


@register_task(
    "compression",
    description="MAD compression: rebuild the whole sequence from the state at its last "
    "token (MAD's autoencoder head); not causal; no per-token ground truth",
)
class Compression(RecallTask):
    """MAD's compression; its options (``Options`` below) are MAD's."""

    causal = False
    ground_truth = "none: every position passes through the last one's state"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": smoke(16),
        # MAD's baseline data. Does NOT separate attention from identity at this budget:
        # measured (seed 0, 2 busy cores) attn 0.239, identity 0.096 (157 s); at MAD's width
        # 128 (lr 1e-3) attn 0.230 in 416 s, still rising. Squeezing 31 tokens through one
        # state takes far longer to learn (MAD trains 20,000 steps at width 128).
        "cpu": {"seq_len": 32, "vocab_size": 16, **MAD_SPLITS, **CPU_TRAINING},
        "paper": {"seq_len": 32, "vocab_size": 16, **MAD_SPLITS, **MAD_TRAINING},
    }

    class Options(MadOptions):
        vocab_size: int = Field(16, ge=2, description="MAD's vocabulary: the tokens and the "
                                                      "compression token")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name, vocab_size = self.registry_name, self.options.vocab_size
        if seq_len < 2:
            raise ConfigError(f"task '{name}': --seq-len must be at least 2, got {seq_len}")
        self.vocab_size = vocab_size + MAD_ID_OFFSET
        self.params = {"vocab_size": vocab_size, **self.split_sizes()}

    def generate(self, n: int, g: torch.Generator) -> RecallData:
        return compression_examples(n, self.seq_len, self.params["vocab_size"], g)

    def head(self, d_model: int) -> nn.Module:
        return BottleneckDecoder(d_model, self.vocab_size, self.seq_len)

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        # the targets are the tokens themselves; reading them from the tokens also serves the
        # checks' random batches (one label per example, as for any non-causal task)
        real = batch.padding_mask
        return F.cross_entropy(logits.float()[real], batch.tokens[real])
