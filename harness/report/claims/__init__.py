"""A paper's claims as data, with verdicts the harness computes from run records: the one
claims system (the leaderboard's claims section reads it too).

``paper`` (the paper's reported numbers, results/reference.json), ``runs`` (the
configurations the claims need, per scale), ``sweep_runs`` (running the missing ones through
harness/sweep), ``evidence`` (finding their records, and the values claims read from them),
``rules`` (measurements -> supported / contradicted / not testable here; statistics from
harness/core/stats.py), ``chiar_former`` (the eight claims), ``render`` (results/CLAIMS.md),
``on_board`` (the leaderboard's section) and ``reproduce`` (the command).
"""
