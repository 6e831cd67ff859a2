"""The harness, in layers (imports only go down; tests/test_layers.py checks it):

    cli/      the command line: ``python -m harness {run,check,list,bench,leaderboard,sweep,
              reproduce,conformance,analyze}``
    report/   what committed records say: the leaderboard, its plots, the paper's claims
    sweep/    many runs: grids of configurations and the executors that run them
    runner/   one run: the guard, the training driver, the record built from its values
    probes/   what is measured outside training: checks, conformance, bench, analyze
    engine/   the model, the optimiser step, data, checkpoints, and the in-run meters
    core/     the run configuration, the record schema, where files go

``harness.conformance`` is the public entry point for plugin authors (docs/plugins.md).

The Python API (harness/api.py, README "Python API"): ``harness.run(...)`` trains one
combination as ``python -m harness run`` does and returns its ``RunRecord``;
``harness.load_records(path)`` reads records back. Importing ``harness`` stays light (the
command line's start-up depends on it): these names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.api import load_records, run
    from harness.core.config import RunConfig
    from harness.core.records import RunRecord

__all__ = ["RunConfig", "RunRecord", "load_records", "run"]


def __getattr__(name: str) -> Any:
    """The API's names, imported on first access (PEP 562): no torch or pydantic before."""
    if name in ("run", "load_records"):
        from harness import api

        return getattr(api, name)
    if name == "RunConfig":
        from harness.core.config import RunConfig

        return RunConfig
    if name == "RunRecord":
        from harness.core.records import RunRecord

        return RunRecord
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
