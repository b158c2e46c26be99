"""SIGTERM and SIGINT during a run: stop the generation, keep its spans, exit conventionally.

Kubernetes sends SIGTERM on eviction, rollout or preemption, then SIGKILL after the grace
period. While a run is generating, the first of these signals raises ``RunInterrupted`` in the
main thread (between two Python instructions of the pipeline, so within one operation); the
run scope records where it arrived and writes every span before the process exits with
``128 + signal``. While a run is finishing (writing its spans) a signal does not interrupt it:
it is remembered and the exit code still says it came.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(BaseException):
    """A signal stopped the run (a ``BaseException``, like ``KeyboardInterrupt``, so that
    ``except Exception`` in user code does not swallow it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class SignalGuard:
    """Turns the handled signals into ``RunInterrupted`` while armed."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._armed = False

    def arm(self) -> None:
        self._armed = self.received is None

    def disarm(self) -> None:
        self._armed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if self._armed and first:
            self._armed = False
            raise RunInterrupted(signum)

    @property
    def exit_code(self) -> int | None:
        return None if self.received is None else 128 + self.received


@contextlib.contextmanager
def signals_interrupt() -> Iterator[SignalGuard]:
    """Install the guard's handlers (main thread only; elsewhere the guard stays inert)."""
    guard = SignalGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {s: signal.signal(s, guard._handle) for s in HANDLED}
    try:
        yield guard
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
