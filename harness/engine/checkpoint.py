"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

A checkpoint holds everything a run needs to continue bit-for-bit: model (router calibration
buffers included), optimiser, scheduler, RNG states, the step (which fixes the data position,
see harness/data.py), progress counters and the config. Only tensors and plain Python values are
stored, so loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from registry import ConfigError

FORMAT_VERSION = 1


def save(path: Path, state: dict[str, Any]) -> None:
    """Atomic (temp file, fsync, rename): a kill at any moment leaves either the previous
    checkpoint or the new one, never a torn file."""
    from harness.results.records import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file must say which file
        raise ConfigError(
            f"checkpoint {path} cannot be read ({exc}); delete it to start over") from exc
    if state.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"checkpoint {path} has format {state.get('format_version')}, this "
                          f"harness reads {FORMAT_VERSION}; delete it to start over")
    return state


def rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    # python and numpy states as tensors/lists so that weights_only loading accepts them
    version, internal, gauss = random.getstate()
    state["python"] = [version, list(internal), gauss]
    np_state = np.random.get_state()
    state["numpy"] = [np_state[0], torch.from_numpy(np_state[1].astype("int64")), *np_state[2:]]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, cached))
