"""Run configuration: pydantic models, and their resolution with the presets
(harness/core/presets.py).

A run is fully described by a ``RunConfig``; the CLI only maps flags onto it. Precedence, lowest
to highest: field defaults < preset (harness part, then the task's own ``presets`` entry) <
explicit options. The resolved config is printed at start and stored in every result record.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.core.presets import HARNESS_PRESETS, PRESETS
from registry import ConfigError, did_you_mean


class _Strict(BaseModel):
    # allow_inf_nan=False: `--lr inf` (or inf in a file) is refused up front for every float
    # field, instead of training into a NaN loss
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(_Strict):
    layers: int = Field(2, gt=0)
    d_model: int = Field(128, gt=0)
    heads: int = Field(4, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)


class RoutingConfig(_Strict):
    router: str = "entropy"
    ops: list[str] = Field(default_factory=lambda: ["dct", "attn"], min_length=1)
    attn_fraction: float = Field(0.375, ge=0, le=1)
    # routed: operators that can, compute only the tokens routed to them (work really skipped);
    # dense: every operator computes every token and the router selects (the reference).
    execution: Literal["routed", "dense"] = "routed"
    aux_weight: float = Field(0.01, ge=0)
    router_options: dict[str, Any] = Field(default_factory=dict)
    op_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("ops")
    @classmethod
    def _no_blank_ops(cls, ops: list[str]) -> list[str]:
        ops = [o.strip() for o in ops]
        if any(not o for o in ops):
            raise ValueError("operator names must be non-empty (use --ops dct,attn)")
        if len(set(ops)) != len(ops):
            raise ValueError(f"operator listed twice in {ops}")
        return ops


class DataConfig(_Strict):
    task: str = "listops"
    seq_len: int | None = Field(None, gt=0)  # None: the preset's or the task's default
    data_dir: str | None = None
    cache_dir: str = ".cache/chiaroscuro"
    # batches of similar-length examples (less padding); see harness/data.py
    length_bucketing: bool = True
    task_options: dict[str, Any] = Field(default_factory=dict)


class OptimConfig(_Strict):
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.98, ge=0, lt=1)
    warmup_steps: int = Field(50, ge=0)
    batch_size: int = Field(32, gt=0)  # global: split over ranks and accumulation micro-steps
    grad_accum: int = Field(1, gt=0)
    grad_clip: float = Field(1.0, ge=0)  # 0 disables clipping


class BudgetConfig(_Strict):
    max_steps: int = Field(1000, gt=0)
    max_time: float | None = Field(None, gt=0)  # seconds of training; schedule uses max_steps
    max_tokens: int | None = Field(None, gt=0)  # real training tokens
    eval_every: int = Field(200, gt=0)
    eval_batches: int | None = Field(None, gt=0)  # cap on validation batches during training
    # To the plateau: stop once `patience` evaluations in a row have not improved the validation
    # metric by more than `min_delta` (relative) over the best so far; max_steps is the cap.
    patience: int | None = Field(None, gt=0)
    min_delta: float = Field(0.0, ge=0, lt=1)
    ckpt_every: int = Field(500, gt=0)
    log_every: int = Field(10, gt=0)  # steps between metrics.jsonl lines


# Fields added after records were committed, with their defaults: at the default they are left
# out of the digest, so every earlier configuration keeps its hash (and its board row).
ADDED_FIELDS: dict[tuple[str, str], Any] = {("budget", "min_delta"): 0.0}


class RunConfig(_Strict):
    preset: str | None = None
    seed: int = 0
    device: str = "auto"  # auto: CUDA if present
    allow_leaky: bool = False
    compile: bool = False  # torch.compile the model (pays on GPU, not on CPU)
    threads: int | None = Field(None, gt=0)  # CPU intra-op threads; None: torch's default
    out: str | None = None  # folder for the result record (default runs/, git-ignored)
    work_dir: str | None = None  # checkpoints and logs (default: the record's folder)
    # experiment tracker (harness/runner/tracking.py); a view of metrics.jsonl, not a result
    tracker: Literal["tensorboard", "wandb"] | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

    def digest(self) -> str:
        """Hash of what determines the result (not where it is written, not the seed): runs
        with the same digest and different seeds are repeats of one configuration."""
        payload = self.model_dump(exclude={"out": True, "work_dir": True, "seed": True,
                                           "device": True, "compile": True, "threads": True,
                                           "tracker": True,
                                           "budget": {"ckpt_every", "log_every"}})
        for (section, name), default in ADDED_FIELDS.items():
            if payload[section][name] == default:  # absent from older configs: same hash
                del payload[section][name]
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# the model's maximum sequence length when neither the flags nor the task's preset set one
DEFAULT_SEQ_LEN = 256


def seq_len_of(cfg: RunConfig) -> int:
    return cfg.data.seq_len or DEFAULT_SEQ_LEN


# RunConfig sections a task's preset entry may set besides task options and seq_len
TASK_PRESET_SECTIONS = ("model", "optim", "budget")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML or JSON file shaped like RunConfig (sections model, routing, data, optim,
    budget; top-level preset, seed, ...). Unknown keys are rejected when the config is
    validated."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")  # TOML is UTF-8 by definition
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {byte:#04x} at offset "
                          f"{exc.start}); save it as UTF-8") from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} is malformed: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of options")
    return data


def resolve(overrides: dict[str, Any], task_presets: dict[str, dict[str, Any]]) -> RunConfig:
    """Defaults < preset < overrides. ``overrides`` is a nested dict holding only what the user
    set explicitly; ``task_presets`` is the task class's ``presets``."""
    preset = overrides.get("preset")
    layered: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'{did_you_mean(preset, PRESETS)} "
                              f"(presets: {', '.join(PRESETS)})")
        layered = deep_merge(layered, HARNESS_PRESETS[preset])
        task_part = dict(task_presets.get(preset, {}))
        seq_len = task_part.pop("seq_len", None)
        # a task whose answer needs its own model or schedule (mqar) may set these sections too
        sections = {k: task_part.pop(k) for k in TASK_PRESET_SECTIONS if k in task_part}
        data: dict[str, Any] = {"task_options": task_part}
        if seq_len is not None:
            data["seq_len"] = seq_len
        layered = deep_merge(layered, {"data": data, **sections})
    layered = deep_merge(layered, overrides)
    return RunConfig.model_validate(layered)
