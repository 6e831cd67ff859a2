"""A paper's claims as data, with verdicts the harness computes from run records.

``runs`` (the configurations the claims need, per scale), ``sweep_runs`` (running the missing
ones through harness/sweep), ``evidence`` (finding their records), ``stats`` (mean +- std and
the paired or Welch t-test), ``rules`` (measurements -> supported / contradicted / not
testable here), ``chiar_former`` (the eight claims), ``render`` (results/CLAIMS.md) and
``reproduce`` (the command).
"""
