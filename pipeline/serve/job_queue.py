"""The bounded queue: who may take the next job, where each job stands, which jobs exist.

One lock (a condition) guards every job's state and the index of stored job ids, so a status
read by the API is never half-updated by the worker, and waits wake on any change. Queued and
running jobs are held in memory; finished ones stay in a bounded table of recent jobs and are
otherwise read back from their ``job.json``, so memory stays flat however many jobs a server
has run (the index keeps only ids). A job's record is on disk before the API answers its
submission, and its final status is on disk before it is shown (``persist.py``). Code on
other threads (the API's event loop) hears of final states through ``on_final`` listeners.
"""

from __future__ import annotations

import bisect
import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.jobs import COMPLETED, FAILED, FINAL, IN_PROGRESS, QUEUED, Job
from wan_otel.pipeline.serve.persist import JobFiles

_log = logging.getLogger(__name__)

RECENT_JOBS = 256
"""Finished jobs kept in memory; older ones are read from disk when asked for."""
FIRST_ESTIMATE_S = 5.0
"""Expected generation time before any job has finished (then: the mean of recent ones)."""
POLL_AFTER_MS = (100, 5000)
"""Bounds of the poll interval suggested to clients (``openai-poll-after-ms``)."""


def not_found(job_id: str) -> ApiError:
    return ApiError(404, f"no video {job_id!r}", code="not_found", param="video_id")


class JobQueue:
    """The bounded queue of waiting jobs, the running one, the recent finished ones, and the
    ids of every job in the store."""

    def __init__(self, capacity: int, files: JobFiles, retention_s: float | None = None) -> None:
        self.capacity = capacity
        self.files = files
        self.retention_s = retention_s
        self._cond = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._live: dict[str, Job] = {}
        self._recent: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._ids: list[str] = []
        self._closed_reason: str | None = "the model is loading"
        self._shut = False
        self._generation_s: collections.deque[float] = collections.deque(maxlen=16)
        self._listeners: list[Callable[[], None]] = []

    def load_index(self) -> int:
        """Index the jobs already in the store (at start); returns how many."""
        ids = sorted(str(record["id"]) for record in self.files.records())
        with self._cond:
            self._ids = sorted(set(ids) | set(self._ids))
            return len(self._ids)

    def on_final(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (under the lock: it must only schedule work) whenever a job
        reaches a final status or is deleted."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        self._cond.notify_all()
        for listener in self._listeners:
            listener()

    # -- admission ----------------------------------------------------------------------------

    def open(self) -> None:
        """Start taking jobs (the model is ready), unless the queue was closed for good."""
        with self._cond:
            if not self._shut:
                self._closed_reason = None

    def check_open(self) -> None:
        """503 unless jobs are taken now."""
        with self._cond:
            if self._closed_reason is not None:
                raise ApiError(
                    503,
                    f"not accepting jobs: {self._closed_reason}",
                    code="unavailable",
                    headers={"Retry-After": "10"},
                )

    def submit(self, job: Job, on_disk: Callable[[], None]) -> None:
        """Queue ``job`` or refuse it: 503 closed, 429 full. ``on_disk`` writes its folder
        and first record, under the lock, so a refused job leaves nothing behind."""
        with self._cond:
            self.check_open()
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
            on_disk()
            self._waiting.append(job)
            self._live[job.id] = job
            bisect.insort(self._ids, job.id)
            self._cond.notify_all()

    def _expected_s(self) -> float:
        if not self._generation_s:
            return FIRST_ESTIMATE_S
        return sum(self._generation_s) / len(self._generation_s)

    def _retry_after_s(self) -> int:
        """About when a slot frees: the running job's expected remaining time."""
        expected = self._expected_s()
        running = self._running
        if running is not None and running.started_ns is not None:
            expected -= (time.time_ns() - running.started_ns) / 1e9
        return max(1, math.ceil(expected))

    def poll_after_ms(self) -> int:
        """A poll interval for a job not yet final: a twentieth of a generation."""
        with self._cond:
            lo, hi = POLL_AFTER_MS
            return max(lo, min(hi, int(self._expected_s() * 1000 / 20)))

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
        """A final status: written to disk, then shown; the job moves to the recent table (a
        deleted one is removed from the store instead)."""
        with self._cond:
            if job.status in FINAL:
                return
            job.status, job.error, job.finished_ns = status, error, time.time_ns()
            if self.retention_s is not None:
                job.expires_s = job.finished_ns // 1_000_000_000 + math.ceil(self.retention_s)
            if job.stage is not None and status == COMPLETED:
                job.stage = None
            if status == COMPLETED and job.generation_s is not None:
                self._generation_s.append(job.generation_s)
            if self._running is job:
                self._running = None
                self._renumber()
            self._live.pop(job.id, None)
            try:
                if job.deleted:
                    self.files.remove(job.id)
                else:
                    self.files.write(job.record())
            except OSError as exc:
                # A full or failing disk must not stop the queue: the status is kept in memory
                # (and shown) even though its record could not be written.
                _log.warning("job %s: its final record was not written (%s)", job.id, exc)
            if not job.deleted:
                self._recent[job.id] = job
                while len(self._recent) > RECENT_JOBS:
                    self._recent.popitem(last=False)
            self._changed()

    # -- the API's side ------------------------------------------------------------------------

    def _find(self, job_id: str) -> Job | None:
        job = self._live.get(job_id) or self._recent.get(job_id)
        return None if job is None or job.deleted else job

    def view(self, job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """The job's record; with ``wait_s``, once it is final or after that long (a thread's
        wait: the API's event loop waits through ``on_final`` instead)."""
        with self._cond:
            job = self._find(job_id)
            if job is not None:
                if wait_s > 0:
                    self._cond.wait_for(lambda: job.status in FINAL or job.deleted, wait_s)
                    if job.deleted:
                        raise not_found(job_id)
                return job.record()
            if job_id not in self._ids:
                raise not_found(job_id)
        record = self.files.read(job_id)
        if record is None:
            raise not_found(job_id)
        return record

    def is_final(self, job_id: str) -> bool:
        """True once the job is final or gone (a waiter stops waiting)."""
        with self._cond:
            job = self._find(job_id)
            return job is None or job.status in FINAL

    def delete(self, job_id: str) -> dict[str, Any]:
        """Remove a job and its files: a queued one at once, a running one once it stops at
        its next step (hidden from now on), a finished one at once. OpenAI's deletion
        object."""
        with self._cond:
            job = self._live.get(job_id)
            if job is not None and not job.deleted:
                job.deleted = True
                if job.status == QUEUED:
                    self._waiting.remove(job)
                    self._renumber()
                    self._live.pop(job_id, None)
                    self.files.remove(job_id)
                else:  # running: the worker stops it after this step, then removes it
                    job.cancel_requested = True
            elif job is None and job_id in self._ids:
                self._recent.pop(job_id, None)
                self.files.remove(job_id)
            else:
                raise not_found(job_id)
            index = bisect.bisect_left(self._ids, job_id)
            if index < len(self._ids) and self._ids[index] == job_id:
                del self._ids[index]
            self._changed()
        return {"id": job_id, "object": "video.deleted", "deleted": True}

    def page(self, after: str | None, limit: int, descending: bool) -> tuple[list[str], bool]:
        """Ids of a list page: ``limit`` ids after the id ``after`` in id order (an id begins
        with its UTC second), and whether more follow."""
        with self._cond:
            ids = self._ids
            if descending:
                end = len(ids) if after is None else bisect.bisect_left(ids, after)
                chosen = ids[max(0, end - limit - 1) : end][::-1]
            else:
                start = 0 if after is None else bisect.bisect_right(ids, after)
                chosen = ids[start : start + limit + 1]
        return chosen[:limit], len(chosen) > limit

    def expired(self, now_s: float) -> list[str]:
        """Finished jobs whose retention has passed (read from their records)."""
        with self._cond:
            candidates = [i for i in self._ids if i not in self._live]
        expired = []
        for job_id in candidates:
            record = self.files.read(job_id)
            if record is None or record.get("status") not in FINAL:
                continue
            expires = record.get("expires_at")
            if expires is None and self.retention_s is not None:
                done = record.get("completed_at")
                expires = None if not isinstance(done, int) else done + self.retention_s
            if isinstance(expires, int | float) and expires <= now_s:
                expired.append(job_id)
        return expired

    def _renumber(self) -> None:
        """Queue positions count the jobs ahead, the running one included."""
        ahead = 1 if self._running is not None else 0
        for index, job in enumerate(self._waiting):
            job.position = ahead + index

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
                error = {"code": "server_shutdown", "message": f"not started: {reason}"}
                self.finish(job, FAILED, error)
            return dropped

    def wait_idle(self, timeout_s: float) -> bool:
        """Until no job runs (True) or ``timeout_s`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._running is None, timeout_s)
