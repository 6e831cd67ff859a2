"""``python -m harness.measure.conformance``: the same as ``python -m harness.conformance``."""

import sys

from harness.measure.conformance.cli import main

sys.exit(main())
