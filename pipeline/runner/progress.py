"""The ``wan-otel run`` progress bar on stderr: each stage with its own time, and the steps.

A generation listener: it hears records open and close as hooks fire (host time, when work is
queued; the GPU may trail by a step). A stage's line shows the time since that stage began,
printed as the report prints durations (``42.1 ms``, ``3.20 s``); a step counts when it ends,
so ``step k/k`` appears when the last step is done. A finished stage keeps its line with its
time. On a terminal the current stage redraws one line in place; in a
log each stage writes a line when it begins and when it ends, and the loop about every tenth
of the steps, so a CI log stays short.

Preprocess is provisional while it runs (the pipeline opens it without telling listeners: it
may turn out to be the gap between the prompt and the negative prompt), so it appears when it
ends, timed from the end of the stage before it. A stage that ends and opens again (text
encoding, for the negative prompt) keeps one line: a finished line is written only when the
next stage begins.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.generation import Record
from wan_otel.report.formatting import duration

_WIDTH = 24
_RUNNING = "..."


class ProgressBar:
    def __init__(
        self,
        total_steps: int,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._total = max(total_steps, 1)
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._mark = clock()
        """When the last stage began or ended: where a stage nobody saw begin starts."""
        self._record: Record | None = None
        """The current stage's record (running, or finished and not yet written)."""
        self._label = ""
        self._began = self._mark
        self._ended: float | None = None
        self._failed: str | None = None
        self._steps = 0
        self._live = False
        """A terminal line is drawn and not yet ended with a newline."""

    # -- listener -----------------------------------------------------------------------------

    def on_open(self, record: Record) -> None:
        stage = semconv.stage_for_span(record.name)
        if stage is None:
            return
        now = self._clock()
        if record is self._record and self._ended is not None:
            self._ended = None  # the same stage again (text encoding resumes): one line
            self._draw_running()
            return
        self._finish_line()
        self._record, self._label = record, stage.label
        self._began, self._ended, self._failed = now, None, None
        self._steps = 0
        self._mark = now
        self._draw_running()
        if not self._tty:
            self._write(f"wan-otel [{self._label}] {_RUNNING}")

    def on_close(self, record: Record) -> None:
        if record.name == semconv.SPAN_DENOISE_STEP and record.parent is self._record:
            if record.error_type is not None:
                return  # a failed step is not done; the loop's line says it failed
            self._steps += 1
            self._draw_running()
            every = max(1, self._total // 10)
            due = self._steps == 1 or self._steps % every == 0
            # The last step is written by the loop's own line when the loop ends.
            if not self._tty and due and self._steps < self._total:
                self._write(self._line())
            return
        stage = semconv.stage_for_span(record.name)
        if stage is None:
            return
        now = self._clock()
        if record is not self._record:  # a stage nobody saw begin (preprocess)
            self._finish_line()
            self._record, self._label = record, stage.label
            self._began, self._steps = self._mark, 0
        self._ended = now
        self._failed = record.error_type
        self._mark = now
        self._draw_running()

    def close(self) -> None:
        """The run is over: write the last stage's line and end the terminal line."""
        self._finish_line()

    # -- drawing ------------------------------------------------------------------------------

    def _line(self) -> str:
        head = f"wan-otel [{self._label}]"
        if self._ended is not None:
            elapsed = duration(self._ended - self._began)
        elif self._is_loop():  # steps come in while it runs: show its time so far
            elapsed = duration(self._clock() - self._began)
        else:
            elapsed = _RUNNING
        if self._is_loop():
            done = min(self._steps, self._total)
            filled = round(_WIDTH * done / self._total)
            bar = "#" * filled + "." * (_WIDTH - filled)
            head += f" step {done}/{self._total} [{bar}]"
        failed = f" failed ({self._failed})" if self._failed else ""
        return f"{head} {elapsed}{failed}"

    def _is_loop(self) -> bool:
        return self._record is not None and self._record.name == semconv.SPAN_DENOISE

    def _draw_running(self) -> None:
        if self._tty and self._record is not None:
            self._stream.write("\r\033[K" + self._line())
            self._stream.flush()
            self._live = True

    def _finish_line(self) -> None:
        """Write the finished stage's line for good (once), and end the terminal line."""
        if self._record is not None and self._ended is not None:
            if self._tty:
                self._stream.write("\r\033[K" + self._line() + "\n")
                self._stream.flush()
            else:
                self._write(self._line())
            self._record = None
        elif self._tty and self._live:
            self._stream.write("\n")
            self._stream.flush()
        self._live = False

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()
