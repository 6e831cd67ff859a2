"""A paper's claims as data, with verdicts the harness computes from run records: the one
claims system (the leaderboard's claims section reads it too).

``paper`` (the paper's reported numbers, results/reference.json), ``runs`` (the
configurations the claims need, per setting, and which are tuned), ``sweep_runs`` (running the
missing ones through harness/sweep: the learning-rate grid first, then the chosen value),
``evidence`` (finding their records, the tuning's choice, the values claims read from them),
``rules`` (measurements -> supported / contradicted / inconclusive / not testable here;
statistics from harness/core/stats.py), ``gates`` (what a language-modelling claim must pass:
seeds at the plateau, one clean commit, attention above the no-mixing floor), ``budgets`` (the
rules re-applied at smaller budgets), ``chiar_former`` (the eight claims), ``render``
(results/CLAIMS.md), ``curves`` (its budget-curve plots), ``on_board`` (the leaderboard's
section) and ``reproduce`` (the command).
"""
