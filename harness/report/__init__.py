"""Reports built from committed records: the leaderboard, its plots, and the paper's claims.
They read records and never train, except ``claims.reproduce``, which runs missing cells
through the sweep."""
