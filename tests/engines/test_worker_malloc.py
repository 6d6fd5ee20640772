"""A Ray worker keeps the memory it frees (util.malloc.keep_freed_memory): a large temporary
allocated again after being freed reuses the heap instead of faulting in fresh pages. Checked
against the kernel's count of the process's minor page faults (getrusage), in a fresh interpreter
each, since the setting is per process and stays."""
import subprocess
import sys

import pytest

from tests.conftest import REPO

MIB = 48  # above glibc's largest dynamic mmap threshold (32 MiB), below KEEP_BELOW
CODE = f"""
import resource, sys
from resformer_deploy.util.malloc import keep_freed_memory
kept = sys.argv[1] == "kept" and keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = b"x" * ({MIB} << 20); del b  # the first one faults in either case
f = faults()
b = b"y" * ({MIB} << 20); del b
print(int(kept), faults() - f)
"""


def faults_of_second_allocation(mode: str):
    out = subprocess.run([sys.executable, "-c", CODE, mode], cwd=REPO, capture_output=True, text=True, check=True)
    kept, faults = map(int, out.stdout.split())
    return bool(kept), faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    kept, faults_kept = faults_of_second_allocation("kept")
    default, faults_default = faults_of_second_allocation("default")
    assert kept and not default
    # glibc's default: a fresh mapping, one fault per page (4 KiB; 2 MiB where THP is "always")
    assert faults_default >= MIB // 2
    assert faults_kept < MIB // 2 and faults_kept * 100 < faults_default
