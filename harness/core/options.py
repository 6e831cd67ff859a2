"""The run's options, declared once: path in the config, type, default, bounds, help, flag.

Both the pydantic models of the run configuration (harness/core/config.py) and the flags of
``run`` and ``check`` (harness/core/flags.py, called by harness/cli/main.py) are built from
``OPTIONS``, so a new option is one entry here. Plain data: the command line imports this
module to build its parser, and ``--help`` must not wait for pydantic or torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from registry import ConfigError, did_you_mean

# The default share of tokens for the most expensive operator: the paper's "62.5% fewer
# attention FLOPs" read as 37.5% of tokens. Routers and the bench read it from here.
ATTN_FRACTION = 0.375

# the model's maximum sequence length when neither the flags nor the task's preset set one
DEFAULT_SEQ_LEN = 256

# The data order of epoch e is seeded with seed * SEED_STRIDE + e (harness/engine/data.py):
# seeds within +-MAX_SEED keep that within int64 for a million epochs (torch refuses more).
SEED_STRIDE = 1_000_003
MAX_SEED = 2**63 // SEED_STRIDE - 1

# How `check` treats a flag of `run`: it builds the model from it, or it accepts it (so a run
# command turned into a check works) and reads nothing from it, or it does not take it.
CHECK_USES, CHECK_IGNORES, RUN_ONLY = "uses", "ignores", ""


@dataclass(frozen=True)
class Option:
    """One option: where its value lives in the config and how a user sets it."""

    path: str  # dotted place in the config: "model.layers"; top level: "seed"
    type: type = str  # int | float | str | bool | dict (the value, or each item of a list)
    default: Any = None
    help: str = ""
    metavar: str | None = None
    group: str = ""  # the --help section it is listed in
    flag: str | None = ""  # "": --<name with dashes>; None: no flag (config files only)
    many: bool = False  # a list; on the command line one comma-separated value
    nullable: bool = False  # None is a value: "not set" (default_text says what then)
    choices: tuple[Any, ...] = ()
    gt: float | None = None  # bounds (of each item, for a list)
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    default_text: str | None = None  # the help's words for the default, where the value says little
    key_depth: int = 0  # dict options: 1 takes KEY=VALUE, 2 takes OUTER.KEY=VALUE; repeatable
    check: str = RUN_ONLY  # CHECK_USES | CHECK_IGNORES | RUN_ONLY
    in_digest: bool = True  # False: where or how it runs, not what it computes
    added: bool = False  # added after records were committed: at its default, out of the digest
    folder: bool = False  # names a folder: an existing file there is refused up front
    aliases: tuple[str, ...] = ()  # deprecated spellings of the flag, still accepted

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def section(self) -> str:
        """The part of the path before the name ("" at the top level)."""
        return self.path.rpartition(".")[0]

    @property
    def flag_name(self) -> str | None:
        if self.flag is None:
            return None
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        """The argparse attribute of its flag."""
        return (self.flag_name or self.path).lstrip("-").replace("-", "_").replace(".", "_")


WHAT, MODEL, ROUTING, DATA, OPTIM, WHERE = ("what to run", "model", "routing", "data",
                                            "optimisation and budget", "where")

# Listed in --help order. Top-level options and sections become RunConfig's fields in this
# order; an option under a dict option ("data.task_options.train_file") is a flag that sets
# that key, not a field. `{presets}` and `{local_runs}` in help texts are filled in by the CLI.
OPTIONS: tuple[Option, ...] = (
    Option("routing.router", str, "entropy", "router name, see `python -m harness list`",
           group=WHAT, check=CHECK_USES),
    Option("routing.ops", str, ("dct", "attn"), "comma-separated operator names",
           metavar="OP[,OP]", group=WHAT, many=True, check=CHECK_USES),
    Option("data.task", str, "listops", "task name", group=WHAT, check=CHECK_USES),
    Option("preset", str, None, "{presets}: model size and budget; every flag overrides it",
           metavar="NAME", group=WHAT, nullable=True, check=CHECK_USES,
           default_text="cpu without a GPU, paper with one"),
    Option("seed", int, 0, "repeats of a configuration differ only in it", metavar="N",
           group=WHAT,
           ge=-MAX_SEED, le=MAX_SEED, check=CHECK_USES, in_digest=False),
    Option("allow_leaky", bool, False,
           "allow variants that see future tokens or other examples; the record is marked "
           "leaky and never ranked above honest ones", group=WHAT),
    # model
    Option("model.layers", int, 2, "mixing layers", metavar="N", group=MODEL, gt=0,
           check=CHECK_USES),
    Option("model.d_model", int, 128, "width", metavar="D", group=MODEL, gt=0, check=CHECK_USES),
    Option("model.heads", int, 4, "attention heads", metavar="H", group=MODEL, gt=0,
           check=CHECK_USES),
    Option("model.mlp_ratio", float, 4.0, "MLP width / d_model", metavar="R", group=MODEL,
           gt=0, check=CHECK_USES),
    Option("model.dropout", float, 0.0, "dropout probability", metavar="P", group=MODEL, ge=0,
           lt=1, check=CHECK_USES),
    Option("data.seq_len", int, None, "maximum sequence length", metavar="N", group=MODEL,
           gt=0, nullable=True, check=CHECK_USES,
           default_text=f"the task's preset entry (listops cpu: 128), else {DEFAULT_SEQ_LEN}"),
    # routing
    Option("routing.attn_fraction", float, ATTN_FRACTION,
           "target share of tokens for the most expensive operator", metavar="F", group=ROUTING,
           ge=0, le=1, check=CHECK_USES),
    # routed: operators that can, compute only the tokens routed to them (work really
    # skipped); dense: every operator computes every token and the router selects
    Option("routing.execution", str, "routed",
           "routed skips work for unrouted tokens; dense computes every operator everywhere "
           "and selects, the reference", group=ROUTING, choices=("routed", "dense"),
           check=CHECK_USES),
    Option("routing.aux_weight", float, 0.01, "weight of the routers' auxiliary losses",
           metavar="W", group=ROUTING, ge=0, check=CHECK_USES),
    Option("routing.router_options", dict, None, "a router option, value parsed as JSON; "
           "repeatable", flag="--router-option", metavar="KEY=VALUE", group=ROUTING,
           key_depth=1, check=CHECK_USES),
    Option("routing.op_options", dict, None, "an operator option, e.g. dct.decay=2; repeatable",
           flag="--op-option", metavar="OP.KEY=VALUE", group=ROUTING, key_depth=2,
           check=CHECK_USES),
    # data: the task's options, and shortcuts for the common ones
    Option("data.task_options", dict, None, "a task option, value parsed as JSON; repeatable",
           flag="--task-option", metavar="KEY=VALUE", group=DATA, key_depth=1,
           check=CHECK_USES),
    Option("data.task_options.tokenizer", str, None, "text tasks: bpe | word | bytes",
           metavar="NAME", group=DATA, check=CHECK_USES),
    Option("data.task_options.vocab_size", int, None,
           "text tasks: tokenizer vocabulary (wikitext and imdb bpe: 8192)", metavar="V",
           group=DATA, check=CHECK_USES),
    Option("data.data_dir", str, None, "local copy of the task's files", metavar="DIR",
           group=DATA, nullable=True, check=CHECK_IGNORES, default_text="generated, or the hub"),
    Option("data.cache_dir", str, ".cache/chiaroscuro", "tokenizers and encoded splits",
           metavar="DIR", group=DATA, check=CHECK_IGNORES),
    *(Option(f"data.task_options.{split}_file", str, None,
             f"wikitext: the {split} split's text file", metavar="FILE", group=DATA,
             check=CHECK_IGNORES) for split in ("train", "valid", "test")),
    Option("data.task_options.eval_stride", int, None,
           "wikitext: sliding-window stride at evaluation", metavar="N", group=DATA,
           check=CHECK_IGNORES, default_text="seq_len/2"),
    Option("data.task_options.train_lines", int, None,
           "wikitext, shakespeare: train on the train split's first N lines only (data-"
           "limited: runs reach their plateau sooner)", metavar="N", group=DATA,
           check=CHECK_IGNORES, default_text="all"),
    Option("data.length_bucketing", bool, True,
           "batches of similar-length examples (less padding)", group=DATA),
    # optimisation and budget
    Option("optim.lr", float, 1e-3, "peak learning rate (AdamW)", group=OPTIM, gt=0),
    Option("optim.weight_decay", float, 0.01, "AdamW weight decay", metavar="W", group=OPTIM,
           ge=0),
    Option("optim.beta1", float, 0.9, "AdamW beta1", metavar="B", group=OPTIM, ge=0, lt=1),
    Option("optim.beta2", float, 0.98, "AdamW beta2", metavar="B", group=OPTIM, ge=0, lt=1),
    Option("optim.warmup_steps", int, 50, "linear warm-up, then cosine decay", metavar="N",
           group=OPTIM, ge=0),
    # wsd: a run to its plateau decays when it gets there, not on the cap's clock
    Option("optim.schedule", str, "cosine",
           "cosine: decay to a tenth of the peak over --max-steps; wsd: the peak rate until the "
           "plateau rule (--patience) fires or the cap leaves just enough steps, then a linear "
           "cool-down over --cooldown x the steps so far, and the run ends", metavar="NAME",
           group=OPTIM, choices=("cosine", "wsd"), added=True),
    Option("optim.cooldown", float, 0.2, "wsd: the cool-down's length, a share of the steps "
           "before it", metavar="R", group=OPTIM, gt=0, le=1, added=True),
    Option("optim.batch_size", int, 32, "global batch (split over processes and --grad-accum)",
           metavar="B", group=OPTIM, gt=0),
    Option("optim.grad_accum", int, 1, "micro-batches per step", metavar="N", group=OPTIM,
           gt=0),
    Option("optim.grad_clip", float, 1.0, "gradient norm clip, 0 disables", metavar="C",
           group=OPTIM, ge=0),
    Option("budget.max_steps", int, 1000, "optimiser steps", metavar="N", group=OPTIM, gt=0),
    # the schedule still runs over max_steps
    Option("budget.max_time", float, None, "stop after this much training time",
           metavar="SECONDS", group=OPTIM, gt=0, nullable=True, default_text="none"),
    Option("budget.max_tokens", int, None, "stop after this many real training tokens",
           metavar="N", group=OPTIM, gt=0, nullable=True, default_text="none"),
    Option("budget.eval_every", int, 200, "steps between evaluations on a validation subset",
           metavar="N", group=OPTIM, gt=0),
    Option("budget.eval_batches", int, None,
           "validation batches per evaluation during training; the final evaluation uses the "
           "full split", metavar="N", group=OPTIM, gt=0, nullable=True, default_text="all"),
    # Capped only where a run must take seconds (the smoke preset): the record's split sizes
    # and the run summary then say "capped", and the board never ranks it against full splits.
    Option("budget.final_eval_batches", int, None,
           "batches of each split in the final evaluation (smoke caps it; the summary says "
           "so)", metavar="N", group=OPTIM, gt=0, nullable=True, added=True,
           default_text="all: the full splits"),
    # To the plateau: stop once `patience` evaluations in a row have not improved the
    # validation metric by more than `min_delta` (relative) over the best so far.
    Option("budget.patience", int, None,
           "to the plateau: stop after this many evaluations without an improvement by more "
           "than --min-delta", metavar="N", group=OPTIM, gt=0, nullable=True,
           default_text="none: --max-steps"),
    Option("budget.min_delta", float, 0.0,
           "relative improvement of the validation metric that resets --patience", metavar="R",
           group=OPTIM, ge=0, lt=1, added=True),
    Option("budget.ckpt_every", int, 500, "steps between checkpoints", metavar="N", group=OPTIM,
           gt=0, in_digest=False),
    Option("budget.log_every", int, 10, "steps between metrics.jsonl lines", metavar="N",
           group=OPTIM, gt=0, in_digest=False),
    Option("compile", bool, False, "torch.compile the model (pays on GPU, not on CPU)",
           group=OPTIM, in_digest=False),
    # where
    Option("device", str, "auto", "auto | cpu | cuda | cuda:N", group=WHERE, in_digest=False,
           default_text="auto: CUDA if present"),
    Option("threads", int, None, "CPU intra-op threads", metavar="N", group=WHERE, gt=0,
           nullable=True, in_digest=False, default_text="torch's"),
    Option("out", str, None, "folder for the result record, checkpoints and metrics.jsonl; "
           "re-running on the same --out resumes", metavar="DIR", group=WHERE, nullable=True,
           in_digest=False, folder=True,
           default_text="{local_runs}/, git-ignored; the committed records are results/runs"),
    Option("work_dir", str, None, "checkpoints and metrics.jsonl elsewhere", metavar="DIR",
           group=WHERE, nullable=True, in_digest=False, folder=True,
           default_text="the --out folder"),
    # a view of metrics.jsonl (harness/runner/tracking.py), not a result
    Option("tracker", str, None, "also log metrics to TensorBoard or W&B (optional extras: "
           "pip install -e \".[tensorboard]\" or \".[wandb]\")", group=WHERE, nullable=True,
           choices=("tensorboard", "wandb"), in_digest=False),
)

# The config's sections, in RunConfig's order.
SECTIONS = ("model", "routing", "data", "optim", "budget")


def is_field(o: Option, options: Sequence[Option]) -> bool:
    """A field of its section's model; False for a key set inside a dict option."""
    return not any(d.type is dict and o.path.startswith(d.path + ".") for d in options)


def fields_of(section: str, options: Sequence[Option] = OPTIONS) -> list[Option]:
    """The options that are fields of one section ("" for the top level), in order."""
    return [o for o in options if o.section == section and is_field(o, options)]


def value_at(config: Any, path: str) -> Any:
    """The value of an option in a resolved config: value_at(cfg, 'model.layers')."""
    for part in path.split("."):
        config = config[part] if isinstance(config, dict) else getattr(config, part)
    return config


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def nested(path: str, value: Any) -> dict[str, Any]:
    """'model.layers', 4 -> {'model': {'layers': 4}}."""
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def check_keys(table: dict[str, Any], where: str, options: Sequence[Option] = OPTIONS) -> None:
    """Refuse, in one line with the closest known name, a key of a nested options table
    (a config file, a sweep's [base], --set) that is no option. A dict option takes any key."""
    known = {o.path: o for o in options if is_field(o, options)}
    sections = {o.section for o in known.values() if o.section}

    def walk(part: dict[str, Any], prefix: str) -> None:
        for key, value in part.items():
            path = f"{prefix}{key}"
            if path in sections and isinstance(value, dict):
                walk(value, path + ".")
            elif path not in known and path not in sections:
                while isinstance(value, dict) and value:  # a misspelt section: name a leaf
                    key, value = next(iter(value.items()))
                    path = f"{path}.{key}"
                raise ConfigError(f"{where}: unknown option '{path}'"
                                  f"{did_you_mean(path, list(known))}")

    walk(table, "")
