"""Provenance for result records and bench files: the environment a number was measured in
(hardware, versions, git commit, the command as typed) and the hash of each data split's exact
examples, so any number can be traced to the code, machine and data that produced it."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.malloc import malloc_setting

if TYPE_CHECKING:  # torch is imported lazily: reading records and the leaderboard do not need it
    import torch



def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, used: dict[str, list[str]] | None = None,
                commit: str | None = None) -> dict[str, Any]:
    """Provenance. ``used`` maps a registry kind ("operator", "router", "task") to the names a
    run used: ``plugins`` then lists only those of them that are plugins, and
    ``installed_plugins`` every plugin installed at the time. ``commit``: the code that ran, as
    ``git_commit`` read when it started (default: read now)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        package_version = version("chiaroscuro-bench")
    except PackageNotFoundError:
        package_version = "uninstalled"
    commit = git_commit() if commit is None else commit
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{cpu_name()} ({torch.get_num_threads()} threads)"
    return {
        "hardware": hardware,
        "device": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "package_version": package_version,
        "git_commit": commit,
        "plugins": _plugin_distributions(used),
        "installed_plugins": _plugin_distributions(),
        **provenance(commit),
    }


KEY_PACKAGES = ("numpy", "datasets", "tokenizers", "xformers", "pydantic", "scipy")


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed: ``python -m harness ...`` when run as the harness module."""
    import shlex
    import sys

    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == "harness":
        argv = ["python", "-m", "harness", *argv[1:]]
    return shlex.join(argv)


def provenance(commit: str | None = None) -> dict[str, Any]:
    """What else reproducing a run needs: the exact command, whether the tree had
    uncommitted changes, the versions of the other key packages (None: not installed) and the
    CPU cores the process could use."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    commit = git_commit() if commit is None else commit
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "command": command_line(),
        "git_dirty": None if commit is None else commit.endswith("-dirty"),
        "versions": versions,
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(affinity(0)) if affinity else os.cpu_count(),
        "malloc": malloc_setting(),
    }


def _plugin_distributions(used: dict[str, list[str]] | None = None) -> dict[str, str]:
    """'kind:name' -> distribution of each plugin entry (of those in ``used`` when given)."""
    from operators import OPERATORS
    from routers import ROUTERS
    from tasks import TASKS

    out = {}
    for registry in (OPERATORS, ROUTERS, TASKS):
        wanted = None if used is None else set(used.get(registry.kind, []))
        for entry in registry:
            names = {entry.name, *entry.aliases}
            if not entry.builtin and (wanted is None or bool(wanted & names)):
                out[f"{registry.kind}:{entry.name}"] = entry.origin
    return out


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# split_hashes per task: a run needs them for its checkpoints and its record, and hashing a
# large training split takes seconds
_SPLIT_HASHES: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def split_hashes(task: Any) -> dict[str, str]:
    """split -> ``split_hash`` of the task's examples (tokenized: a changed text file and a
    changed tokenizer both show), computed once per task."""
    from tasks.base import SPLITS

    try:
        return dict(_SPLIT_HASHES[task])
    except KeyError:
        pass
    except TypeError:  # a task that cannot be weakly referenced is hashed each time
        return {split: split_hash(task.dataset(split)) for split in SPLITS}
    hashes = {split: split_hash(task.dataset(split)) for split in SPLITS}
    _SPLIT_HASHES[task] = hashes
    return dict(hashes)


def split_hash(examples: Iterable[Any]) -> str:
    """sha256 of a data split's exact examples, in order: each example is fed with a canonical
    encoding (tensors and arrays as dtype kind + shape + little-endian int64/float64 bytes,
    tuples and lists element by element, scalars by type and repr), so the hash changes when
    any token, label or window changes and not when the storage dtype does.

    ``examples`` is anything indexable with ``len`` (a task's ``dataset(split)``) or iterable.
    """
    h = hashlib.sha256()
    if hasattr(examples, "__len__") and hasattr(examples, "__getitem__"):
        seq: Iterable[Any] = (examples[i] for i in range(len(examples)))  # type: ignore[index]
    else:
        seq = examples
    n = 0
    for example in seq:
        _feed(h, example)
        n += 1
    h.update(f"#{n}".encode())
    return "sha256:" + h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    import numpy as np

    if hasattr(obj, "detach") and hasattr(obj, "cpu") and hasattr(obj, "numpy"):  # torch tensor
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biu":
            arr, kind = obj.astype("<i8", copy=False), "i"
        elif obj.dtype.kind == "f":
            arr, kind = obj.astype("<f8", copy=False), "f"
        else:
            arr, kind = obj, obj.dtype.str
        h.update(f"A{kind}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    elif isinstance(obj, (tuple, list)):
        h.update(f"({len(obj)}".encode())
        for item in obj:
            _feed(h, item)
        h.update(b")")
    elif isinstance(obj, dict):
        h.update(f"{{{len(obj)}".encode())
        for key in sorted(obj, key=str):
            _feed(h, str(key))
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (bool, np.bool_)):
        h.update(b"b1" if obj else b"b0")
    elif isinstance(obj, (int, np.integer)):
        h.update(f"i{int(obj)};".encode())
    elif isinstance(obj, (float, np.floating)):
        h.update(f"f{float(obj)!r};".encode())
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        h.update(f"s{len(b)}:".encode() + b)
    elif obj is None:
        h.update(b"N")
    else:
        raise TypeError(f"split_hash cannot encode {type(obj).__name__}")
