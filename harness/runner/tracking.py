"""Experiment trackers: ``--tracker tensorboard|wandb`` (optional extras).

A tracker receives exactly the entries written to metrics.jsonl (loss, lr, tokens/s, and per
layer the routing fractions and gate) plus the validation metrics of each evaluation, flattened
to scalar names such as ``train/loss``, ``routing/layer0/attn`` and ``valid/accuracy``.
metrics.jsonl stays the record of truth; a tracker is a view of it. Only rank 0 tracks.

- ``tensorboard``: event files in ``<work dir>/tensorboard`` (``tensorboard --logdir runs``).
  A resumed run purges the steps after its checkpoint, as metrics.jsonl does.
- ``wandb``: one W&B run per harness run (same id on resume). Offline, into
  ``<work dir>/wandb``, unless an API key is configured and the W&B server is reachable, or
  WANDB_MODE says otherwise; ``wandb sync`` uploads an offline run later.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from typing import Any

from registry import ConfigError

EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb"}  # tracker -> package and extra


def scalars(entry: dict[str, Any], op_names: list[str]) -> dict[str, float]:
    """A metrics.jsonl entry (or {"valid": metrics}) as flat scalar names."""
    out: dict[str, float] = {}
    for key, value in entry.items():
        if key == "step":
            continue
        if key == "layers":
            for i, layer in enumerate(value):
                for op, fraction in zip(op_names, layer.get("fractions", [])):
                    out[f"routing/layer{i}/{op}"] = float(fraction)
                if "gate" in layer:
                    out[f"routing/layer{i}/gate"] = float(layer["gate"])
        elif isinstance(value, dict):
            out.update({f"{key}/{k}": float(v) for k, v in value.items()
                        if isinstance(v, int | float)})
        elif isinstance(value, int | float):
            out[f"train/{key}"] = float(value)
    return out


class Tracker:
    """No tracker: the default. Trackers open lazily, at the first step they log, so a run
    that fails before training leaves no tracker run behind."""

    def log(self, step: int, entry: dict[str, Any], op_names: list[str]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.writer = None

    def log(self, step: int, entry: dict[str, Any], op_names: list[str]) -> None:
        if self.writer is None:  # a resumed run purges the steps it will log again
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir), purge_step=step)
        for name, value in scalars(entry, op_names).items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbTracker(Tracker):
    def __init__(self, work_dir: Path, run_key: str, config: dict[str, Any]):
        self.work_dir, self.run_key, self.config = work_dir, run_key, config
        self.run = None

    def log(self, step: int, entry: dict[str, Any], op_names: list[str]) -> None:
        if self.run is None:
            import wandb

            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "chiaroscuro-bench"),
                name=self.work_dir.name, id=self.run_key, resume="allow", config=self.config,
                dir=str(self.work_dir), mode=wandb_mode())
        self.run.log(scalars(entry, op_names), step=step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()


def wandb_mode() -> str:
    """WANDB_MODE if set; online only with an API key and the W&B server reachable."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if _has_api_key() and _reachable("api.wandb.ai", 443) else "offline"


def _has_api_key() -> bool:
    netrc = Path.home() / ".netrc"
    return bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def open_tracker(cfg: Any, work_dir: Path, is_main: bool) -> Tracker:
    """The run's tracker (``cfg.tracker``); every rank checks the extra, only rank 0 tracks."""
    name = cfg.tracker
    if name and importlib.util.find_spec(EXTRAS[name]) is None:
        raise ConfigError(f"--tracker {name} needs {EXTRAS[name]}: "
                          f"pip install -e \".[{name}]\"")
    if not name or not is_main:
        return Tracker()
    if name == "tensorboard":
        return TensorBoardTracker(work_dir / "tensorboard")
    return WandbTracker(work_dir, f"{cfg.digest()}-seed{cfg.seed}", cfg.model_dump())
