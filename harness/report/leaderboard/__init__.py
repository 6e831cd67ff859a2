"""``python -m harness leaderboard``: the board (``board``), its flags (``args``)."""
