"""An OpenTelemetry span exporter that writes the local run store as spans end.

Spans are routed by their ``wan.run.id`` attribute to their run's spans file (this process's
own file: ``writer`` names it for the other ranks of a multi-GPU run). Every export call is one
write and one flush, so what was exported is on disk even if the process is killed next; with a
``BatchSpanProcessor`` in front (a short schedule delay), no span costs I/O on the thread that
ends it. The root span's end replaces the run's summary with its outcome and closes the file.
Spans with no valid run id go to ``<store>/_unassigned/``. Needs ``opentelemetry-sdk``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from wan_otel import semconv
from wan_otel.errors import WanOtelError
from wan_otel.store.otlp_json import encode_spans
from wan_otel.store.run_store import RunStore, file_name
from wan_otel.store.summary import RunSummary, end_detail, summary_from_attributes

_log = logging.getLogger(__name__)
UNASSIGNED = "_unassigned"


def root_summary(root: ReadableSpan, run_id: str) -> RunSummary:
    """The final summary of a run, from its ended root span."""
    attrs = dict(root.attributes or {})
    error = None
    if root.status.status_code is StatusCode.ERROR:
        error = root.status.description or str(attrs.get(semconv.ERROR_TYPE, "error"))
    status, detail = end_detail(attrs, error)
    return summary_from_attributes(
        run_id, attrs, root.start_time or 0, root.end_time or 0, status, detail
    )


class RunStoreSpanExporter(SpanExporter):
    """Appends each span to its run's spans file under the store ``root``."""

    def __init__(self, root: Path | RunStore, writer: str | None = None) -> None:
        self._store = root if isinstance(root, RunStore) else RunStore(root)
        self._writer = writer
        self._files: dict[str, IO[str]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _file(self, run_id: str) -> IO[str]:
        handle = self._files.get(run_id)
        if handle is None:
            if run_id == UNASSIGNED:
                path = self._store.root / UNASSIGNED / file_name("spans", self._writer)
                path.parent.mkdir(parents=True, exist_ok=True)
            else:
                path = self._store.ensure_run(run_id).spans(self._writer)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            handle = self._files[run_id] = os.fdopen(fd, "a", encoding="utf-8")
        return handle

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed:
            return SpanExportResult.FAILURE
        groups: dict[str, list[ReadableSpan]] = {}
        for span in spans:
            run_id = (span.attributes or {}).get(semconv.RUN_ID)
            key = str(run_id) if run_id is not None else UNASSIGNED
            try:
                self._store.folder(key)
            except WanOtelError:
                key = UNASSIGNED
            groups.setdefault(key, []).append(span)
        try:
            with self._lock:
                for run_id, group in groups.items():
                    handle = self._file(run_id)
                    handle.write(json.dumps(encode_spans(group), separators=(",", ":")) + "\n")
                    handle.flush()  # on disk (the page cache) before the next export
                    for span in group:
                        if span.name == semconv.SPAN_GENERATE and run_id != UNASSIGNED:
                            self._finish_run(run_id, span)
        except OSError as exc:
            _log.warning("wan-otel run store: cannot write spans: %s", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _finish_run(self, run_id: str, root: ReadableSpan) -> None:
        """The root ends last: write the outcome, close the file. Only the run's first writer
        writes the summary (other ranks' roots are parts of the same run)."""
        handle = self._files.pop(run_id, None)
        if handle is not None:
            handle.close()
        if self._writer is None:
            self._store.folder(run_id).write_summary(root_summary(root, run_id))

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
