"""What one tk serve process accepts and how it batches: the defaults of tk serve's options (docs/deploy.md)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

ENVIRONMENT = "TK_SERVE_SETTINGS"  # how --workers hands the settings to each worker process


@dataclass(frozen=True)
class ServeSettings:
    folder: str  # a run folder, or an export folder tk export wrote
    token: str | None = None  # with one, every endpoint but /health needs "Authorization: Bearer TOKEN"
    max_batch: int = 32  # texts in one forward pass, from however many requests
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others to join it
    max_texts: int = 256  # texts in one request
    max_body_bytes: int = 1_048_576  # a request body's size (1 MiB)

    def to_environment(self) -> None:
        os.environ[ENVIRONMENT] = json.dumps(asdict(self))

    @classmethod
    def from_environment(cls) -> ServeSettings:
        return cls(**json.loads(os.environ[ENVIRONMENT]))
