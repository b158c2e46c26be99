"""The worker: one thread that takes queued jobs and runs them, one at a time (one GPU).

A job ends completed, failed (the model raised: its error is shown, its spans end with status
ERROR, and the worker goes on with the next job) or cancelled (deleted while it ran: then
removed). Stopping is cooperative: the pipeline's step callback asks ``stop_reason`` after
every step, so a client's delete or a shutdown past its grace period stops a run within one
step.
"""

from __future__ import annotations

import logging
import threading

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.generation import Record
from wan_otel.pipeline.serve.engine import Engine, GenerationStopped
from wan_otel.pipeline.serve.job_queue import JobQueue
from wan_otel.pipeline.serve.jobs import CANCELLED, COMPLETED, FAILED, Job
from wan_otel.pipeline.serve.server_metrics import ServerMetrics

_log = logging.getLogger(__name__)

POLL_S = 0.2
"""How often an idle worker checks whether it should stop."""


class Progress:
    """A generation listener: the job's current stage and completed steps, for the API."""

    def __init__(self, queue: JobQueue, job: Job) -> None:
        self._queue, self._job = queue, job

    def on_open(self, record: Record) -> None:
        stage = semconv.stage_for_span(record.name)
        if stage is not None:
            self._queue.progress(self._job, stage=stage.key)

    def on_close(self, record: Record) -> None:
        if record.name == semconv.SPAN_DENOISE_STEP:
            self._queue.progress(self._job, step=True)


class Worker:
    def __init__(self, queue: JobQueue, engine: Engine, metrics: ServerMetrics) -> None:
        self._queue = queue
        self._engine = engine
        self._metrics = metrics
        self._stopping = threading.Event()
        self._abort: str | None = None
        self._thread = threading.Thread(target=self._loop, name="wan-otel-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            job = self._queue.take(POLL_S)
            if job is None:
                continue
            try:
                self.execute(job)
            except Exception:  # a bug must not end the queue's only worker, nor hang the job
                _log.exception("job %s: the worker failed; the job is failed", job.id)
                error = {"code": "server_error", "message": "the server failed running the job"}
                self._queue.finish(job, FAILED, error)  # nothing if it already ended

    def execute(self, job: Job) -> None:
        """Run one taken job to its final status."""
        assert job.started_ns is not None
        self._metrics.waited((job.started_ns - job.created_ns) / 1e9, self._engine.model_name)

        def stop_reason() -> str | None:
            if self._abort is not None:
                return self._abort
            return "deleted by the client" if job.cancel_requested else None

        status, error = COMPLETED, None
        try:
            self._engine.run(job, Progress(self._queue, job), stop_reason)
        except GenerationStopped as exc:
            steps = f"after {job.steps_done} of {job.described.get('num_inference_steps')} steps"
            if self._abort is None:
                status = CANCELLED
            else:
                status = FAILED
                error = {"code": "server_shutdown", "message": f"{exc} ({steps})"}
        except Exception as exc:
            status = FAILED
            text = " ".join(str(exc).split())[:500]
            error = {"code": "generation_failed", "message": f"{type(exc).__name__}: {text}"}
            _log.warning("job %s failed: %s", job.id, error["message"])
        self._queue.finish(job, status, error)
        self._metrics.finished(status)

    def join(self, timeout_s: float) -> bool:
        """Wait for the thread to end (after ``stop``); False while it is still inside a
        generation that has not reached its next step."""
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self, grace_s: float, abort_wait_s: float) -> bool:
        """Take no more jobs; let the running one finish within ``grace_s``, else stop it
        at its next step and wait ``abort_wait_s`` for that. True once no job runs."""
        self._stopping.set()
        if self._queue.wait_idle(grace_s):
            return True
        self._abort = "stopped by a server shutdown"
        return self._queue.wait_idle(abort_wait_s)
