"""Probes: what is measured about a combination outside of training it: invariant checks,
the conformance suite for plugins, benchmarks, and the analysis of a trained run."""
