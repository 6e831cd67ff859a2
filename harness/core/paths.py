"""Where a run's files go: its id, its record and its work folder, from the config alone.
Light (no pydantic, no torch): the command line imports it to print its defaults."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

from registry import ConfigError

if TYPE_CHECKING:
    from harness.core.config import RunConfig

# Set by a sweep for each cell it starts: the sweep's process id. A cell whose sweep is gone
# (killed by a signal it could not pass on) stops as on SIGTERM, checkpointing on the way out,
# instead of training on unwatched beside the cell a re-started sweep runs.
SWEEP_PARENT_ENV = "CHIAROSCURO_SWEEP_PID"

# Where a user's runs go by default: records, checkpoints and metrics.jsonl. Git-ignored, so
# running never writes into tracked files. The committed records (results/runs) are written
# only on purpose, with `--out results/runs`.
LOCAL_RUNS = "runs"


def run_id(cfg: RunConfig) -> str:
    ops = "+".join(cfg.routing.ops)
    return f"{cfg.data.task}__{cfg.routing.router}__{ops}__{cfg.digest()}__seed{cfg.seed}"


def safe_name(run_id: str) -> str:
    """A run id as one file or folder name, inside the folder it is joined to: the names in it
    come from the command line or a config file (``--ops ../../x`` is only looked up later), so
    anything but letters, digits and -_.+=@ becomes _ (no '/'), and leading dots go (no '..',
    no hidden file). Every path built from a run id goes through here."""
    safe = "".join(c if c.isalnum() or c in "-_.+=@" else "_" for c in run_id)
    return safe.lstrip(".") or "run"


def record_filename(run_id: str) -> str:
    return f"{safe_name(run_id)}.json"


def results_dir(cfg: RunConfig) -> Path:
    """The record's folder: the local, git-ignored one unless --out says otherwise."""
    return Path(cfg.out) if cfg.out else Path(LOCAL_RUNS)


def run_paths(cfg: RunConfig) -> tuple[Path, Path]:
    """(record path, work directory for checkpoint and metrics log) of a run: both directly
    inside --out (or --work-dir), whatever the names in the config."""
    rid = run_id(cfg)
    work = Path(cfg.work_dir) if cfg.work_dir else results_dir(cfg)
    return results_dir(cfg) / record_filename(rid), work / safe_name(rid)


# what a folder the user cannot write to answers: no permission, or a read-only file system
NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def writable_folder(folder: Path, flag: str) -> None:
    """Make `folder` (and its parents) and check that this process may create files in it: a
    run whose outputs cannot be written fails at once with one line, not with a traceback (nor
    after hours of training, at its record)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno not in NOT_WRITABLE:
            raise
        raise not_writable(flag, folder, exc.strerror) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise not_writable(flag, folder, "not writable by this user")


def not_writable(flag: str, folder: Path | str, why: str | None) -> ConfigError:
    return ConfigError(f"{flag} {folder}: cannot write there ({why or 'permission denied'}); "
                       f"choose a folder you can write to, or fix its permissions")
