"""tk: fine-tune and evaluate text classifiers from a tasks.toml file."""

import os

import pluggy

# Tensors of 2 MB and more on transparent huge pages (PyTorch's switch, read once, at its first allocation;
# set THP_MEM_ALLOC_ENABLE=0 to opt out). Each training step allocates its large tensors afresh, and on 4 kB
# pages the kernel faults in and zeroes every page first: 13 ms for MiniLM's 47 MB embedding gradient here,
# 3.5 ms on huge pages; a Sentiment140 step took 10-20% less time (three interleaved runs of 40 steps each).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

hookimpl = pluggy.HookimplMarker("tk")

__all__ = ["hookimpl"]
