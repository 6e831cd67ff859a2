"""The harness, in rooms by role:

    cli/      the command line: ``python -m harness {run,check,list,bench,leaderboard,sweep,
              conformance}``
    engine/   running one combination: config, model assembly, training, checkpoints, data,
              distributed set-up
    measure/  what is measured about a combination: cost accounting, invariant checks, the
              conformance suite for plugins, benchmarks
    results/  what a run leaves behind: records, the leaderboard, plots
    sweep/    many runs: grids of configurations and the executors that run them

``harness.conformance`` is the public entry point for plugin authors (docs/plugins.md).
"""
