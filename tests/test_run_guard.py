"""The guard watches the whole run (issue 33): components honest while the pre-training guard
looks at fresh copies, leaky afterwards, end with their record flagged leaky and unranked, the
message naming the component and the check; honest built-ins are never flagged; the probes
change none of an honest run's numbers."""

from __future__ import annotations

from pathlib import Path

import cheaters
import pytest
import torch

from harness.cli.main import main
from harness.core.records import load_record
from tasks import TASKS, ClassificationTask, LanguageModelingTask

ROOT = Path(__file__).resolve().parents[1]


class _LM(LanguageModelingTask):
    vocab_size = 11

    def load_split(self, split):
        g = torch.Generator().manual_seed(len(split))
        return [(torch.randint(1, 11, (self.seq_len + 1,), generator=g), 0) for _ in range(16)]


class _Classes(ClassificationTask):
    vocab_size = 11
    num_classes = 3

    def load_split(self, split):
        g = torch.Generator().manual_seed(len(split))
        return [(torch.randint(1, 11, (int(torch.randint(4, self.seq_len + 1, (1,),
                                                            generator=g)),), generator=g),
                 int(torch.randint(0, 3, (1,), generator=g))) for _ in range(32)]


@pytest.fixture
def plugins():
    TASKS.add("watch-lm", _LM)
    TASKS.add("watch-classes", _Classes)
    cheaters.register()
    yield
    cheaters.unregister()
    for name in ("watch-lm", "watch-classes"):
        del TASKS._entries[name]


def _run(tmp_path: Path, task: str, router: str, ops: str, *extra: str) -> int:
    return main(["run", "--preset", "smoke", "--task", task, "--router", router, "--ops", ops,
                 "--seq-len", "16", "--max-steps", "12", "--out", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache"), *extra])


def _record(tmp_path: Path):
    (path,) = (tmp_path / "runs").glob("*.json")
    return load_record(path)


CASES = [("single", "cheat-calls", "cheat-calls"),
         ("single", "cheat-steps", "cheat-steps"),
         ("single", "cheat-backwards", "cheat-backwards"),
         ("single", "cheat-caller", "cheat-caller"),
         ("single", "cheat-batch-mean", "cheat-batch-mean"),
         ("cheat-gate", "identity,attn", "cheat-gate")]


@pytest.mark.parametrize("task,check", [("watch-lm", "causality"),
                                        ("watch-classes", "batch independence")])
@pytest.mark.parametrize("router,ops,culprit", CASES)
def test_a_component_that_leaks_once_unwatched_ends_flagged_leaky(plugins, tmp_path, capsys,
                                                                  task, check, router, ops,
                                                                  culprit):
    kind = "router" if culprit == router else "operator"
    if culprit == "cheat-batch-mean":
        check = "batch independence"  # its leak on every task
    assert _run(tmp_path, task, router, ops) == 0  # the pre-training guard saw nothing
    record = _record(tmp_path)
    assert record.leaky and record.warning_flags
    flags = [f for f in record.flags if f.startswith(f"leaky: check '{check}' failed")]
    assert flags, record.flags
    assert all(f"at fault: {kind} '{culprit}'" in f for f in flags), flags
    assert f"WARNING: leaky: check '{check}'" in capsys.readouterr().out
