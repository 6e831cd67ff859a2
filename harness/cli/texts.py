"""The descriptions and examples of the commands defined in harness/cli/main.py (the module
commands keep theirs beside their arguments, in the args.py of their own package)."""

from harness.core.paths import LOCAL_RUNS

DESCRIPTION = """\
Train and measure router x operators x task combinations: quality and honest cost (attention
FLOPs really skipped, tokens/s, memory), one result record per run, and a leaderboard."""

EPILOG = f"""\
examples:
  python -m harness run --router entropy --ops dct,attn --task listops
  python -m harness check --router entropy --ops dct,attn --task wikitext2
  python -m harness list '*attn*'

Runs write to {LOCAL_RUNS}/ (git-ignored). `python -m harness COMMAND --help` describes each."""

RUN_DESCRIPTION = f"""\
Train one router x operators x task combination, evaluate it on the full validation and test
splits (final and best-validation checkpoints), and write its result record. The preset sets
the model and budget (cpu without a GPU: about two minutes on 2 cores); every flag overrides
it. Record, checkpoints and metrics.jsonl go to --out ({LOCAL_RUNS}/ by default, git-ignored);
re-running the same command resumes or reuses the finished run."""

RUN_EPILOG = """\
examples:
  python -m harness run --router entropy --ops dct,attn --task listops
  python -m harness run --router single --ops attn --task listops --seed 1 --preset smoke
  python -m harness run --task wikitext2 --router entropy --ops dct,attn \\
      --data-dir ../shared/data/wikitext-2 --train-file wiki.valid.tokens"""

CHECK_DESCRIPTION = """\
Invariant checks of a combination on random inputs of the task's shape (vocabulary, seq_len,
causal): causality (causal tasks), batch independence, routed == dense (outputs and
gradients), finite outputs and gradients, FLOP counts against torch.utils.flop_counter, and
the conformance suite of each component. Trains nothing and reads no data set: run's data
flags are accepted (a run command works as a check) and not read. Exit status 0 only if every
check passes."""

CHECK_EPILOG = """\
examples:
  python -m harness check --router entropy --ops dct,attn --task listops
  python -m harness check --router entropy --ops dct,attn --task wikitext2 --preset smoke
  python -m harness check --router learned --ops dct,rbf,attn --d-model 64"""

LIST_DESCRIPTION = """\
List the registered operators, routers and tasks with their origin (built-in or the plugin's
distribution) and what they declare (causal form, query subsets, leaky, ...). Descriptions
come from the description= given at registration, else the class docstring's first line."""

LIST_EPILOG = """\
examples:
  python -m harness list
  python -m harness list '*attn*' entropy
  python -m harness list --json"""


DESCRIPTION_SOURCE = ("origin: 'built-in' or the plugin's distribution and version. description: "
                      "the description= given at registration, else the first line of the "
                      "class docstring.")
