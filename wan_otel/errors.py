"""The one error type for expected bad input, and the exit statuses the CLI returns."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Process exit codes of every ``wan-otel`` command."""

    OK = 0
    ERROR = 1
    """An unexpected failure (a bug): the traceback is shown."""
    REGRESSION = 1
    """``wan-otel compare``: run B is worse than run A beyond the tolerance (a CI gate)."""
    BAD_INPUT = 2
    """Expected bad input: unknown run id, unreadable store, bad flags, unreachable backend."""


class WanOtelError(Exception):
    """Expected bad input. The CLI prints ``wan-otel: <message>`` on one line and exits 2.

    The message names the file, line, field or id at fault.
    """
