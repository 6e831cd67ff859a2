"""Running one combination: the guard (what may train), the training driver, the best
checkpoint, the record built from the run's values, and the run's files (lock, metrics log,
tracker)."""
