"""Kernel tables: the GPU or library kernels of an existing operator, chosen by its ``backend``
option.

An operator with more than one way to run its core declares a ``KernelTable`` beside it
(``ATTENTION_KERNELS`` in ``operators/attention.py``): kernel name -> ``"module:Class"``, and
the order ``auto`` tries them in. A new kernel is one kernel file (its class) plus one entry in
that table; users choose it with ``--op-option attn.backend=NAME``. ``auto`` (the default)
takes the first kernel of ``auto`` that is usable on the device the operator runs on: on a CPU
always the pure-PyTorch path, so CPU numbers never depend on what is installed.

A kernel class has a ``name`` and ``unavailable(device)``: None where it can run on `device`
(``None`` for "somewhere on this machine"), else the reason, which the refusal names. Kernels
are imported only when chosen: a missing or broken library never breaks the registry or an
operator that does not use it. The operator exposes the kernel it runs as ``op.backend`` (the
run's record stores it).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from registry import ConfigError

AUTO = "auto"


class KernelTable:
    """The kernels of one operator family ("attention"): name -> "module:Class"."""

    def __init__(self, family: str, kernels: dict[str, str], auto: tuple[str, ...]):
        if AUTO in kernels or not set(auto) <= set(kernels):
            raise ValueError(f"{family} kernel table: 'auto' is not a kernel, and every "
                             f"name of auto must be in the table")
        self.family = family
        self.kernels = dict(kernels)
        self.auto = tuple(auto)

    def names(self) -> list[str]:
        return [AUTO, *self.kernels]

    def check_name(self, name: str) -> str:
        """`name` if the table has it (or it is 'auto'), else ValueError listing them (an
        ``Options`` validator turns it into the one-line option error)."""
        if name != AUTO and name not in self.kernels:
            raise ValueError(f"unknown {self.family} backend {name!r} (backends: "
                             f"{', '.join(self.names())})")
        return name

    def kernel(self, name: str) -> Any:
        """The kernel object called `name` (imports its module)."""
        return _load(self.kernels[name])

    def refuse_unusable(self, name: str, operator: str, instead: str) -> None:
        """At construction: refuse an explicit kernel this machine cannot run anywhere, with
        what to do `instead`."""
        if name == AUTO:
            return
        reason = self.kernel(name).unavailable(None)
        if reason:
            raise ConfigError(f"operator '{operator}' backend '{name}' cannot run: {reason}; "
                              f"{instead}")

    def choose(self, name: str, device: Any, operator: str, instead: str) -> Any:
        """The kernel to run on `device` (a torch.device): `name`'s, or for 'auto' the first
        usable one of ``auto``; ConfigError (saying what to do `instead`) if `name` cannot run
        there."""
        if name == AUTO:
            for candidate in self.auto:
                kernel = self.kernel(candidate)
                if kernel.unavailable(device) is None:
                    return kernel
            raise ConfigError(f"operator '{operator}': no {self.family} backend runs on "
                              f"{device} (tried {', '.join(self.auto)})")
        kernel = self.kernel(name)
        reason = kernel.unavailable(device)
        if reason:
            raise ConfigError(f"operator '{operator}' backend '{name}' cannot run on {device}: "
                              f"{reason}; {instead}")
        return kernel


@functools.cache
def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)()
