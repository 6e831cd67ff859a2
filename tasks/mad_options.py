"""The options every MAD task takes: MAD's split sizes (``mad_common.MAD_SPLITS``, written out
because ``python -m harness list`` reads option defaults from the source as literals) and the
draw's seed. Its own module because ``tasks.mad_common`` stays free of torch (the board reads
it) while this model extends ``RecallTask``'s."""

from __future__ import annotations

from pydantic import Field

from .recall import RecallTask


class MadOptions(RecallTask.Options):
    n_train: int = Field(12_800, ge=1, description="training examples (MAD's)")
    n_valid: int = Field(1_280, ge=1, description="validation examples (MAD's test-set size)")
    n_test: int = Field(1_280, ge=1, description="test examples (MAD's)")
