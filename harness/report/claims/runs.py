"""The runs the claims need, as data: one ``RunSpec`` per configuration, per setting.

A setting is the scale a claim is measured at. ``cpu`` is this project's 2-core machine: its
language modelling is the Shakespeare task's ``cpu`` preset (tasks/shakespeare.py: the setting
where attention beats a model with no token mixing), trained to its plateau with a tuned
learning rate; ``mix`` trains on Shakespeare and WikiText-2 together, ``small`` on WikiText-2
alone, both with the Shakespeare preset's model, optimiser, budget and tokenizer size; ListOps
is generated. ``paper`` is the CHIAR-Former setting on WikiText-103 (presets ``paper`` and
``paper-400m``); it needs a GPU and the corpus (``--data-dir``).

Each spec becomes one sweep cell per seed (harness/sweep), so a finished cell is found by its
record path and skipped, and an interrupted one resumes from its checkpoint. A tuned family's
spec is several configurations, one per learning rate of ``LR_GRID``: all of them run at the
first seed, the one chosen on validation (the sweep's rule) runs the other seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.core.config import TASK_PRESET_SECTIONS, deep_merge


@dataclass(frozen=True)
class RunSpec:
    key: str  # how claims name it
    family: str  # which task setting: "lm", "mix", "small", "listops", "lm400m"
    router: str
    ops: tuple[str, ...]
    leaky: bool = False  # a paper form that needs --allow-leaky; its record is flagged leaky
    options: dict[str, Any] = field(default_factory=dict)  # extra run options


SPECS = [
    RunSpec("lm-attn", "lm", "single", ("attn",)),
    RunSpec("lm-identity", "lm", "single", ("identity",)),  # the no-mixing floor
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
    RunSpec("small-attn", "small", "single", ("attn",)),
    RunSpec("small-entropy", "small", "entropy", ("dct", "attn")),
    RunSpec("lm400m-attn", "lm400m", "single", ("attn",)),
    RunSpec("lm400m-entropy", "lm400m", "entropy", ("dct", "attn")),
]
SPEC_BY_KEY = {s.key: s for s in SPECS}

# the language-modelling families: their claims are judged at the plateau, above the floor
LM_FAMILIES = ("lm", "mix", "small", "lm400m")
# the no-mixing floor: a claim about a mixer is judged only where the first beats the second
FLOOR = ("lm-attn", "lm-identity")

# the learning rates a tuned family tries (issue 32: the best of >= 3 on validation)
TUNED_OPTION = "optim.lr"
LR_GRID = (1e-3, 2e-3, 4e-3)

# A family whose run options say ``"like": TASK`` takes seq_len, vocab_size and the model,
# optim and budget sections from that task's preset of the same name: one setting, read from
# the task, so a change to its preset moves every family with it.
LIKE = "like"
_SHAKESPEARE = "../shared/data/shakespeare"
_WIKITEXT2 = "../shared/data/wikitext-2"

# Per setting, per family: the run options every cell of that family gets (None: the family
# cannot run in this setting; the claims that need it say what is missing).
SETTINGS: dict[str, dict[str, dict[str, Any] | None]] = {
    "cpu": {
        "lm": {"preset": "cpu", "data": {"task": "shakespeare", "data_dir": _SHAKESPEARE}},
        "mix": {"preset": "cpu", LIKE: "shakespeare",
                "data": {"task": "mix", "task_options": {
                    "tasks": "shakespeare:0.8,wikitext2:0.2",
                    "shakespeare.data_dir": _SHAKESPEARE, "wikitext2.data_dir": _WIKITEXT2,
                    "wikitext2.train_file": "wiki.valid.tokens"}}},
        "small": {"preset": "cpu", LIKE: "shakespeare",
                  "data": {"task": "wikitext2", "data_dir": _WIKITEXT2,
                           "task_options": {"train_file": "wiki.valid.tokens"}}},
        "listops": {"preset": "cpu", "data": {"task": "listops"},
                    "budget": {"max_steps": 1000}},
        "lm400m": None,  # 400M parameters do not train on 2 CPU cores
    },
    "paper": {
        "lm": {"preset": "paper", "data": {"task": "wikitext103"}},
        "listops": {"preset": "paper", "data": {"task": "listops"}},
        "mix": {"preset": "paper",
                "data": {"task": "mix",
                         "task_options": {"tasks": "wikitext103:0.8,wikitext2:0.2"}}},
        "small": {"preset": "paper", "data": {"task": "wikitext2"}},
        "lm400m": {"preset": "paper-400m", "data": {"task": "wikitext103"}},
    },
}

# Per setting: the families whose learning rate is tuned over LR_GRID, and those whose data
# folder is --data-dir (every other family names its data above, as part of its hash).
TUNED: dict[str, tuple[str, ...]] = {"cpu": ("lm", "mix", "small"), "paper": ()}
DATA_DIR_FAMILIES: dict[str, tuple[str, ...]] = {
    "cpu": (), "paper": ("lm", "mix", "small", "lm400m")}

# the data of each family, in words, for the claims page (the numbers come from the presets):
# (short, full)
_DATA_TEXT = {
    "cpu": {
        "lm": ("Shakespeare", "Shakespeare (trained on 35 works, validated on 4, tested on 3)"),
        "mix": ("Shakespeare 0.8 + WikiText-2 0.2",
                "Shakespeare 0.8 + WikiText-2 0.2, one BPE trained on both (WikiText-2 trained "
                "on wiki.valid.tokens, validated on its last ~10%, tested on wiki.test.tokens)"),
        "small": ("WikiText-2 alone",
                  "WikiText-2 alone (trained on wiki.valid.tokens, validated on its last ~10%, "
                  "tested on wiki.test.tokens)"),
    },
}
_STATIC_TEXT = {
    "cpu": {"listops": "ListOps (generated, LRA parameters), cpu preset, 1000 steps"},
    "paper": {
        "lm": "WikiText-103, paper preset (4 layers)",
        "listops": "ListOps, paper preset",
        "mix": "WikiText-103 + WikiText-2 mix, paper preset",
        "small": "WikiText-2 alone, paper preset",
        "lm400m": "WikiText-103, paper-400m preset",
    },
}


def runnable(spec: RunSpec, setting: str) -> bool:
    return SETTINGS[setting].get(spec.family) is not None


def tuned(spec: RunSpec, setting: str) -> bool:
    return spec.family in TUNED.get(setting, ())


def _preset_part(task: str, preset: str) -> dict[str, Any]:
    """What ``task``'s preset sets that a family ``like`` it copies: seq_len, vocab_size and the
    model, optim and budget sections."""
    from tasks import TASKS

    part = dict(TASKS.get(task).presets.get(preset, {}))
    out: dict[str, Any] = {k: part[k] for k in TASK_PRESET_SECTIONS if k in part}
    data: dict[str, Any] = {}
    if "seq_len" in part:
        data["seq_len"] = part["seq_len"]
    if "vocab_size" in part:
        data["task_options"] = {"vocab_size": part["vocab_size"]}
    return deep_merge(out, {"data": data}) if data else out


def family_options(setting: str, family: str) -> dict[str, Any]:
    """The run options every cell of the family gets in the setting (no seed, no routing)."""
    base = SETTINGS[setting][family]
    if base is None:
        raise ValueError(f"family {family} cannot run in setting {setting}")
    base = dict(base)
    like = base.pop(LIKE, None)
    if like is not None:
        base = deep_merge(_preset_part(like, base["preset"]), base)
    return base


def overrides(spec: RunSpec, setting: str, seed: int, *, out: str, work_dir: str = "runs",
              data_dir: str | None = None, lr: float | None = None) -> dict[str, Any]:
    """The run options of one cell, shaped like RunConfig: what `harness run` would get.
    Checkpoints and metrics logs go to ``work_dir`` (git-ignored), records to ``out``; ``lr``
    is a tuned family's learning rate (one of LR_GRID)."""
    if not runnable(spec, setting):
        raise ValueError(f"{spec.key} cannot run in setting {setting}")
    cell = deep_merge(family_options(setting, spec.family),
                      {"seed": seed, "out": out, "work_dir": work_dir,
                       "routing": {"router": spec.router, "ops": list(spec.ops)}})
    if spec.leaky:
        cell["allow_leaky"] = True
    if data_dir is not None and spec.family in DATA_DIR_FAMILIES[setting]:
        cell = deep_merge(cell, {"data": {"data_dir": data_dir}})
    if lr is not None:
        cell = deep_merge(cell, {"optim": {"lr": lr}})
    return deep_merge(cell, spec.options)


def family_text(setting: str, family: str, *, short: bool = False) -> str:
    """The scale a family is measured at, in words, with the numbers of its resolved preset
    (``short``: its data and budget only)."""
    static = _STATIC_TEXT.get(setting, {}).get(family)
    if static is not None or family not in _DATA_TEXT.get(setting, {}):
        return static or ""
    from harness.core.config import resolve
    from tasks import TASKS

    options = family_options(setting, family)
    cfg = resolve(options, TASKS.get(options["data"]["task"]).presets)
    m, o, b = cfg.model, cfg.optim, cfg.budget
    cap = b.max_steps * o.batch_size * o.grad_accum * cfg.data.seq_len  # full windows
    is_tuned = family in TUNED.get(setting, ())
    short_text, data = _DATA_TEXT[setting][family]
    if short:
        budget = "to its plateau" if b.patience else f"{b.max_steps:,} steps"
        lr = "learning rate tuned" if is_tuned else f"learning rate {lr_text(o.lr)}"
        return f"{short_text}, {budget} (cap {cap:,} training tokens), {lr}"
    lrs = (f"learning rate tuned over {', '.join(lr_text(lr) for lr in LR_GRID)}" if is_tuned
           else f"learning rate {lr_text(o.lr)}")
    steps = (f"to its plateau (full validation every {b.eval_every} steps; stop once the last "
             f"{b.patience} evaluations improved the best by less than {b.min_delta:.1%}), "
             f"capped at "
             f"{b.max_steps:,} steps = {cap:,} training tokens" if b.patience
             else f"{b.max_steps:,} steps = {cap:,} training tokens")
    return (f"{data}: BPE {cfg.data.task_options.get('vocab_size')}, {m.layers} layers, "
            f"d_model {m.d_model}, context {cfg.data.seq_len}, batch {o.batch_size}, trained "
            f"{steps}; {lrs}")


def lr_text(lr: float) -> str:
    """1e-3, 2e-3, 4e-3: a learning rate as the sweep's --tune flag spells it."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def setting_text(setting: str) -> list[str]:
    """What the setting is, in words, for the top of the claims page: one line per family."""
    if setting == "paper":
        return ["paper presets on WikiText-103 (see `python -m harness run --dry-run`)"]
    families = [f for f, options in SETTINGS[setting].items() if options is not None]
    return [f"{f}: {family_text(setting, f)}" for f in families]
