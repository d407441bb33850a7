"""How tk's process gets memory for tensors: huge pages, and freed memory kept for the next batch.

Training and prediction allocate the same large activations batch after batch. The kernel hands
fresh memory out one zeroed page at a time: 13 ms of page faults for a fresh 47 MB tensor here
against 1.3 ms to zero one already mapped.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_BELOW = 1 << 30  # blocks under 1 GB come from the heap and go back to it when freed
TRIM_ABOVE = 2**31 - 1  # the heap returns memory to the kernel only when 2 GB of it are free
USER_SETTINGS = ("GLIBC_TUNABLES", "LD_PRELOAD")  # besides any MALLOC_* variable


def huge_pages_for_tensors() -> None:
    """Tensors of 2 MB and more on transparent huge pages (PyTorch's switch, read once, at its first
    allocation, so set before torch allocates; THP_MEM_ALLOC_ENABLE=0 opts out). A fresh 47 MB tensor
    faulted in in 3.5 ms instead of 13 ms, and a Sentiment140 training step took 10-20% less time (three
    interleaved runs of 40 steps each)."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def reuse_freed_memory() -> bool:
    """Keep freed tensor memory in the process for the next batch instead of giving it back to the kernel.

    glibc maps each block over 128 kB (up to 32 MB, as it adapts) afresh and unmaps it when freed, so
    every batch faulted its activations in again: about 50,000 page faults per 64 x 128 MiniLM forward
    pass, 0-600 with these settings, and 3-12% less time per IMDB training step (16 x 128 tokens, two
    pairs of processes). The process keeps up to its peak memory until it ends. Left alone where the user
    tunes the allocator (MALLOC_*_ variables, GLIBC_TUNABLES, an LD_PRELOAD allocator) and off glibc.
    Returns whether the settings were applied.
    """
    if not sys.platform.startswith("linux") or any(
            name.startswith("MALLOC_") or name in USER_SETTINGS for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):
            return False
        return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BELOW)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE))
    except OSError:  # no glibc (musl, ...)
        return False
