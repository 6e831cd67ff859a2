"""`dwconv`: a depthwise convolution token mixer (the example plugin's operator).

Each channel c has its own k taps w[c, :] (depthwise: no mixing across channels; the block's
MLP does that). With p = k - 1 taps on the past in causal mode and p = k // 2 otherwise:

    y[t, c] = sum_{j=0}^{k-1} w[c, j] * x[t - p + j, c]

- causal (p = k - 1): output t reads inputs t-k+1 .. t only;
- non-causal (p = k // 2): a centred window, t-k//2 .. t+(k-1-k//2).

Positions outside the sequence and padding tokens count as zeros, so appending padding never
changes a real output. The windows are a strided view of the zero-padded input, so the output
at any *subset* of query positions costs only those rows: the operator supports query subsets
(routed execution computes just the tokens routed to it) with one code path for both cases.

Cost: 2 * k * d_model FLOPs per output row (one multiply-add per tap and channel), all of it
in the einsum, which torch's FLOP counter sees: nothing is untracked.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from operators import MixContext, TokenMixer


class DepthwiseConvMixer(TokenMixer):
    """Depthwise 1-D convolution along the sequence: causal, or a centred window."""

    # Declarations: class attributes, the one place they are written.
    supports_causal = True  # causal=True gives a left-only window
    supports_query_subset = True  # a query row needs only its own window
    leaky = False

    class Options(TokenMixer.Options):
        # --op-option dwconv.kernel_size=5; the base class validates it (type, bound, unknown
        # keys) and keeps the result as self.options. One tap would scale each token alone:
        # no mixing at all.
        kernel_size: int = Field(7, ge=2, description="taps per channel")

    def __init__(self, d_model: int, n_heads: int, max_len: int, causal: bool, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        kernel_size = self.options.kernel_size
        self.kernel_size = kernel_size
        self.past = kernel_size - 1 if causal else kernel_size // 2  # taps before position t
        self.future = kernel_size - 1 - self.past  # taps after t: 0 in causal mode
        self.weight = nn.Parameter(torch.empty(d_model, kernel_size))
        bound = 1.0 / math.sqrt(kernel_size)  # nn.Conv1d's default for a depthwise kernel
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:
        if ctx.padding_mask is not None:
            x = x * ctx.padding_mask.unsqueeze(-1).to(x.dtype)  # padding reads as zeros
        padded = F.pad(x, (0, 0, self.past, self.future))  # (B, past + N + future, D)
        windows = padded.unfold(1, self.kernel_size, 1)  # (B, N, D, k), a view: no copy
        if ctx.query_positions is not None:  # only the requested rows: (B, Q, D, k)
            rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
            windows = windows[rows, ctx.query_positions]
        return torch.einsum("bndk,dk->bnd", windows, self.weight.to(windows.dtype))

    def flops(self, n_query: int, n_key: int) -> int:
        return 2 * self.kernel_size * self.d_model * n_query

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        return 0  # the einsum is a batched matmul, which FlopCounterMode counts
