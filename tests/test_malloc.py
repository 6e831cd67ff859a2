"""The freed-memory policy the CLI sets: what it does on glibc, its opt-out, and its record."""

import os
import platform
import subprocess
import sys

import pytest

from harness.engine.provenance import provenance

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc")


def _setting_in_fresh_process(env_value: str) -> str:
    """Before / what the CLI's main() set / after, in a fresh interpreter."""
    code = ("import sys; from harness.core.malloc import malloc_setting; "
            "before = malloc_setting(); from harness.cli.main import main; "
            "rc = main(['list']); print(rc, '|', before, '|', malloc_setting(), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, CHIAROSCURO_MALLOC=env_value))
    return out.stderr.strip().splitlines()[-1]


@glibc
def test_cli_policy_keeps_freed_memory_on_glibc_and_says_so():
    rc, before, after = (p.strip() for p in _setting_in_fresh_process("").split("|"))
    assert rc == "0"
    assert before == "system"  # nothing happens at import: only the CLI opts in
    assert after.startswith("glibc keep-freed (no mmap")


def test_cli_policy_can_be_turned_off():
    *_, after = _setting_in_fresh_process("system").split("|")
    assert after.strip() == "system (CHIAROSCURO_MALLOC=system)"


def test_records_carry_the_policy_of_the_process():
    from harness.core.malloc import malloc_setting

    assert provenance()["malloc"] == malloc_setting()
