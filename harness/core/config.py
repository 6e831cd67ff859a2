"""Run configuration: pydantic models built from the option declarations
(harness/core/options.py), and their resolution with the presets (harness/core/presets.py).

A run is fully described by a ``RunConfig``: top-level options (preset, seed, device, ...)
and five sections, each a model of its own::

    RunConfig
      model    ModelConfig     layers, d_model, heads, mlp_ratio, dropout
      routing  RoutingConfig   router, ops, attn_fraction, execution, aux_weight, options
      data     DataConfig      task, seq_len, data_dir, cache_dir, task_options, ...
      optim    OptimConfig     lr, weight_decay, betas, warmup_steps, batch_size, ...
      budget   BudgetConfig    max_steps, max_time, max_tokens, eval_every, patience, ...

Each field's type, default and bounds come from its ``Option``, so the command line
(harness/core/flags.py) and these models never disagree, and a new option is one entry in
``OPTIONS``. Precedence, lowest to highest: field defaults < preset (harness part, then the
task's own ``presets`` entry) < explicit options. The resolved config is printed at start and
stored in every result record.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from harness.core.options import (
    DEFAULT_SEQ_LEN,
    OPTIONS,
    SECTIONS,
    Option,
    deep_merge,
    fields_of,
    is_field,
)
from harness.core.presets import HARNESS_PRESETS, PRESETS
from registry import ConfigError, did_you_mean

__all__ = [
    "ADDED_FIELDS", "DEFAULT_SEQ_LEN", "BudgetConfig", "DataConfig", "ModelConfig",
    "OptimConfig", "RoutingConfig", "RunConfig", "config_model", "deep_merge", "describe",
    "load_config_file", "resolve", "seq_len_of",
]


class _Strict(BaseModel):
    # allow_inf_nan=False: `--lr inf` (or inf in a file) is refused up front for every float
    # field, instead of training into a NaN loss
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _annotation(o: Option) -> Any:
    """The field's type: its Python type, narrowed to its choices and bounds."""
    if o.type is dict:
        return dict[str, dict[str, Any]] if o.key_depth == 2 else dict[str, Any]
    kind: Any = Literal[o.choices] if o.choices else o.type
    bounds = {k: v for k, v in (("gt", o.gt), ("ge", o.ge), ("lt", o.lt), ("le", o.le))
              if v is not None}
    if bounds:
        kind = Annotated[kind, Field(**bounds)]
    if o.many:
        kind = Annotated[list[kind], Field(min_length=1)]
    return kind | None if o.nullable else kind


def _field(o: Option) -> tuple[Any, Any]:
    if o.type is dict:
        return _annotation(o), Field(default_factory=dict, description=o.help)
    if o.many and o.default is not None:
        default = tuple(o.default)
        return _annotation(o), Field(default_factory=lambda: list(default), description=o.help)
    return _annotation(o), Field(o.default, description=o.help)


def config_model(name: str, options: Sequence[Option], section: str = "", *,
                 sections: dict[str, type[BaseModel]] | None = None,
                 validators: dict[str, Callable[[Any], Any]] | None = None,
                 base: type[BaseModel] = _Strict, doc: str = "") -> Any:
    """A pydantic model whose fields are the options of one section ("" for the top level),
    followed by the given sub-sections; ``validators`` maps a field to a check of its value."""
    fields: dict[str, Any] = {o.name: _field(o) for o in fields_of(section, options)}
    for key, model in (sections or {}).items():
        fields[key] = (model, Field(default_factory=model))
    checks = {f"_check_{key}": field_validator(key)(check)
              for key, check in (validators or {}).items()}
    model = create_model(name, __base__=base, __module__=__name__, __validators__=checks,
                         **fields)
    model.__doc__ = doc or f"The options of {section or 'the run'} (harness/core/options.py)."
    return model


def _no_blank_ops(ops: list[str]) -> list[str]:
    ops = [o.strip() for o in ops]
    if any(not o for o in ops):
        raise ValueError("operator names must be non-empty (use --ops dct,attn)")
    if len(set(ops)) != len(ops):
        raise ValueError(f"operator listed twice in {ops}")
    return ops


ModelConfig = config_model("ModelConfig", OPTIONS, "model")
RoutingConfig = config_model("RoutingConfig", OPTIONS, "routing",
                             validators={"ops": _no_blank_ops})
DataConfig = config_model("DataConfig", OPTIONS, "data")
OptimConfig = config_model("OptimConfig", OPTIONS, "optim")
BudgetConfig = config_model("BudgetConfig", OPTIONS, "budget")
_SECTION_MODELS = dict(zip(SECTIONS, (ModelConfig, RoutingConfig, DataConfig, OptimConfig,
                                      BudgetConfig), strict=True))

# Options added after records were committed, with their defaults: at the default they are
# left out of the digest, so every earlier configuration keeps its hash (and its board row).
ADDED_FIELDS: dict[tuple[str, str], Any] = {
    (o.section, o.name): o.default for o in OPTIONS if o.added and is_field(o, OPTIONS)}


def _not_digested(options: Sequence[Option]) -> dict[str, Any]:
    """What does not determine the result (where it is written, how fast, the seed: repeats
    of one configuration share a digest), as model_dump's ``exclude``."""
    exclude: dict[str, Any] = {}
    for o in options:
        if not o.in_digest and is_field(o, options):
            if o.section:
                exclude.setdefault(o.section, set()).add(o.name)
            else:
                exclude[o.name] = True
    return exclude


_NOT_DIGESTED = _not_digested(OPTIONS)


class _Run(_Strict):
    def digest(self) -> str:
        """Hash of what determines the result (not where it is written, not the seed): runs
        with the same digest and different seeds are repeats of one configuration."""
        payload = self.model_dump(exclude=_NOT_DIGESTED)
        for (section, name), default in ADDED_FIELDS.items():
            part = payload[section] if section else payload
            if part[name] == default:  # absent from older configs: same hash
                del part[name]
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


RunConfig = config_model("RunConfig", OPTIONS, sections=_SECTION_MODELS, base=_Run,
                         doc="Everything that describes a run; see the module docstring.")


def seq_len_of(cfg: RunConfig) -> int:
    return cfg.data.seq_len or DEFAULT_SEQ_LEN


# RunConfig sections a task's preset entry may set besides task options and seq_len
TASK_PRESET_SECTIONS = ("model", "optim", "budget")

# A run's options take a few KiB; the bound keeps /dev/zero or a wrong huge file from being
# read into memory whole.
MAX_CONFIG_BYTES = 1 << 20


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML or JSON file shaped like RunConfig (sections model, routing, data, optim,
    budget; top-level preset, seed, ...). Unknown keys are rejected when the config is
    validated."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; a "
                          f"config takes a few KiB: is it the right file?")
    try:
        text = raw.decode("utf-8")  # TOML is UTF-8 by definition
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {raw[exc.start]:#04x} "
                          f"at offset {exc.start}); save it as UTF-8") from exc
    try:
        # JSON by its suffix, or by its first character: no TOML document starts with "{", and
        # a sweep hands its cells their config as /dev/fd/N, a path with no suffix
        is_json = path.suffix == ".json" or text.lstrip().startswith("{")
        data = json.loads(text) if is_json else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} is malformed: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
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


def describe(exc: ValidationError, options: Sequence[Option] = OPTIONS) -> str:
    """A validation error in one line, each problem with its option and flag:
    'model.d_model (--d-model): Input should be greater than 0'."""
    flags = {o.path: o.flag_name for o in options if o.flag_name}
    problems = []
    for error in exc.errors():
        parts = [str(p) for p in error["loc"]]
        # the option is the longest leading part of the location with a flag (a list item's
        # index or a dict option's keys follow it)
        flag = next((flags[path] for i in range(len(parts), 0, -1)
                     if (path := ".".join(parts[:i])) in flags), None)
        problems.append(f"{'.'.join(parts)}{f' ({flag})' if flag else ''}: {error['msg']}")
    return "; ".join(problems)
