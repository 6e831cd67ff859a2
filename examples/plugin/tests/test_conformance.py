"""The plugin's own test module: the harness's conformance suite, one test per check and mode."""

from chiaroscuro_example_plugin.dwconv import DepthwiseConvMixer
from chiaroscuro_example_plugin.router import FlatnessRouter

from harness.conformance import operator_conformance_tests, router_conformance_tests

test_dwconv = operator_conformance_tests(DepthwiseConvMixer)
test_flatness = router_conformance_tests(FlatnessRouter)
