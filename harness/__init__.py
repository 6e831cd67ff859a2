"""The harness: CLI, configuration, model assembly, training, cost accounting, records."""
