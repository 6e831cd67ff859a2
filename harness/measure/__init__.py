"""Measuring a combination: cost accounting, invariant checks, conformance, benchmarks."""
