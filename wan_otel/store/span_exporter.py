"""An OpenTelemetry span exporter that writes the local run store.

Spans are routed by their ``wan.run.id`` attribute to ``<store>/<run id>/spans.jsonl`` (one
OTLP JSON payload a line, appended). Files are buffered and flushed when the run's root span
ends, on ``force_flush`` and on ``shutdown``; the root span's end also writes ``run.json``.
Spans with no run id go to ``<store>/_unassigned/``. Needs ``opentelemetry-sdk``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from wan_otel import semconv
from wan_otel.store.otlp_json import encode_spans
from wan_otel.store.run_store import SPANS_FILE, SUMMARY_FILE, check_run_id

_log = logging.getLogger(__name__)
UNASSIGNED = "_unassigned"


def run_summary(root: ReadableSpan) -> dict[str, Any]:
    """The ``run.json`` line for ``wan-otel runs``, from the run's root span."""
    attrs = root.attributes or {}
    start, end = root.start_time or 0, root.end_time or 0
    width, height = attrs.get(semconv.REQUEST_WIDTH), attrs.get(semconv.REQUEST_HEIGHT)
    return {
        "run_id": attrs.get(semconv.RUN_ID),
        "start_ns": start,
        "model": attrs.get(semconv.MODEL_NAME),
        "resolution": f"{width}x{height}" if width and height else None,
        "num_frames": attrs.get(semconv.REQUEST_NUM_FRAMES),
        "num_steps": attrs.get(semconv.REQUEST_NUM_STEPS),
        "total_s": (end - start) / 1e9,
        "status": "error" if root.status.status_code.value == 2 else "ok",
    }


class RunStoreSpanExporter(SpanExporter):
    """Appends each span to its run's ``spans.jsonl`` under ``root``."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._files: dict[str, IO[str]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _folder(self, run_id: str) -> str:
        try:
            return check_run_id(run_id)
        except Exception:
            return UNASSIGNED

    def _file(self, folder: str) -> IO[str]:
        handle = self._files.get(folder)
        if handle is None:
            path = self._root / folder / SPANS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._files[folder] = path.open("a", encoding="utf-8")
        return handle

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed:
            return SpanExportResult.FAILURE
        groups: dict[str, list[ReadableSpan]] = {}
        for span in spans:
            run_id = (span.attributes or {}).get(semconv.RUN_ID)
            folder = self._folder(str(run_id)) if run_id is not None else UNASSIGNED
            groups.setdefault(folder, []).append(span)
        try:
            with self._lock:
                for folder, group in groups.items():
                    line = json.dumps(encode_spans(group), separators=(",", ":"))
                    self._file(folder).write(line + "\n")
                    for span in group:
                        # The root span ends last: the run is complete, close its file.
                        if span.name == semconv.SPAN_GENERATE and folder != UNASSIGNED:
                            self._finish_run(folder, span)
        except OSError as exc:
            _log.warning("wan-otel run store: cannot write spans: %s", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _finish_run(self, folder: str, root: ReadableSpan) -> None:
        handle = self._files.pop(folder, None)
        if handle is not None:
            handle.close()  # flushes: the run is over
        summary = json.dumps(run_summary(root), separators=(",", ":"))
        (self._root / folder / SUMMARY_FILE).write_text(summary + "\n", encoding="utf-8")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            for handle in self._files.values():
                handle.flush()
        return True

    def shutdown(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()
            self._closed = True
