"""Example chiaroscuro-bench plugin: one operator, one router, one task.

Nothing here registers anything at import time: the harness finds the three classes through
the entry points declared in this package's pyproject.toml,

    chiaroscuro.operators  dwconv   -> chiaroscuro_example_plugin.dwconv:DepthwiseConvMixer
    chiaroscuro.routers    flatness -> chiaroscuro_example_plugin.router:FlatnessRouter
    chiaroscuro.tasks      copy     -> chiaroscuro_example_plugin.task:CopyTask

and lists them with this distribution's name (`python -m harness list`).
"""

__version__ = "0.1.0"
