"""What runs leave behind: result records and their provenance, the leaderboard, plots."""

# Where a user's runs go by default: records, checkpoints and metrics.jsonl. Git-ignored, so
# running never writes into tracked files. The committed records (results/runs) are written
# only on purpose, with `--out results/runs`.
LOCAL_RUNS = "runs"
