"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

A checkpoint holds everything a run needs to continue bit-for-bit: model (router calibration
buffers included), optimiser, scheduler, RNG states, the step (which fixes the data position,
see harness/data.py), progress counters and the config, and the hash of each data split's
examples it was trained with: the config names the data files, not their contents, so a resume
over a changed file (or tokenizer) is refused rather than mixing two datasets in one run. Only
tensors and plain Python values are stored, so loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from registry import ChiaroscuroError, ConfigError

FORMAT_VERSION = 1


def save(path: Path, state: dict[str, Any]) -> None:
    """Atomic (temp file, fsync, rename): a kill at any moment leaves either the previous
    checkpoint or the new one, never a torn file."""
    from registry.files import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# What a checkpoint holds, by key, and the type of each value (the training step adds its own
# entries, see optim.TrainStep.state_dict). Checked on load, like a record's schema: a file that
# unpickles but is malformed must fail with the same one line as a torn one.
SCHEMA: dict[str, type] = {"format_version": int, "config": str, "config_hash": str,
                           "model": dict, "rng": dict, "progress": str}


def load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file must say which file
        raise unreadable(path, exc) from exc
    if not isinstance(state, dict):
        raise unreadable(path, f"it holds a {type(state).__name__}, not a dict")
    if state.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"checkpoint {path} has format {state.get('format_version')}, this "
                          f"harness reads {FORMAT_VERSION}; delete it to start over")
    problem = schema_problem(state)
    if problem:
        raise unreadable(path, problem)
    return state


def schema_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with a loaded checkpoint's structure, or None."""
    for key, kind in SCHEMA.items():
        if key not in state:
            return f"'{key}' is missing"
        if not isinstance(state[key], kind):
            return f"'{key}' is a {type(state[key]).__name__}, not a {kind.__name__}"
    bad = [k for k, v in state["model"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        return f"model entry '{bad[0]}' is not a tensor"
    hashes = state.get("data_hashes", {})  # absent in checkpoints of older harnesses
    if not (isinstance(hashes, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in hashes.items())):
        return "'data_hashes' is not a map of split names to hashes"
    return None


def changed_split(state: dict[str, Any], hashes: dict[str, str]) -> str | None:
    """The first split whose examples (``provenance.split_hashes``: the text and its
    tokenizer) differ from those the checkpoint was trained with, or None. A checkpoint of an
    older harness carries no hashes: None, nothing can be compared."""
    saved = state.get("data_hashes")
    if not saved:
        return None
    return next((split for split, h in hashes.items() if saved.get(split) != h), None)


def unreadable(path: Path, why: object) -> ConfigError:
    why = " ".join(str(why).split())  # torch's multi-line messages on one line
    if len(why) > 300:
        why = why[:300] + "..."
    return ConfigError(f"checkpoint {path} cannot be read ({why}); delete it to start over")


@contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Around putting a loaded checkpoint's state into the model, optimiser, RNGs: what the
    schema cannot see (a tensor of the wrong shape, a corrupt optimiser entry) fails the same
    way. Harness errors (a checkpoint of another configuration) pass through as they are."""
    try:
        yield
    except ChiaroscuroError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise unreadable(path, f"{type(exc).__name__}: {exc}") from exc


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
