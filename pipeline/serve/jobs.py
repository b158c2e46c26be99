"""Jobs and the bounded queue: what was asked, where each job stands, who may take the next.

One lock (a condition) guards every job's state, so a status read by an HTTP thread is never
half-updated by the worker, and long polls wake on any change. Queued and running jobs are
held in memory; finished ones stay in a bounded table of recent jobs and otherwise are read
back from their ``job.json``, so memory stays flat however many jobs a server has run.
A job's record is on disk before the API answers its submission, and its final status is on
disk before it is shown (``persist.py``).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.context import Context

from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.persist import JobFiles
from wan_otel.pipeline.serve.validation import VideoRequest

QUEUED, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = (
    "queued",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
)
FINAL = (COMPLETED, FAILED, CANCELLED)
RECENT_JOBS = 256
"""Finished jobs kept in memory; older ones are read from disk when asked for."""
FIRST_ESTIMATE_S = 5.0
"""Retry-After before any job has finished (then: the mean of recent generations)."""


@dataclass
class Job:
    """One request's life, while the server holds it (a finished job read back from disk is
    its record, a dict)."""

    id: str
    request: VideoRequest
    model: str
    trace_id: str
    parent: Context | None
    """The caller's trace context (W3C traceparent): the parent of the run's root span."""
    created_ns: int
    input_path: Path | None = None
    """The uploaded first frame, saved in the job's folder."""
    position: int = 0
    """Jobs ahead now (the running one included), while queued."""
    ahead_at_submit: int = 0
    status: str = QUEUED
    started_ns: int | None = None
    finished_ns: int | None = None
    steps_done: int = 0
    stage: str | None = None
    error: dict[str, str] | None = None
    cancel_requested: bool = False
    video_bytes: int | None = None
    generation_s: float | None = None
    described: dict[str, Any] = field(default_factory=dict)
    """The request as shown in the API (no prompt text): size, frames, steps, seed..."""

    def record(self) -> dict[str, Any]:
        """The job as the API shows it and ``job.json`` keeps it (OpenAI's video object,
        plus this server's fields)."""
        steps = int(self.described.get("num_inference_steps") or 0)
        progress = 100 if self.status == COMPLETED else 0
        if self.status == IN_PROGRESS and steps:
            progress = min(99, math.floor(100 * self.steps_done / steps))
        created_s = self.created_ns / 1e9
        timings: dict[str, float | None] = {"queue_wait_s": None, "generation_s": None}
        if self.started_ns is not None:
            timings["queue_wait_s"] = round((self.started_ns - self.created_ns) / 1e9, 6)
            timings["generation_s"] = self.generation_s
        if self.finished_ns is not None:
            timings["total_s"] = round((self.finished_ns - self.created_ns) / 1e9, 6)
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": progress,
            "created_at": int(created_s),
            "started_at": _seconds(self.started_ns),
            "completed_at": _seconds(self.finished_ns),
            **self.described,
            "stage": self.stage,
            "steps_done": self.steps_done,
            "queue_position": self.position if self.status == QUEUED else None,
            "cancel_requested": self.cancel_requested,
            "timings": timings,
            "bytes": self.video_bytes,
            "error": self.error,
            "trace_id": self.trace_id,
        }


def _seconds(ns: int | None) -> int | None:
    return None if ns is None else int(ns / 1e9)


def describe(request: VideoRequest) -> dict[str, Any]:
    """The public fields of a request (the prompt text stays out of the job record)."""
    return {
        "size": request.size,
        "seconds": f"{(request.num_frames - 1) / request.fps:g}",
        "num_frames": request.num_frames,
        "fps": request.fps,
        "num_inference_steps": request.num_inference_steps,
        "guidance_scale": request.guidance_scale,
        "seed": request.seed,
        "has_input_reference": request.image is not None,
    }


class JobQueue:
    """The bounded queue of waiting jobs, the running one, and the recent finished ones."""

    def __init__(self, capacity: int, files: JobFiles) -> None:
        self.capacity = capacity
        self.files = files
        self._cond = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._live: dict[str, Job] = {}
        self._recent: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._closed_reason: str | None = "the model is loading"
        self._shut = False
        self._generation_s: collections.deque[float] = collections.deque(maxlen=16)

    # -- admission ----------------------------------------------------------------------------

    def open(self) -> None:
        """Start taking jobs (the model is ready), unless the queue was closed for good."""
        with self._cond:
            if not self._shut:
                self._closed_reason = None

    def submit(self, job: Job) -> None:
        """Queue ``job`` (already on disk as queued) or refuse it: 503 closed, 429 full."""
        with self._cond:
            if self._closed_reason is not None:
                raise ApiError(
                    503,
                    f"not accepting jobs: {self._closed_reason}",
                    code="unavailable",
                    headers={"Retry-After": "10"},
                )
            if len(self._waiting) >= self.capacity:
                wait = self._retry_after_s()
                raise ApiError(
                    429,
                    f"the queue is full ({self.capacity} jobs waiting); retry in about {wait} s",
                    code="queue_full",
                    headers={"Retry-After": str(wait)},
                )
            job.position = len(self._waiting) + (1 if self._running is not None else 0)
            job.ahead_at_submit = job.position
            self.files.create(job.id)
            self.files.write(job.record(), first=True)
            self._waiting.append(job)
            self._live[job.id] = job
            self._cond.notify_all()

    def _retry_after_s(self) -> int:
        """About when a slot frees: the running job's expected remaining time."""
        mean = (
            sum(self._generation_s) / len(self._generation_s)
            if self._generation_s
            else FIRST_ESTIMATE_S
        )
        running = self._running
        if running is not None and running.started_ns is not None:
            mean -= (time.time_ns() - running.started_ns) / 1e9
        return max(1, math.ceil(mean))

    # -- the worker's side ---------------------------------------------------------------------

    def take(self, timeout_s: float) -> Job | None:
        """The next job, now in progress (None after ``timeout_s`` with nothing queued)."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._waiting), timeout_s):
                return None
            job = self._waiting.popleft()
            job.status, job.started_ns, job.position = IN_PROGRESS, time.time_ns(), 0
            self._running = job
            self._renumber()
            self._cond.notify_all()
            return job

    def progress(self, job: Job, *, stage: str | None = None, step: bool = False) -> None:
        with self._cond:
            if stage is not None:
                job.stage = stage
            if step:
                job.steps_done += 1
            self._cond.notify_all()

    def finish(self, job: Job, status: str, error: dict[str, str] | None = None) -> None:
        """A final status: written to disk, then shown; the job moves to the recent table."""
        with self._cond:
            if job.status in FINAL:
                return
            job.status, job.error, job.finished_ns = status, error, time.time_ns()
            if job.stage is not None and status == COMPLETED:
                job.stage = None
            if status == COMPLETED and job.generation_s is not None:
                self._generation_s.append(job.generation_s)
            self.files.write(job.record())
            if self._running is job:
                self._running = None
                self._renumber()
            self._live.pop(job.id, None)
            self._recent[job.id] = job
            while len(self._recent) > RECENT_JOBS:
                self._recent.popitem(last=False)
            self._cond.notify_all()

    # -- the API's side ------------------------------------------------------------------------

    def view(self, job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """The job's record; with ``wait_s``, once it is final or after that long."""
        with self._cond:
            job = self._find(job_id)
            if job is not None:
                if wait_s > 0:
                    self._cond.wait_for(lambda: job.status in FINAL, wait_s)
                return job.record()
        record = self.files.read(job_id)
        if record is None:
            raise ApiError(404, f"no video {job_id!r}", code="not_found", param="id")
        return record

    def _renumber(self) -> None:
        """Queue positions count the jobs ahead, the running one included."""
        ahead = 1 if self._running is not None else 0
        for index, job in enumerate(self._waiting):
            job.position = ahead + index

    def _find(self, job_id: str) -> Job | None:
        return self._live.get(job_id) or self._recent.get(job_id)

    def cancel(self, job_id: str) -> tuple[int, dict[str, Any]]:
        """DELETE: a queued job is cancelled now (200); a running one stops after its current
        step (202, ``cancel_requested``); a finished one cannot be (409)."""
        with self._cond:
            job = self._find(job_id)
            if job is None:
                record = self.files.read(job_id)
                if record is None:
                    raise ApiError(404, f"no video {job_id!r}", code="not_found", param="id")
                status = record.get("status")
                raise ApiError(
                    409, f"video {job_id!r} is {status}; nothing to cancel", code="conflict"
                )
            if job.status == QUEUED:
                self._waiting.remove(job)
                self._renumber()
                self.finish(job, CANCELLED)
                return 200, job.record()
            if job.status == IN_PROGRESS:
                job.cancel_requested = True
                self._cond.notify_all()
                return 202, job.record()
            raise ApiError(
                409, f"video {job_id!r} is {job.status}; nothing to cancel", code="conflict"
            )

    def depth(self) -> int:
        with self._cond:
            return len(self._waiting)

    def running(self) -> Job | None:
        with self._cond:
            return self._running

    def close(self, reason: str) -> list[Job]:
        """Refuse new jobs (503) and fail the queued ones, which will never run."""
        with self._cond:
            self._closed_reason, self._shut = reason, True
            dropped = list(self._waiting)
            self._waiting.clear()
            for job in dropped:
                self.finish(
                    job,
                    FAILED,
                    {"code": "server_shutdown", "message": f"not started: {reason}"},
                )
            return dropped

    def wait_idle(self, timeout_s: float) -> bool:
        """Until no job runs (True) or ``timeout_s`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._running is None, timeout_s)
