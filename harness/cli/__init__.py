"""The command line. Parsers import only what ``--help`` needs; each command imports its work
(and torch) when it runs."""

from harness.cli.main import main

__all__ = ["main"]
