"""The conformance suite (``suite``); plugin authors import it as ``harness.conformance``."""
