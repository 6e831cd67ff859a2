"""User-facing errors.

Anything raised as a `ChiaroscuroError` is a problem with the user's input (a name, a
combination, a file), not a bug: the CLI prints its message on one line and exits with status 2.
Messages name the problem and the fix.
"""


import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the closest known name (case-insensitive), or ""."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.5)
    return f"; did you mean '{by_lower[close[0]]}'?" if close else ""


def unknown_options_message(kind: str, name: str, unknown: Iterable[str],
                            known: Iterable[str], flag: str) -> str:
    """One line naming the unknown options, the closest known one and all known ones."""
    unknown, known = sorted(unknown), sorted(known)
    hint = did_you_mean(unknown[0], known) if known else ""
    which = (f"its options: {', '.join(known)}; set them with {flag}" if known else
             "it takes no options")
    plural = "s" if len(unknown) > 1 else ""
    return (f"{kind} '{name}' got unknown option{plural} {', '.join(map(repr, unknown))}{hint} "
            f"({which})")


class ChiaroscuroError(Exception):
    """Base class for errors caused by user input."""


class UnknownNameError(ChiaroscuroError, KeyError):
    """A name that no registry entry (nor alias) carries."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateNameError(ChiaroscuroError):
    """Two entries (or an entry and an alias) claim the same name."""


class InvalidNameError(ChiaroscuroError, ValueError):
    """A name that may not be registered (it would become a path, a flag or a markdown cell)."""


class ConfigError(ChiaroscuroError, ValueError):
    """An impossible option value or combination (for example a non-causal operator on a
    causal task)."""


class DataError(ChiaroscuroError):
    """A missing or malformed data file; the message names the file (and line)."""
