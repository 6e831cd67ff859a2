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
"""
