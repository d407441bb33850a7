"""tk: fine-tune and evaluate text classifiers from a tasks.toml file."""

import pluggy

hookimpl = pluggy.HookimplMarker("tk")

__all__ = ["hookimpl"]
