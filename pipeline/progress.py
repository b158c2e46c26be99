"""The ``wan-otel run`` progress bar on stderr: current stage and denoising step.

A generation listener: it hears records open as hooks fire (host time, when work is queued;
the GPU may trail by a step). On a terminal it redraws one line; in a log it writes a line per
stage and about every tenth of the steps, so a CI log stays short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from wan_otel import semconv
from wan_otel.pipeline.generation import Record

STAGE_LABELS = {
    semconv.SPAN_INITIALIZE: "initialize",
    semconv.SPAN_PREPROCESS: "preprocess",
    semconv.SPAN_TEXT_ENCODE: "text encode",
    semconv.SPAN_DENOISE: "denoise",
    semconv.SPAN_VAE_DECODE: "vae decode",
    semconv.SPAN_EXPORT: "export",
}
_WIDTH = 24


class ProgressBar:
    def __init__(self, total_steps: int, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._total = max(total_steps, 1)
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._start = time.monotonic()
        self._stage = "start"
        self._step = 0
        self._last_logged_step = 0

    def on_open(self, record: Record) -> None:
        label = STAGE_LABELS.get(record.name)
        if label is not None and label != self._stage:
            self._stage = label
            # The loop's first step follows at once: let it draw the denoise line.
            if record.name != semconv.SPAN_DENOISE or self._tty:
                self._draw(new_stage=True)
        elif record.name == semconv.SPAN_DENOISE_STEP:
            self._step += 1
            self._draw(new_stage=False)

    def on_close(self, record: Record) -> None:
        return None

    def _line(self) -> str:
        elapsed = time.monotonic() - self._start
        if self._stage == "denoise":
            done = min(self._step, self._total)
            filled = round(_WIDTH * done / self._total)
            bar = "#" * filled + "." * (_WIDTH - filled)
            return f"wan-otel [{self._stage}] step {done}/{self._total} [{bar}] {elapsed:.1f}s"
        return f"wan-otel [{self._stage}] {elapsed:.1f}s"

    def _draw(self, new_stage: bool) -> None:
        if self._tty:
            self._stream.write("\r\033[K" + self._line())
            self._stream.flush()
            return
        every = max(1, self._total // 10)
        due = self._step - self._last_logged_step >= every or self._step == self._total
        if new_stage or self._step == 1 or (self._stage == "denoise" and due):
            self._last_logged_step = self._step
            self._stream.write(self._line() + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
