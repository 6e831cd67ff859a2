"""The Python API: ``harness.run(...)`` trains one combination and returns its record, on the
path ``python -m harness run`` takes (harness/cli/main.py); ``harness.load_records(path)``
reads records back. Imported on first use of ``harness.run`` or ``harness.load_records``, and
light itself: torch and pydantic load when a function is called.

    import harness

    record = harness.run(task="listops", router="entropy", ops="dct,attn", preset="smoke")
    record.metrics["test"]["accuracy"], record.cost.test.attention_flop_fraction
    records = harness.load_records("results/runs")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.core.config import RunConfig
    from harness.core.records import RunRecord

__all__ = ["load_records", "overrides_of", "run"]


def overrides_of(config: RunConfig | Mapping[str, Any] | None,
                 keywords: Mapping[str, Any]) -> dict[str, Any]:
    """The options set explicitly, as a nested dict shaped like RunConfig: `config` (a
    RunConfig: what was set in it; a dict: as a --config file), then `keywords`, each an
    option's name as its flag spells it with underscores (``max_steps=100``, ``ops="dct,attn"``)
    or a section (``budget={"max_steps": 100}``)."""
    from harness.core.flags import comma_list
    from harness.core.options import OPTIONS, SECTIONS, check_keys, deep_merge, is_field, nested
    from registry import ConfigError, did_you_mean

    if config is None:
        table: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        table = dict(config)
    elif hasattr(config, "model_dump"):
        table = config.model_dump(exclude_unset=True)
    else:
        raise ConfigError(f"harness.run: config must be a RunConfig or a dict shaped like one, "
                          f"not {type(config).__name__}")
    by_name = {o.name: o for o in OPTIONS if o.flag is not None or is_field(o, OPTIONS)}
    for key, value in keywords.items():
        if key in SECTIONS and isinstance(value, Mapping):
            table = deep_merge(table, {key: dict(value)})
            continue
        option = by_name.get(key)
        if option is None:
            raise ConfigError(f"harness.run: unknown option '{key}'"
                              f"{did_you_mean(key, [*by_name, *SECTIONS])}; options are named "
                              f"as their flags, with underscores (max_steps=100)")
        if option.many and isinstance(value, str):
            value = comma_list(value)
        table = deep_merge(table, nested(option.path, value))
    check_keys(table, "harness.run")
    return table


def run(config: RunConfig | Mapping[str, Any] | None = None, /, *,
        log: Callable[[str], None] | None = print, **options: Any) -> RunRecord:
    """Train one router x operators x task combination, as ``python -m harness run`` does with
    the same options, and return its record (also written, as the command writes it).

    ``config``: a ``RunConfig``, or a dict shaped like one (a --config file's table), or
    nothing; ``options``: more options by name, winning over ``config``. The preset (``cpu``
    without a GPU unless given) and the task's own preset entry fill what is not set. A finished
    run answers at once from its record. ``log``: where progress lines go (None: nowhere).
    Bad input raises a ``registry.ChiaroscuroError`` (``ConfigError``, ``UnknownNameError``,
    ...) whose one line names the option and the fix, as the command line prints it."""
    from pydantic import ValidationError

    from harness.cli.main import resolve_overrides, start
    from harness.core.config import describe
    from registry import ConfigError

    try:
        cfg = resolve_overrides(overrides_of(config, options))
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {describe(exc)}") from None
    record, _ = start(cfg, log=log or (lambda line: None))
    return record


def load_records(path: str | Path) -> list[RunRecord]:
    """The records at `path`: one record file, or every record in a folder (``runs/`` for
    yours, ``results/runs`` for the committed ones), in file-name order. A record file that
    does not load raises ``registry.DataError`` naming it; in a folder such files are skipped,
    each named in a warning."""
    import warnings

    from harness.core import records
    from registry import DataError

    path = Path(path)
    if path.is_file():
        try:
            return [records.load_record(path)]
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: {records.describe_error(exc)}") from None
    if not path.is_dir():
        raise DataError(f"{path} is neither a record file nor a folder of records")
    found, problems = records.load_records(path)
    for problem in problems:
        warnings.warn(f"skipped {problem}", stacklevel=2)
    return found
