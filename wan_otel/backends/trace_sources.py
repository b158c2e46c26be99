"""Where a run's spans come from besides the local store: Collector files, Tempo, Jaeger.

All three go through the one OTLP JSON decoder (``wan_otel.store.otlp_json``), which accepts
hex and base64 ids and both enum spellings, skips bad spans with a note, and refuses (one line,
exit 2) an answer that is not traces at all. Each source makes a fixed number of requests:
Tempo one search plus one fetch per matching trace (one per run), Jaeger one query.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wan_otel import semconv as sc
from wan_otel.backends.http_json import HttpJsonClient, NotFound, one_line
from wan_otel.errors import WanOtelError
from wan_otel.store.jsonl import shown
from wan_otel.store.otlp_json import (
    MAX_TIME_NS,
    OtlpDecodeError,
    SpanRecord,
    decode_payload,
    read_otlp_file,
)

MAX_TRACES = 5
"""A run is one trace; a few more are tolerated (retries), more means a bad query."""

_TRACE_ID = re.compile(r"[0-9a-fA-F]{1,32}")


def _of_run(spans: Iterable[SpanRecord], run_id: str) -> list[SpanRecord]:
    return [s for s in spans if s.attributes.get(sc.RUN_ID) == run_id]


def collector_file_spans(path: Path, run_id: str, notes: list[str]) -> list[SpanRecord]:
    """Spans of one run from a file the Collector's file exporter wrote (OTLP JSON lines).

    The user names this file, so a symbolic link is followed (log folders rotate through
    links); anything but a regular file is refused. Bad lines and spans become notes."""
    spans = _of_run(read_otlp_file(path, notes, follow_symlinks=True), run_id)
    if not spans:
        raise WanOtelError(f"no spans with {sc.RUN_ID}={run_id} in {path}")
    return spans


def _decode(payload: Any, where: str, notes: list[str]) -> list[SpanRecord]:
    try:
        return decode_payload(payload, notes, source=where)
    except OtlpDecodeError as exc:
        raise WanOtelError(f"{where} answered a trace that is not OTLP JSON: {exc}") from None


def tempo_spans(
    client: HttpJsonClient, run_id: str, start_s: int, end_s: int, notes: list[str]
) -> list[SpanRecord]:
    """Find the run with TraceQL on its span attribute, then fetch its trace(s) by id."""
    query = f'{{ span.{sc.RUN_ID} = "{run_id}" }}'
    found = client.get(
        "/api/search",
        {
            "q": query,
            "start": str(start_s),
            "end": str(end_s),
            "limit": str(MAX_TRACES),
            "spss": "1",
        },
    )
    traces = found.get("traces") if isinstance(found, dict) else None
    if not isinstance(traces, list):
        raise WanOtelError(f"Tempo at {client.base_url} answered /api/search without 'traces'")
    if not traces:
        raise WanOtelError(
            f"Tempo at {client.base_url} has no trace with {sc.RUN_ID}={run_id} "
            f"between {_iso(start_s)} and {_iso(end_s)} (widen --since?)"
        )
    spans: list[SpanRecord] = []
    for trace in traces[:MAX_TRACES]:
        found_id = trace.get("traceID") if isinstance(trace, dict) else None
        if not isinstance(found_id, str) or not _TRACE_ID.fullmatch(found_id):
            notes.append(f"Tempo search answered a trace id that is not hex: {shown(found_id)}")
            continue
        trace_id = found_id.rjust(32, "0")  # Tempo may drop leading zeros
        try:
            body = client.get(
                f"/api/v2/traces/{trace_id}", {"start": str(start_s), "end": str(end_s)}
            )
        except NotFound:
            notes.append(f"Tempo found trace {trace_id} in search but not by id; skipped")
            continue
        if isinstance(body, dict) and "PARTIAL" in (
            str(body.get("status")),
            str(body.get("traceType")),
        ):
            message = body.get("message")
            notes.append(
                f"Tempo returned trace {trace_id} partial (over its size limit): "
                + (one_line(message) if isinstance(message, str) else "some spans are missing")
            )
        spans += _decode(body, f"Tempo at {client.base_url} (trace {trace_id})", notes)
    mine = _of_run(spans, run_id)
    if not mine:
        raise WanOtelError(f"Tempo traces for {run_id} hold no span with {sc.RUN_ID}={run_id}")
    return mine


def jaeger_spans(
    client: HttpJsonClient, run_id: str, start_s: int, end_s: int, service: str, notes: list[str]
) -> list[SpanRecord]:
    """Jaeger's v3 API: traces of ``service`` in the window whose spans carry the run id."""
    params = {
        "query.service_name": service,
        "query.start_time_min": _rfc3339(start_s),
        "query.start_time_max": _rfc3339(end_s),
        "query.attributes": json.dumps({sc.RUN_ID: run_id}),
        "query.num_traces": str(MAX_TRACES),
    }
    try:
        body = client.get("/api/v3/traces", params)
    except NotFound as exc:  # Jaeger answers "no traces" with 404
        raise WanOtelError(
            f"Jaeger at {client.base_url} has no trace of service {service!r} with "
            f"{sc.RUN_ID}={run_id} between {_iso(start_s)} and {_iso(end_s)}"
        ) from exc
    mine = _of_run(_decode(body, f"Jaeger at {client.base_url}", notes), run_id)
    if not mine:
        raise WanOtelError(f"Jaeger traces hold no span with {sc.RUN_ID}={run_id}")
    return mine


def _moment(t_s: int) -> dt.datetime:
    """A time in seconds as a UTC datetime, held within what datetime can show."""
    return dt.datetime.fromtimestamp(min(max(t_s, 0), MAX_TIME_NS // 10**9), tz=dt.timezone.utc)


def _iso(t_s: int) -> str:
    return _moment(t_s).strftime("%Y-%m-%d %H:%M:%SZ")


def _rfc3339(t_s: int) -> str:
    return _moment(t_s).isoformat().replace("+00:00", "Z")
