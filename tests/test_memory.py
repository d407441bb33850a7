"""The process keeps freed tensor memory for the next batch (toolkit.memory)."""

import os
import subprocess
import sys

import pytest

REFAULTS = """
import resource, sys, torch
from toolkit.memory import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "tk" else False
torch.zeros(2**24)  # a batch's 64 MB, freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.zeros(15 * 2**20)  # the next batch's 60 MB
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults_of_the_next_batch(mode: str, **env: str) -> tuple[str, int]:
    environment = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0", **env}  # 4 kB pages: 15,360 per fresh 60 MB
    for name in list(environment):  # the allocator settings of whoever runs the tests
        if (name.startswith("MALLOC_") or name in ("GLIBC_TUNABLES", "LD_PRELOAD")) and name not in env:
            del environment[name]
    out = subprocess.run([sys.executable, "-c", REFAULTS, mode], capture_output=True, text=True, env=environment,
                         check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_freed_batch_is_reused_without_faulting_its_pages_in_again():
    applied, faults = page_faults_of_the_next_batch("tk")
    assert applied == "True" and faults < 1000
    _, untuned = page_faults_of_the_next_batch("glibc default")
    assert untuned > 10_000  # what tk saves: the next batch faulted in afresh
    applied, faults = page_faults_of_the_next_batch("tk", MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == "False" and faults > 10_000  # the user's own allocator settings are left alone
