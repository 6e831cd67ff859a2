"""MAD's protocol for one configuration: every difficulty setting of the six tasks, each over
MAD's learning rate x weight decay grid, then MAD's score from the records.

    python sweeps/mad.py [--baseline-only] [--score] [--dry-run] [SWEEP OPTIONS ...]

Every setting is one ``python -m harness sweep --file sweeps/mad.toml --tasks TASK ...``
call with MAD's grid as ``--tune`` axes at one seed (so every cell runs), and any other
options passed through (``--routers``, ``--ops``, ``--preset``, ``--out``, ``--jobs``,
``--set``). A setting is MAD's baseline (the task's `paper` preset) with one entry changed,
as in MAD-lab's configs/tasks/*.yml. At the `paper` preset, a setting with fewer training
examples trains for fewer steps: MAD trains every setting for 200 epochs at batch 128.
``--score`` reads the records in ``--out`` (default runs/) and prints the score
(harness/report/mad_score.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.mad_common import MAD_LRS, MAD_TASKS, MAD_WEIGHT_DECAYS  # noqa: E402

# MAD-lab's configs/tasks/*.yml "changes": each varies one entry of the baseline
TRAIN_SIZES = [6400, 3200, 1600, 800]
CHANGES: dict[str, dict[str, list]] = {
    "in-context-recall": {"vocab_size": [32, 64, 128], "seq_len": [256, 512, 1024],
                          "n_train": TRAIN_SIZES},
    "fuzzy-in-context-recall": {"vocab_size": [32, 64, 128], "seq_len": [256, 512, 1024],
                                "n_train": TRAIN_SIZES},
    "noisy-in-context-recall": {"vocab_size": [48, 80, 144], "seq_len": [256, 512, 1024],
                                "n_train": TRAIN_SIZES, "frac_noise": [0.4, 0.6, 0.8]},
    "selective-copying": {"vocab_size": [32, 64, 128], "seq_len": [512, 1024],
                          "n_train": TRAIN_SIZES, "n_copy": [32, 64, 96]},
    "compression": {"vocab_size": [32, 64, 128], "seq_len": [64, 128, 256],
                    "n_train": TRAIN_SIZES},
    "memorization": {"vocab_size": [512, 1024, 2048, 4096, 8192]},
}
EPOCHS, MAD_BATCH = 200, 128


def settings(task: str, preset: str, baseline_only: bool) -> list[list[str]]:
    """The --set options of each difficulty setting of a task, the baseline first."""
    out: list[list[str]] = [[]]
    if baseline_only:
        return out
    for key, values in CHANGES[task].items():
        for value in values:
            where = "data.seq_len" if key == "seq_len" else f"data.task_options.{key}"
            extra = [f"{where}={value}"]
            if key == "n_train" and preset == "paper":
                extra.append(f"budget.max_steps={EPOCHS * value // MAD_BATCH}")
            out.append(extra)
    return out


def option(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args[:-1] else default


def main(argv: list[str]) -> int:
    baseline_only = "--baseline-only" in argv
    score = "--score" in argv
    passed = [a for a in argv if a not in ("--baseline-only", "--score")]
    if score:
        from harness.core.records import load_records
        from harness.report.mad_score import mad_scores, render

        records, bad = load_records(Path(option(passed, "--out", "runs")))
        scores, problems = mad_scores(records)
        for line in bad + problems:
            print(line, file=sys.stderr)
        print(render(scores), end="")
        return 0
    preset = option(passed, "--preset", "paper")
    tune = ["--tune", "optim.lr=" + ",".join(map(str, MAD_LRS)),
            "--tune", "optim.weight_decay=" + ",".join(map(str, MAD_WEIGHT_DECAYS))]
    worst = 0
    for task in MAD_TASKS:
        for extra in settings(task, preset, baseline_only):
            cmd = [sys.executable, "-m", "harness", "sweep", "--file", "sweeps/mad.toml",
                   "--tasks", task, *(a for e in extra for a in ("--set", e)), *tune, *passed]
            print("+", " ".join(cmd[1:]), flush=True)
            worst = max(worst, subprocess.call(cmd, cwd=ROOT))
    return worst


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
