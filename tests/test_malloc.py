"""The freed-memory policy the CLI sets: what it does on glibc, its opt-out, and its record."""

import os
import platform
import subprocess
import sys

import pytest

from harness.results.records import provenance

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc")


def _setting_in_fresh_process(env_value: str | None) -> str:
    code = ("from harness.engine.malloc import keep_freed_memory, malloc_setting; "
            "before = malloc_setting(); print(before, '|', keep_freed_memory(), '|', "
            "malloc_setting())")
    env = None
    if env_value is not None:
        env = dict(os.environ, CHIAROSCURO_MALLOC=env_value)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    return out.stdout.strip()


@glibc
def test_cli_policy_keeps_freed_memory_on_glibc_and_says_so():
    before, set_to, after = (p.strip() for p in _setting_in_fresh_process(None).split("|"))
    assert before == "system"  # nothing happens at import: only the CLI opts in
    assert set_to.startswith("glibc keep-freed") and after == set_to


def test_cli_policy_can_be_turned_off():
    _, set_to, _ = _setting_in_fresh_process("system").split("|")
    assert set_to.strip() == "system (CHIAROSCURO_MALLOC=system)"


def test_records_carry_the_policy_of_the_process():
    from harness.engine.malloc import malloc_setting

    assert provenance()["malloc"] == malloc_setting()
