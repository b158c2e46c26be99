"""One server's life: wiring at start, loading in the background, the graceful stop.

``start`` takes the store's lock, marks the jobs a previous process lost as failed, wires
telemetry (the run store, OTLP from the standard variables, OTel metrics on ``/metrics``
through a ``PrometheusMetricReader`` on the server's own registry) and listens at once, so
``/healthz`` answers while the model loads on a helper thread; ``/readyz`` turns 200 when it
is loaded and warmed up, and jobs are taken from then on.

``shutdown`` (SIGTERM): ``/readyz`` says 503 and new jobs get 503; queued jobs fail (they
would never run); the running job may finish within the grace period, else it is stopped at
its next step, else marked failed; then telemetry is flushed and the socket closed.

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

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from wan_otel.errors import WanOtelError
from wan_otel.pipeline.instrumentation.generation_metrics import PipelineMetrics
from wan_otel.pipeline.runner.telemetry import Telemetry, TelemetryConfig, setup_telemetry
from wan_otel.pipeline.runner.trace_ids import MintedTraceIds
from wan_otel.pipeline.serve.api import ApiServer
from wan_otel.pipeline.serve.engine import Engine, EngineConfig
from wan_otel.pipeline.serve.jobs import FAILED, JobQueue
from wan_otel.pipeline.serve.persist import JobFiles, store_lock
from wan_otel.pipeline.serve.server_metrics import ServerMetrics
from wan_otel.pipeline.serve.service import Service
from wan_otel.pipeline.serve.worker import Worker

_log = logging.getLogger(__name__)

ABORT_WAIT_S = 5.0
"""After the grace period: how long a stopped run may take to reach its next step."""


@dataclass
class ServeConfig:
    engine: EngineConfig
    host: str = "0.0.0.0"
    port: int = 8000
    max_queue: int = 16
    grace_s: float = 45.0
    span_processors: Sequence[SpanProcessor] = field(default_factory=tuple)
    """Extra span processors (tests: an in-memory exporter)."""
    metric_readers: Sequence[MetricReader] = field(default_factory=tuple)


@dataclass
class ShutdownReport:
    failed_queued: int = 0
    stopped_running: str | None = None
    """The running job's id and how it ended, if one was running."""
    dropped_spans: int = 0


class Server:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.files = JobFiles(config.engine.store)
        self.ids = MintedTraceIds()
        self.registry = CollectorRegistry()
        self.queue = JobQueue(config.max_queue, self.files)
        self.recovered: list[str] = []
        self.load_error: BaseException | None = None
        self.loaded_s: float | None = None
        self._ready = threading.Event()
        self._draining = False
        self._exit = contextlib.ExitStack()
        self._telemetry: Telemetry | None = None
        self._engine: Engine | None = None
        self._worker: Worker | None = None
        self._http: ApiServer | None = None

    @property
    def port(self) -> int:
        assert self._http is not None
        return int(self._http.server_address[1])

    @property
    def engine(self) -> Engine:
        assert self._engine is not None
        return self._engine

    def start(self) -> None:
        """Listen now; load the model on a helper thread."""
        config = self.config
        self._exit.enter_context(store_lock(config.engine.store))
        try:
            self.recovered = [str(r["id"]) for r in self.files.recover(time.time())]
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
            service = Service(self.queue, self._engine, self.ids)
            try:
                self._http = ApiServer(
                    (config.host, config.port), service, self.registry, metrics, self.not_ready
                )
            except OSError as exc:
                raise WanOtelError(
                    f"cannot listen on {config.host}:{config.port}: {exc.strerror}"
                ) from None
        except BaseException:
            if self._telemetry is not None:
                self._telemetry.shutdown()
            self._exit.close()
            raise
        threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="wan-otel-http",
            daemon=True,
        ).start()
        threading.Thread(target=self._load, name="wan-otel-loader", daemon=True).start()

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
        if self._engine is not None:
            with contextlib.suppress(Exception):
                if self.queue.running() is None:
                    self._engine.close()
        if self._telemetry is not None:
            report.dropped_spans = self._telemetry.shutdown().dropped_spans
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self._exit.close()
        return report
