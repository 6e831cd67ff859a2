"""Public entry point of the conformance suite for plugin authors (see docs/plugins.md):

    from harness.conformance import operator_conformance_tests, router_conformance_tests
    python -m harness conformance --ops my_mixer --router my_router

The implementation lives in ``harness.probes.conformance.suite``; this path is kept stable.
"""

import sys

from harness.probes.conformance.suite import *  # noqa: F403
from harness.probes.conformance.suite import __all__, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
