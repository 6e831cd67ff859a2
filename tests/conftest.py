"""Shared fixtures, and what keeps the suite to itself: one thread, no plugin that happens to be
installed, and no file in the checkout (every test runs in a scratch folder and writes under
temporary ones; ``checkout_stays_clean`` fails the session otherwise)."""

import atexit
import importlib.metadata as md
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from operators import OPERATORS, TokenMixer
from tests.toy_tasks import ToyLM, registered_tasks

CHECKOUT = Path(__file__).resolve().parents[1]

# pyproject's pythonpath puts the checkout first for this process; its subprocesses get it too,
# or from the scratch working folder below they would import whatever `harness` the
# environment has installed (another clone's, in editable mode), or none.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(CHECKOUT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

# Hypothesis keeps examples and caches in .hypothesis/ of the folder it was imported in (the
# checkout) unless told otherwise before its first use, which can come during collection.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="chiaroscuro-hypothesis-")
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _HYPOTHESIS_HOME

# Small tensors on a busy 2-core machine run many times faster on one thread, and results are
# then independent of the thread count.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

# -- plugins installed in this environment are not the suite's ---------------------------------
# The registries discover plugins through entry points. A researcher's installed plugin
# (examples/plugin, say) would add rows to every listing the tests count and import torch
# where they check that nothing does, so the tests see only the built-ins and the fake
# distributions they create themselves on sys.path (tests/test_plugin.py, test_registry.py).
# Installed = found on sys.path as it was when the session started. ISOLATE_PLUGINS does the
# same in a subprocess: prepend it to the code of ``python -c``.
_ENVIRONMENT = frozenset(os.path.realpath(p or ".") for p in sys.path)
_all_entry_points = md.entry_points


def _isolated_entry_points(**params):
    found = _all_entry_points(**params)
    if not str(params.get("group", "")).startswith("chiaroscuro."):
        return found
    return md.EntryPoints(ep for ep in found if ep.dist is not None and os.path.realpath(
        str(ep.dist.locate_file(""))) not in _ENVIRONMENT)


md.entry_points = _isolated_entry_points

ISOLATE_PLUGINS = (
    "import importlib.metadata as _md\n"
    "_all = _md.entry_points\n"
    "_md.entry_points = lambda **p: _md.EntryPoints(()) "
    "if str(p.get('group', '')).startswith('chiaroscuro.') else _all(**p)\n"
)


def isolated_harness(*args: str) -> list[str]:
    """argv of ``python -m harness ARGS`` in a subprocess that sees no installed plugin."""
    code = ISOLATE_PLUGINS + "import runpy\nrunpy.run_module('harness', run_name='__main__', " \
                             "alter_sys=True)\n"
    return [sys.executable, "-c", code, *args]


# -- the checkout stays as it was ---------------------------------------------------------------
# Caches of the interpreter and of the tools, and the environments, are not the suite's files.
_NOT_THE_SUITES = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}


def _paths_in(root: Path) -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _NOT_THE_SUITES and not d.endswith(".egg-info")]
        rel = Path(folder).relative_to(root)
        found.update(str(rel / name) for name in (*dirs, *files))
    return found


@pytest.fixture(scope="session", autouse=True)
def checkout_stays_clean():
    """Fails the session when a test left a new file or folder in the checkout (a default
    --out or --cache-dir resolved against the working directory, usually): every test writes
    under its own temporary folder (tmp_path)."""
    before = _paths_in(CHECKOUT)
    yield
    added = _paths_in(CHECKOUT) - before
    new = sorted(p for p in added if str(Path(p).parent) not in added)  # a new folder once
    shown = ", ".join(new[:8]) + (f" and {len(new) - 8} more" if len(new) > 8 else "")
    assert not new, (f"the tests left files in the checkout {CHECKOUT}: {shown} (unless "
                     f"you made them while the tests ran); pass a tmp_path folder as --out, "
                     f"--work-dir and --cache-dir (or as a subprocess's cwd)")


@pytest.fixture(scope="session", autouse=True)
def scratch_working_directory(checkout_stays_clean, tmp_path_factory):
    """The tests run in a scratch folder, not in the checkout: a path left at its default
    (runs/, .cache/chiaroscuro, analysis/) lands there. A test that needs another folder changes
    to it itself (monkeypatch.chdir); a subprocess started with cwd=ROOT must pass its paths."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield


class _FutureOnly(TokenMixer):
    supports_causal = False

    def forward(self, x, ctx):
        return x

    def flops(self, n_query, n_key):
        return 0


@pytest.fixture
def causal_task_and_noncausal_op():
    with registered_tasks({"tiny-lm-test": ToyLM}):
        OPERATORS.add("future-only-test", _FutureOnly)
        yield
        del OPERATORS._entries["future-only-test"]


class _NaNAfterThreeSteps(TokenMixer):
    """Healthy for three optimiser steps, then poisons the output. It counts the steps by its
    own weight moving, not by its calls: the leak probes add training forwards along the run
    (and the guard's fresh copies take none)."""

    supports_causal = True

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.seen: torch.Tensor | None = None
        self.steps = 0

    def forward(self, x, ctx):
        if self.training:
            now = self.scale.detach().clone()
            self.steps += self.seen is not None and not torch.equal(now, self.seen)
            self.seen = now
        y = x * self.scale
        return y * float("nan") if self.steps >= 3 else y

    def flops(self, n_query, n_key):
        return 0


@pytest.fixture
def nan_operator():
    """The name of a registered operator that turns the loss NaN at the fourth training step."""
    OPERATORS.add("nan-after-3-test", _NaNAfterThreeSteps)
    yield "nan-after-3-test"
    del OPERATORS._entries["nan-after-3-test"]


# -- "fails fast", without a stopwatch -----------------------------------------------------------
class Waits:
    """What a code path waited on: network connections it tried and sleeps it took. "Fast"
    without a wall-clock assertion (which fails on a loaded machine): no connection and no
    retry sleep, or exactly the one bounded probe the code promises."""

    def __init__(self) -> None:
        self.connections: list[tuple[object, float | None]] = []  # (address, timeout)
        self.sleeps: list[float] = []


@pytest.fixture
def waits(monkeypatch):
    """Records every socket connection attempt (refused at once) and every time.sleep."""
    import socket
    import time

    seen = Waits()

    def connect(sock, address):
        seen.connections.append((address, sock.gettimeout()))
        raise ConnectionRefusedError(111, "Connection refused (the tests allow no network)")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", lambda sock, address: connect(sock, address))
    monkeypatch.setattr(time, "sleep", lambda seconds: seen.sleeps.append(seconds))
    return seen
