"""tk: fine-tune and evaluate text classifiers from a tasks.toml file."""

import pluggy

from toolkit.memory import huge_pages_for_tensors

huge_pages_for_tensors()  # before torch allocates anything

hookimpl = pluggy.HookimplMarker("tk")

__all__ = ["hookimpl"]
