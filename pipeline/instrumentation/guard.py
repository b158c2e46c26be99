"""Containment of errors in wan-otel's own instrumentation code.

Telemetry must never break inference: every piece of our code that runs inside a hook or a
wrapper goes through ``Guard.call``. An exception there is counted, logged once per site (a
broken hook would otherwise log on every step) and swallowed; the model's own call goes on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

_log = logging.getLogger("wan_otel.pipeline")

T = TypeVar("T")
R = TypeVar("R")


class Guard:
    """Runs instrumentation callables; counts and logs (once per site) what they raise."""

    def __init__(self, on_error: Callable[[str], None] | None = None) -> None:
        """``on_error(site)`` is told of every error (the instrumentation-errors counter)."""
        self.errors = 0
        self._on_error = on_error
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: object) -> T | None:
        try:
            return fn(*args)
        except Exception as exc:
            self.record(getattr(fn, "__qualname__", repr(fn)), exc)
            return None

    def around(
        self,
        begin: Callable[[], T | None],
        end: Callable[[T | None, BaseException | None], object],
        call: Callable[[], R],
    ) -> R:
        """``call()`` with our ``begin`` before it and ``end(token, error)`` after it, both
        guarded: the model's result, or its exception re-raised as it was."""
        token = self.call(begin)
        try:
            result = call()
        except BaseException as exc:
            self.call(end, token, exc)
            raise
        self.call(end, token, None)
        return result

    def record(self, site: str, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            first = site not in self._seen
            self._seen.add(site)
        if self._on_error is not None:
            with contextlib.suppress(Exception):  # a broken counter must not break the guard
                self._on_error(site)
        if first:
            _log.warning(
                "instrumentation error in %s (telemetry may be incomplete; inference "
                "continues): %s: %s",
                site,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
