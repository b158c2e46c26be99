"""Gather one run's spans and GPU samples from the store or from production backends."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from wan_otel import semconv as sc
from wan_otel.backends.http_json import HttpJsonClient
from wan_otel.backends.prometheus_samples import prometheus_gpu_samples
from wan_otel.backends.trace_sources import collector_file_spans, jaeger_spans, tempo_spans
from wan_otel.errors import WanOtelError
from wan_otel.store.otlp_json import SpanRecord
from wan_otel.store.run_store import RunData, RunStore, check_run_id, default_store_root

TRACES_ENV = "WAN_OTEL_TRACES"
TRACES_API_ENV = "WAN_OTEL_TRACES_API"
PROMETHEUS_ENV = "WAN_OTEL_PROMETHEUS"
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``24h``, ``7d`` to seconds."""
    match = _DURATION.match(text)
    if not match:
        raise WanOtelError(f"bad duration {text!r}: use a number and s, m, h or d (e.g. 24h)")
    return int(match[1]) * _UNIT_S[match[2]]


@dataclass
class Sources:
    """Where to read from; None means the local store."""

    store: Path | None = None
    traces: str | None = None
    traces_api: str = "tempo"
    service: str = "wan-otel"
    prometheus: str | None = None
    since_s: int = 7 * 86400
    timeout_s: float = 30.0

    @classmethod
    def from_env(cls, **given: object) -> Sources:
        values = {k: v for k, v in given.items() if v is not None}
        values.setdefault("traces", os.environ.get(TRACES_ENV) or None)
        values.setdefault("traces_api", os.environ.get(TRACES_API_ENV) or "tempo")
        values.setdefault("prometheus", os.environ.get(PROMETHEUS_ENV) or None)
        values.setdefault("service", os.environ.get("OTEL_SERVICE_NAME") or "wan-otel")
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class Gathered:
    run: RunData
    requests: int


def _root_window(spans: list[SpanRecord]) -> tuple[int, int, list[str]]:
    """The run's window and its GPUs' UUIDs: the root's, then each rank span's (multi-GPU)."""
    roots = [s for s in spans if s.name == sc.SPAN_GENERATE]
    if not roots:
        return min(s.start_ns for s in spans), max(s.end_ns for s in spans), []
    root = roots[-1]
    uuids: list[str] = []
    for span in [root, *(s for s in spans if s.name == sc.SPAN_RANK)]:
        uuid = span.attributes.get(sc.GPU_UUID)
        if uuid is not None and str(uuid) not in uuids:
            uuids.append(str(uuid))
    return root.start_ns, root.end_ns, uuids


def gather(run_id: str, sources: Sources, with_samples: bool = True) -> Gathered:
    """The run's spans and samples, with notes on anything missing or partial; without
    ``with_samples`` (a baseline, whose steps alone are compared) Prometheus is not asked."""
    check_run_id(run_id)
    notes: list[str] = []
    requests = 0
    if sources.traces is None:
        run = RunStore(sources.store or default_store_root()).read(run_id)
        spans, samples, notes, summary = run.spans, run.samples, run.warnings, run.summary
    else:
        samples, summary = [], None
        target = sources.traces
        now = int(time.time())
        if target.startswith(("http://", "https://")):
            client = HttpJsonClient(target, sources.traces_api.capitalize(), sources.timeout_s)
            start, end = now - sources.since_s, now
            if sources.traces_api == "jaeger":
                spans = jaeger_spans(client, run_id, start, end, sources.service, notes)
            elif sources.traces_api == "tempo":
                spans = tempo_spans(client, run_id, start, end, notes)
            else:
                raise WanOtelError(f"unknown traces API {sources.traces_api!r}: tempo or jaeger")
            requests += client.requests
        else:
            spans = collector_file_spans(Path(target), run_id, notes)
    if sources.prometheus and with_samples:
        if not spans:
            raise WanOtelError(f"run {run_id!r}: no readable spans; Prometheus not queried")
        start_ns, end_ns, uuids = _root_window(spans)
        samples = []
        if not uuids:
            notes.append("the run records no GPU UUID (a CPU run?): Prometheus not queried")
        else:
            client = HttpJsonClient(sources.prometheus, "Prometheus", sources.timeout_s)
            samples = prometheus_gpu_samples(client, uuids[0], start_ns, end_ns, notes)
            for uuid in uuids[1:]:
                # Another rank's GPU without samples costs its SM figure, not the report.
                try:
                    samples += prometheus_gpu_samples(client, uuid, start_ns, end_ns, notes)
                except WanOtelError as exc:
                    notes.append(f"{exc}; that rank's SM figure is n/a")
            requests += client.requests
    if requests:
        notes.append(f"backends answered {requests} HTTP request(s)")
    data = RunData(run_id=run_id, spans=spans, samples=samples, warnings=notes, summary=summary)
    return Gathered(data, requests)
