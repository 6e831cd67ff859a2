"""Routed queries laid out in blocks of positions, for mixers whose work is local in position.

Linear attention (a carried state per chunk) and sliding-window attention (a window of keys per
block) compute a block of consecutive positions at a time. A routed subset of queries (the
``MixContext`` contract: real slots first, positions increasing) is placed in the same blocks:
block c holds the queries whose position lies in [c * size, (c + 1) * size), packed at the
front of ``width`` places, where width is the most queries any (example, block) holds. Every
block then runs as one batched matrix product against its own keys, and the work done is
batch x blocks x width query rows, which ``rows`` reports so the operators charge it.

``to_blocks`` and ``from_blocks`` move per-slot tensors in and out of that layout (scatter and
gather, differentiable); padded query slots land in a dump place that is dropped, and come back
as zeros. The width needs one host transfer per call (free on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BlockSlots:
    index: Tensor  # (B, Q) long: each query slot's place in (B, n_blocks * width); dump if padded
    positions: Tensor  # (B, n_blocks, width) long: the position at each place, -1 where empty
    real: Tensor  # (B, Q) bool: the real query slots
    n_blocks: int
    width: int

    @property
    def rows(self) -> int:
        """Query rows computed over the batch (empty places included: they run)."""
        return self.positions.shape[0] * self.n_blocks * self.width


def block_count(n: int, size: int) -> int:
    return -(-n // size)


def block_slots(positions: Tensor, query_mask: Tensor | None, size: int,
                n_blocks: int) -> BlockSlots:
    """The places of the query slots `positions` (B, Q) in blocks of `size` positions."""
    b, q = positions.shape
    real = (torch.ones_like(positions, dtype=torch.bool) if query_mask is None
            else query_mask.bool())
    block = torch.where(real, positions // size, n_blocks)  # padded slots: an extra block
    counts = torch.zeros(b, n_blocks + 1, dtype=torch.long, device=positions.device)
    counts.scatter_add_(1, block, torch.ones_like(block))
    width = max(1, int(counts[:, :n_blocks].max())) if n_blocks else 1  # the one host transfer
    # real slots of one block are consecutive (positions increase), so a slot's rank inside
    # its block is its slot number minus the block's first slot
    first = counts.cumsum(1) - counts
    rank = torch.arange(q, device=positions.device)[None, :] - first.gather(1, block)
    dump = n_blocks * width
    index = torch.where(real, block * width + rank, dump)
    placed = torch.full((b, dump + 1), -1, dtype=torch.long, device=positions.device)
    placed.scatter_(1, index, torch.where(real, positions, -1))
    return BlockSlots(index, placed[:, :dump].view(b, n_blocks, width), real, n_blocks, width)


def to_blocks(t: Tensor, slots: BlockSlots) -> Tensor:
    """t (B, Q, *rest) -> (B, n_blocks, width, *rest), zeros at empty places."""
    b, _, *rest = t.shape
    out = t.new_zeros(b, slots.n_blocks * slots.width + 1, *rest)
    index = slots.index.view(b, -1, *([1] * len(rest))).expand(-1, -1, *rest)
    out = out.scatter(1, index, t)
    return out[:, :-1].view(b, slots.n_blocks, slots.width, *rest)


def from_blocks(tb: Tensor, slots: BlockSlots) -> Tensor:
    """tb (B, n_blocks, width, *rest) -> (B, Q, *rest), zeros at padded query slots."""
    b, _, _, *rest = tb.shape
    flat = tb.reshape(b, slots.n_blocks * slots.width, *rest)
    flat = torch.cat([flat, flat.new_zeros(b, 1, *rest)], 1)  # the dump place reads zero
    index = slots.index.view(b, -1, *([1] * len(rest))).expand(-1, -1, *rest)
    return flat.gather(1, index)
