"""``python -m harness.probes.conformance.suite``: the same as ``python -m harness.conformance``."""

import sys

from harness.probes.conformance.cli import main

sys.exit(main())
