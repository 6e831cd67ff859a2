"""What runs leave behind: result records, the leaderboard, plots."""
