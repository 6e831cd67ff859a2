"""The runs the claims need, as data: one ``RunSpec`` per configuration, per setting.

A setting is the scale a claim is measured at. ``cpu`` is this project's 2-core machine:
WikiText-2 (trained on ``wiki.valid.tokens``, the only training text at hand) stands in for
WikiText-103, ListOps is generated. ``paper`` is the CHIAR-Former setting on WikiText-103
(presets ``paper`` and ``paper-400m``); it needs a GPU and the corpus (``--data-dir``).

Each spec becomes one sweep cell per seed (harness/sweep), so a finished cell is found by its
record path and skipped, and an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.core.config import deep_merge


@dataclass(frozen=True)
class RunSpec:
    key: str  # how claims name it
    family: str  # which task setting: "lm", "listops", "mix", "lm400m"
    router: str
    ops: tuple[str, ...]
    leaky: bool = False  # a paper form that needs --allow-leaky; its record is flagged leaky
    options: dict[str, Any] = field(default_factory=dict)  # extra run options


SPECS = [
    RunSpec("lm-attn", "lm", "single", ("attn",)),
    RunSpec("lm-entropy", "lm", "entropy", ("dct", "attn")),
    RunSpec("lm-entropy-leaky", "lm", "entropy", ("dct-leaky", "attn"), leaky=True),
    RunSpec("lm-meta", "lm", "meta", ("dct", "attn")),
    RunSpec("lm-meta-batch", "lm", "meta-batch", ("dct", "attn"), leaky=True),
    RunSpec("listops-attn", "listops", "single", ("attn",)),
    RunSpec("listops-entropy", "listops", "entropy", ("dct", "attn")),
    RunSpec("listops-meta", "listops", "meta", ("dct", "attn")),
    RunSpec("listops-learned3", "listops", "learned", ("dct", "rbf", "attn")),
    RunSpec("mix-attn", "mix", "single", ("attn",)),
    RunSpec("mix-entropy", "mix", "entropy", ("dct", "attn")),
    RunSpec("lm400m-attn", "lm400m", "single", ("attn",)),
    RunSpec("lm400m-entropy", "lm400m", "entropy", ("dct", "attn")),
]
SPEC_BY_KEY = {s.key: s for s in SPECS}

# Per setting, per family: the run options every cell of that family gets (None: the family
# cannot run in this setting; the claims that need it say what is missing).
SETTINGS: dict[str, dict[str, dict[str, Any] | None]] = {
    "cpu": {
        "lm": {"preset": "cpu",
               "data": {"task": "wikitext2", "data_dir": "../shared/data/wikitext-2",
                        "task_options": {"train_file": "wiki.valid.tokens"}},
               "budget": {"max_steps": 100, "eval_every": 50}},
        "listops": {"preset": "cpu", "data": {"task": "listops"},
                    "budget": {"max_steps": 1000}},
        "mix": None,  # one LM corpus at hand (WikiText-2 valid/test): nothing to mix
        "lm400m": None,  # 400M parameters do not train on 2 CPU cores
    },
    "paper": {
        "lm": {"preset": "paper", "data": {"task": "wikitext103"}},
        "listops": {"preset": "paper", "data": {"task": "listops"}},
        "mix": {"preset": "paper",
                "data": {"task": "mix",
                         "task_options": {"tasks": "wikitext103:0.8,wikitext2:0.2"}}},
        "lm400m": {"preset": "paper-400m", "data": {"task": "wikitext103"}},
    },
}

# the scale each family is measured at, in words, for the claims page
FAMILY_SCALE = {
    "cpu": {
        "lm": "WikiText-2 standing in for WikiText-103 (trained on wiki.valid.tokens, "
              "validated on its last ~10%, tested on wiki.test.tokens), cpu preset, 100 steps",
        "listops": "ListOps (generated, LRA parameters), cpu preset, 1000 steps",
    },
    "paper": {
        "lm": "WikiText-103, paper preset (4 layers)",
        "listops": "ListOps, paper preset",
        "mix": "WikiText-103 + WikiText-2 mix, paper preset",
        "lm400m": "WikiText-103, paper-400m preset",
    },
}

# what each setting is, in words, for the claims page
SCALE_TEXT = {
    "cpu": ("CPU preset: 2 layers, d_model 64, 2 CPU cores; WikiText-2 (trained on its "
            "validation split, tested on its test split, 100 steps) stands in for WikiText-103; "
            "ListOps generated with the LRA parameters, 1000 steps"),
    "paper": "paper presets on WikiText-103 (see `python -m harness run --dry-run`)",
}


def runnable(spec: RunSpec, setting: str) -> bool:
    return SETTINGS[setting].get(spec.family) is not None


def overrides(spec: RunSpec, setting: str, seed: int, *, out: str, work_dir: str = "runs",
              data_dir: str | None = None) -> dict[str, Any]:
    """The run options of one cell, shaped like RunConfig: what `harness run` would get.
    Checkpoints and metrics logs go to ``work_dir`` (git-ignored), records to ``out``."""
    base = SETTINGS[setting][spec.family]
    if base is None:
        raise ValueError(f"{spec.key} cannot run in setting {setting}")
    cell = deep_merge(base, {"seed": seed, "out": out, "work_dir": work_dir,
                             "routing": {"router": spec.router, "ops": list(spec.ops)}})
    if spec.leaky:
        cell["allow_leaky"] = True
    if data_dir is not None and spec.family in ("lm", "lm400m", "mix"):
        cell = deep_merge(cell, {"data": {"data_dir": data_dir}})
    return deep_merge(cell, spec.options)
