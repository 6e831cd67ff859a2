"""Task caches (tokenizers, encoded splits, generated data): one loader and one writer.

A cache file holds ``{"built_from": <hash>, "data": <what was built>}``. The hash names what the
data was built from (the source's sha256, the options, the format version: the same hash the
file's name is cut from). A file is used only when it loads, carries exactly the hash asked
for, and holds every field its reader needs; otherwise it is rebuilt, with one warning line that
names the file and why. So a cache file renamed or copied under another key (a rotated split, a
tokenizer of another kind), one from an older version, and one that loads but holds ``{}`` are
never used for what they are not.

The file's suffix says how it is stored: ``.json`` as JSON (tokenizers: readable, as the
``tokenizers`` library writes them), anything else with ``torch.save`` (tensors; read back with
``weights_only=True``, so a cache file can never run code). Writes go through
``registry.files`` (atomic, the umask's permissions, stale temporaries of killed writers
removed); a cache that cannot be written (read-only folder, full disk) is a warning: the run
goes on and builds it again next time.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from registry import files


def load_or_build(path: str | Path, built_from: str, build: Callable[[], dict[str, Any]], *,
                  needs: Iterable[str], what: str) -> dict[str, Any]:
    """The data cached at ``path`` if it was built from ``built_from`` and holds ``needs``;
    else ``build()``, cached at ``path``. ``what`` names the cache in messages ("listops")."""
    path = Path(path)
    if path.exists():
        data, problem = _load(path, built_from, set(needs))
        if problem is None:
            return data
        warnings.warn(f"{what}: rebuilding the cache {path}: {problem}", UserWarning,
                      stacklevel=2)
    data = build()
    _save(path, built_from, data, what=what)
    return data


def _save(path: Path, built_from: str, data: dict[str, Any], *, what: str) -> None:
    entry = {"built_from": built_from, "data": data}
    try:
        if path.suffix == ".json":
            files.atomic_write_text(path, json.dumps(entry))
        else:
            import torch

            files.atomic_write_with(path, lambda f: torch.save(entry, f))
    except (OSError, files.DiskFull) as exc:
        warnings.warn(f"{what}: cannot cache in {path.parent} ({exc}); it is built again next "
                      f"time", UserWarning, stacklevel=3)


def _load(path: Path, built_from: str, needs: set[str]) -> tuple[Any, str | None]:
    """(data, None) when the file serves, else (None, why not)."""
    try:
        if path.suffix == ".json":
            entry = json.loads(path.read_text(encoding="utf-8"))
        else:
            import torch

            entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign, or refused by weights_only
        return None, f"it cannot be read ({type(exc).__name__}: truncated or not a cache file)"
    if not isinstance(entry, dict) or not isinstance(entry.get("data"), dict) \
            or "built_from" not in entry:
        return None, ("it does not say what it was built from (empty, another program's, or "
                      "written by an older version)")
    if entry["built_from"] != built_from:
        return None, (f"it was built from {str(entry['built_from'])[:16]}..., not from "
                      f"{built_from[:16]}... (renamed or copied from another key)")
    missing = sorted(needs - set(entry["data"]))
    if missing:
        return None, f"it holds no {', '.join(missing)}"
    return entry["data"], None
