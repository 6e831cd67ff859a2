"""Command-line flags from option declarations (harness/core/options.py), and back.

``add_flags`` gives each declared option its flag, help text, default and preset values;
``overrides_from`` turns the flags a user gave into a nested dict shaped like the config, which
``config.resolve`` (run, check) or the bench's resolver validates with the same declarations.
Absent flags stay absent (argparse.SUPPRESS), so presets and config files keep their values.
Light: argparse only, so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core.options import Option, deep_merge, nested
from harness.core.values import parse_value
from registry import ConfigError


class _Store(argparse.Action):
    """Stores a flag's value (appends, for a repeatable one); a deprecated spelling says which
    flag replaces it. Bool options are switches: --x sets True, --no-x False."""

    def __init__(self, option_strings: list[str], dest: str, *, replacement: str | None = None,
                 repeat: bool = False, switch: bool = False, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0 if switch else None, **kwargs)
        self.replacement, self.repeat, self.switch = replacement, repeat, switch

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if self.replacement:
            warnings.warn(f"{option_string} is deprecated; use {self.replacement}",
                          FutureWarning, stacklevel=2)
        if self.switch:
            values = not (option_string or "").startswith("--no-")
        if self.repeat:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)


def comma_list(text: str) -> list[str]:
    """'dct,attn' -> ['dct', 'attn']; the items are converted and checked with the config."""
    return [item.strip() for item in text.split(",")]


def _value_text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def preset_values(o: Option, presets: dict[str, dict[str, Any]]) -> str:
    """'smoke 1, cpu 2, paper 4': what each preset sets the option to (empty if none does)."""
    parts = []
    for name, values in presets.items():
        for part in o.path.split("."):
            values = values.get(part, {}) if isinstance(values, dict) else {}
        if not isinstance(values, dict):
            parts.append(f"{name} {_value_text(values)}")
    return ", ".join(parts)


def help_text(o: Option, presets: dict[str, dict[str, Any]] | None = None,
              words: dict[str, str] | None = None, preset_label: str = "presets: ") -> str:
    """The option's help, its default and what each preset sets it to:
    'mixing layers (default 2; presets: smoke 1, cpu 2, paper 4)'; ``words`` fills in the
    {name} placeholders of the help."""
    stated = []
    if o.default_text is not None:
        stated.append(f"default {o.default_text}")
    elif o.default is not None and o.type is not bool and not o.key_depth:
        stated.append(f"default {_value_text(o.default)}")
    by_preset = preset_values(o, presets or {})
    if by_preset:
        stated.append(f"{preset_label}{by_preset}")
    text = o.help + (f" ({'; '.join(stated)})" if stated else "")
    for key, value in (words or {}).items():
        text = text.replace("{" + key + "}", value)
    return text.strip()


def _arguments(o: Option) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dest": o.dest, "default": argparse.SUPPRESS, "action": _Store}
    if o.type is bool:
        kwargs["switch"] = True
    elif o.key_depth:
        kwargs["repeat"] = True
    elif o.many:
        kwargs["type"] = comma_list
    else:
        kwargs["type"] = o.type
    if o.choices and not o.many:
        kwargs["choices"] = o.choices
    if o.metavar and o.type is not bool:
        kwargs["metavar"] = o.metavar
    return kwargs


def add_flags(parser: argparse.ArgumentParser, options: Sequence[Option], *,
              presets: dict[str, dict[str, Any]] | None = None,
              words: dict[str, str] | None = None, preset_label: str = "presets: ",
              groups: dict[str, Any] | None = None) -> dict[str, Any]:
    """A flag for each option that has one, in its --help group (created in order of first
    use, or taken from ``groups``). Returns the groups, for flags that are not options
    (--config, --resume)."""
    groups = dict(groups or {})
    for o in options:
        if o.flag_name is None:
            continue
        if o.group not in groups:
            groups[o.group] = parser.add_argument_group(o.group) if o.group else parser
        group = groups[o.group]
        kwargs = _arguments(o)
        strings = [o.flag_name]
        if o.type is bool and o.default is True:  # on by default: the flag turns it off
            strings.append("--no-" + o.flag_name[2:])
        group.add_argument(*strings, help=help_text(o, presets, words, preset_label), **kwargs)
        for alias in o.aliases:  # still accepted, not listed
            group.add_argument(alias, help=argparse.SUPPRESS, replacement=o.flag_name,
                               **kwargs)
    return groups


def key_values(pairs: list[str], o: Option) -> dict[str, Any]:
    """['a=1', 'b=x'] -> {'a': 1, 'b': 'x'}; with key_depth 2, ['dct.decay=2'] ->
    {'dct': {'decay': 2}}. Values are parsed as JSON when they can be."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{o.flag_name} expects {o.metavar}, got '{pair}'")
        if o.key_depth == 1:
            out[key] = parse_value(value)
            continue
        outer, dot, inner = key.partition(".")
        if not dot or not outer or not inner:
            raise ConfigError(f"{o.flag_name} expects {o.metavar}, got '{pair}'")
        out.setdefault(outer, {})[inner] = parse_value(value)
    return out


def overrides_from(args: argparse.Namespace, options: Sequence[Option]) -> dict[str, Any]:
    """The flags given explicitly, as a nested dict shaped like the config. A key set by its
    own flag (--train-file) wins over the same key in a repeatable one (--task-option)."""
    given = vars(args)
    out: dict[str, Any] = {}
    for o in sorted(options, key=lambda o: not o.key_depth):  # dict options first
        if o.flag_name is None or o.dest not in given:
            continue
        value = given[o.dest]
        if o.key_depth:
            value = key_values(value, o)
        out = deep_merge(out, nested(o.path, value))
    return out


def given_flags(args: argparse.Namespace, options: Sequence[Option]) -> list[str]:
    """The flags of these options that were given, in declaration order."""
    return [o.flag_name for o in options if o.flag_name and o.dest in vars(args)]


def refuse_file_as_folder(flag: str, folder: str | Path | None) -> None:
    """One line, before any work, when a folder option names a file (or a path through one):
    otherwise the run would fail late, with a traceback, when it first writes there."""
    if not folder:
        return
    path = Path(folder)
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            if not candidate.is_dir():
                where = "" if candidate == path else f" ({candidate} is a file)"
                raise ConfigError(f"{flag} {folder} is not a folder{where}; pass a folder "
                                  f"(it is created if missing)")
            return
