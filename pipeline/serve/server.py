"""One server's life: wiring at start, loading in the background, pruning, the graceful stop.

``start`` takes the store's lock, marks the jobs a previous process lost as failed, indexes the
stored jobs, wires telemetry (the run store, OTLP from the standard variables, OTel metrics on
``/metrics`` through a ``PrometheusMetricReader`` on the server's own registry, HTTP server
spans through OpenTelemetry's ASGI middleware) and listens at once, so ``/healthz`` answers
while the model loads on a helper thread; jobs are taken, and ``/readyz`` turns 200, only once
it is loaded and warmed up. With a retention, a helper thread prunes expired jobs.

``stop_accepting`` then ``shutdown`` (SIGTERM): new jobs get 503 and ``/readyz`` says 503;
queued jobs fail (they would never run); the running job may finish within the grace period,
else it is stopped at its next step, else marked failed; then HTTP closes (answers under way
finish first) and telemetry is flushed.

Every job's spans are recorded whatever the caller's sampled flag says (sampler: always on):
the run store must hold every run, and a generation's few hundred spans cost nothing next to
the generation.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from wan_otel.pipeline.instrumentation.generation_metrics import PipelineMetrics
from wan_otel.pipeline.runner.telemetry import Telemetry, TelemetryConfig, setup_telemetry
from wan_otel.pipeline.runner.trace_ids import MintedTraceIds
from wan_otel.pipeline.serve.api import Api, build_app, route_finder
from wan_otel.pipeline.serve.asgi import Asgi
from wan_otel.pipeline.serve.auth import requiring_key
from wan_otel.pipeline.serve.body import BodyLimits
from wan_otel.pipeline.serve.connections import ConnectionLimits, gated
from wan_otel.pipeline.serve.engine import Engine, EngineConfig
from wan_otel.pipeline.serve.http_server import HttpServer, bind
from wan_otel.pipeline.serve.job_queue import JobQueue
from wan_otel.pipeline.serve.jobs import FAILED
from wan_otel.pipeline.serve.persist import JobFiles, store_lock
from wan_otel.pipeline.serve.server_metrics import ServerMetrics, counting
from wan_otel.pipeline.serve.service import Service
from wan_otel.pipeline.serve.tracing import (
    SANITIZED_HEADERS,
    excluded_urls,
    http_tracer_provider,
    polls,
    shielded,
    span_details,
)
from wan_otel.pipeline.serve.worker import Worker

_log = logging.getLogger(__name__)

ABORT_WAIT_S = 5.0
"""After the grace period: how long a stopped run may take to reach its next step."""
PRUNE_EVERY_S = (1.0, 300.0)
"""Bounds of the pruning interval (a tenth of the retention)."""


@dataclass
class ServeConfig:
    engine: EngineConfig
    host: str = "0.0.0.0"
    port: int = 8000
    max_queue: int = 16
    grace_s: float = 45.0
    api_key: str | None = None
    retention_s: float | None = 7 * 24 * 3600.0
    """How long a finished job and its video are kept (``expires_at``); None: for ever."""
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    span_processors: Sequence[SpanProcessor] = field(default_factory=tuple)
    """Extra span processors, for run and HTTP spans (tests: an in-memory exporter)."""
    metric_readers: Sequence[MetricReader] = field(default_factory=tuple)


@dataclass
class ShutdownReport:
    failed_queued: int = 0
    stopped_running: str | None = None
    """The running job's id and how it ended, if one was running."""
    dropped_spans: int = 0
    worker_stuck: bool = False
    """The worker is still inside a generation that never reached its next step, or the model
    is still loading: a thread is inside torch."""


class Server:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.files = JobFiles(config.engine.store)
        self.ids = MintedTraceIds()
        self.registry = CollectorRegistry()
        self.queue = JobQueue(config.max_queue, self.files, config.retention_s)
        self.recovered: list[str] = []
        self.load_error: BaseException | None = None
        self.loaded_s: float | None = None
        self._ready = threading.Event()
        self._draining = False
        self._stopped = threading.Event()
        self._exit = contextlib.ExitStack()
        self._telemetry: Telemetry | None = None
        self._engine: Engine | None = None
        self._worker: Worker | None = None
        self._loader: threading.Thread | None = None
        self._http: HttpServer | None = None
        self.service: Service | None = None

    @property
    def port(self) -> int:
        assert self._http is not None
        return self._http.port

    @property
    def engine(self) -> Engine:
        assert self._engine is not None
        return self._engine

    def start(self) -> None:
        """Listen now; load the model on a helper thread."""
        config = self.config
        self._exit.enter_context(store_lock(config.engine.store))
        try:
            lost = self.files.recover(time.time(), config.retention_s)
            self.recovered = [str(r["id"]) for r in lost]
            self.queue.load_index()
            ProcessCollector(registry=self.registry)  # the server's own CPU and memory
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            telemetry = setup_telemetry(
                TelemetryConfig(
                    store=config.engine.store,
                    metric_readers=[PrometheusMetricReader(registry=self.registry),
                                    *config.metric_readers],
                    span_processors=config.span_processors,
                    sampler=ALWAYS_ON,
                    id_generator=self.ids,
                )
            )  # fmt: skip
            self._telemetry = telemetry
            metrics = ServerMetrics(telemetry.meter_provider, self.queue.depth, config.max_queue)
            pipeline_metrics = PipelineMetrics(telemetry.meter_provider)
            self._engine = Engine(config.engine, telemetry, pipeline_metrics, self.ids)
            self._worker = Worker(self.queue, self._engine, metrics)
            self.service = Service(self.queue, self._engine, self.ids)
            sock = bind(config.host, config.port, config.connections.backlog)
            self._http = HttpServer(self._app(telemetry, metrics), sock, config.connections)
            self._http.start()
        except BaseException:
            if self._http is not None:
                self._http.stop()
            if self._telemetry is not None:
                self._telemetry.shutdown()
            self._exit.close()
            raise
        self._loader = threading.Thread(target=self._load, name="wan-otel-loader", daemon=True)
        self._loader.start()
        if config.retention_s is not None:
            threading.Thread(target=self._prune, name="wan-otel-pruner", daemon=True).start()

    def _app(self, telemetry: Telemetry, metrics: ServerMetrics) -> Asgi:
        """The ASGI stack, outermost first: HTTP spans, request counts, the connection bound,
        the API key, the routes."""
        assert self.service is not None
        limits = BodyLimits(read_timeout_s=self.config.connections.read_timeout_s)
        api = Api(self.service, self.registry, self.not_ready, limits)
        routes = api.routes()
        route_of = route_finder(routes)
        app: Asgi = build_app(api)
        if self.config.api_key is not None:
            app = requiring_key(app, self.config.api_key)
        app = gated(app, self.config.connections.read_timeout_s)
        app = counting(app, metrics, route_of)
        tracer_provider = http_tracer_provider(telemetry, self.config.span_processors)

        def instrumented(inner: Asgi) -> Asgi:
            return OpenTelemetryMiddleware(
                inner,
                excluded_urls=excluded_urls(),
                default_span_details=span_details(route_of),
                tracer_provider=tracer_provider,
                meter_provider=NoOpMeterProvider(),  # the server's own request counter serves
                http_capture_headers_sanitize_fields=SANITIZED_HEADERS,
                exclude_spans=["receive", "send"],
            )

        return shielded(instrumented, app, polls(route_of))

    def _load(self) -> None:
        assert self._engine is not None and self._worker is not None
        started = time.monotonic()
        try:
            self._engine.load()
        except BaseException as exc:
            _log.error("the model failed to load: %s: %s", type(exc).__name__, exc)
            self.load_error = exc
            self._ready.set()
            return
        loaded_s = time.monotonic() - started
        # The model's millions of Python objects live as long as the server: move them out of
        # the collector's sight, or the first full collection stalls a request by ~0.3 s.
        gc.collect()
        gc.freeze()
        self._worker.start()
        self.queue.open()
        # Only now is a job accepted: "ready" (loaded_s, /readyz) must not come sooner.
        self.loaded_s = loaded_s
        self._ready.set()

    def _prune(self) -> None:
        assert self.config.retention_s is not None and self.service is not None
        lo, hi = PRUNE_EVERY_S
        every = max(lo, min(hi, self.config.retention_s / 10))
        while True:
            try:
                self.service.prune(time.time())
            except Exception as exc:  # a failed pass must not end pruning
                _log.warning("pruning expired jobs failed: %s: %s", type(exc).__name__, exc)
            if self._stopped.wait(every):
                return

    def wait_loaded(self, timeout_s: float) -> bool:
        """True once the model is loaded (or failed to: see ``load_error``)."""
        return self._ready.wait(timeout_s)

    def not_ready(self) -> str | None:
        """Why ``/readyz`` is 503, or None."""
        if self._draining:
            return "shutting down"
        if self.load_error is not None:
            return f"the model failed to load ({type(self.load_error).__name__})"
        if not self._ready.is_set():
            return "loading the model"
        return None

    def stop_accepting(self) -> int:
        """New jobs get 503 from now on and the queued ones fail (they will never run);
        returns how many failed. Idempotent: ``shutdown`` calls it too."""
        self._draining = True
        return len(self.queue.close("the server is shutting down"))

    def shutdown(self) -> ShutdownReport:
        """The graceful stop; returns what it did to jobs."""
        report = ShutdownReport()
        report.failed_queued = self.stop_accepting()
        self._stopped.set()
        running = self.queue.running()
        if self._worker is not None and running is not None:
            grace = self.config.grace_s
            if not self._worker.stop(grace, ABORT_WAIT_S):
                self.queue.finish(
                    running,
                    FAILED,
                    {
                        "code": "server_shutdown",
                        "message": f"did not stop within the {grace:g} s grace period",
                    },
                )
            report.stopped_running = f"{running.id}: {running.status}"
        elif self._worker is not None:
            self._worker.stop(0.0, 0.0)
        if self._worker is not None:
            report.worker_stuck = not self._worker.join(1.0)
        loader = self._loader
        if loader is not None and loader.is_alive():
            # Still loading (or warming up) the model, inside torch: as with a stuck worker,
            # the process must not go through interpreter teardown under it.
            loader.join(1.0)
            report.worker_stuck = report.worker_stuck or loader.is_alive()
        if self._engine is not None and not report.worker_stuck:
            with contextlib.suppress(Exception):
                self._engine.close()
        if self._http is not None:  # before telemetry: the last answers' spans get out
            self._http.stop()
        if self._telemetry is not None:
            report.dropped_spans = self._telemetry.shutdown().dropped_spans
        self._exit.close()
        return report
