"""What ``instrument()`` was asked for, as the observer of one pipeline keeps it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Settings:
    """What ``instrument()`` was asked for."""

    run_id: Callable[[], str]
    record_prompt: bool = False
    model_name: str | None = None
    model_source: str | None = None
    model_task: str | None = None
    offload_mode: str | None = None
    memory: bool = True
    nvtx: bool | None = None
