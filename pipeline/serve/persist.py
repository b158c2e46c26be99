"""Jobs on disk: each job's record and files live in its run's folder of the run store.

    <store>/<run id>/job.json       the job as the API shows it (rewritten at each status change)
    <store>/<run id>/input.<ext>    the uploaded first frame, if any
    <store>/<run id>/video.mp4      the result
    <store>/<run id>/thumbnail.webp its first frame, made when first asked for
    <store>/<run id>/...            its run: spans, GPU samples, summary (the run store's)

``job.json`` is written when a job is queued (before the 202 answer) and when it ends, to a
temporary file then renamed, so a crash leaves the old record or the new one, never half of
one. While a job runs, its record on disk still says queued: the API shows progress from
memory, and a disk write on the way from the request to the GPU would add to every request's
latency. At start, jobs whose record says queued were lost with the previous process (queued
or running): ``recover`` marks them failed. Deleting a job (the API's ``DELETE``, or its
retention running out) removes its whole run folder. One server per store: a lock file keeps
a second one from marking the first one's live jobs failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from wan_otel.errors import WanOtelError
from wan_otel.store.run_store import RunStore

_log = logging.getLogger(__name__)

JOB_FILE = "job.json"
VIDEO_FILE = "video.mp4"
THUMBNAIL_FILE = "thumbnail.webp"
INPUT_STEM = "input"
LOCK_FILE = ".wan-otel-serve.lock"
LIVE = ("queued", "in_progress")


class JobFiles:
    """Reads and writes job records and files under one store root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = RunStore(root)

    def folder(self, job_id: str) -> Path:
        return self.store.folder(job_id).path

    def video(self, job_id: str) -> Path:
        return self.store.folder(job_id).file(VIDEO_FILE)

    def thumbnail(self, job_id: str) -> Path:
        return self.store.folder(job_id).file(THUMBNAIL_FILE)

    def remove(self, job_id: str) -> None:
        """The job's run folder and everything in it (its record, video, spans)."""
        try:
            path = self.folder(job_id)
        except WanOtelError:  # not a run id: nothing of ours
            return
        # A link where a run folder should be is not followed (rmtree refuses it).
        shutil.rmtree(path, ignore_errors=True)

    def create(self, job_id: str) -> bool:
        """The job's run folder, made in one step; False if a folder of that id exists (a
        run id minted twice: the caller takes another, and must not touch that folder)."""
        try:
            self.store.create_run(job_id)
        except WanOtelError:
            if self.store.folder(job_id).path.exists():
                return False
            raise
        return True

    def save_input(self, job_id: str, data: bytes, suffix: str) -> Path:
        path = self.store.folder(job_id).file(f"{INPUT_STEM}{suffix}")
        path.write_bytes(data)
        return path

    def write(self, record: dict[str, Any], *, first: bool = False) -> None:
        """Replace the job's record atomically. ``first``: the record does not exist yet, so
        it is written in place (a torn first write is a job that was never answered)."""
        folder = self.store.folder(str(record["id"])).path
        text = json.dumps(record, sort_keys=True) + "\n"
        if first:
            with (folder / JOB_FILE).open("x", encoding="utf-8") as handle:
                handle.write(text)
            return
        tmp = folder / f".{JOB_FILE}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / JOB_FILE)

    def read(self, job_id: str) -> dict[str, Any] | None:
        try:
            path = self.folder(job_id) / JOB_FILE
        except WanOtelError:  # not a run id: no such job
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every job record in the store (run folders without one are plain runs)."""
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.is_dir() and os.path.isfile(os.path.join(entry.path, JOB_FILE)):
                record = self.read(entry.name)
                if record is not None and record.get("id") == entry.name:
                    yield record
                else:  # unreadable, or not this folder's: left alone, not served
                    _log.warning("%s: not a job record of this folder; skipped", entry.path)

    def recover(self, now_s: float, retention_s: float | None = None) -> list[dict[str, Any]]:
        """Mark jobs a previous process left queued or in progress as failed (expiring after
        ``retention_s``); return them."""
        lost = []
        for record in self.records():
            status = record.get("status")
            if status not in LIVE:
                continue
            record["status"] = "failed"
            record["completed_at"] = int(now_s)
            if retention_s is not None:
                record["expires_at"] = int(now_s) + math.ceil(retention_s)
            record["error"] = {
                "code": "server_restarted",
                "message": "the server stopped before this job finished; submit it again",
            }
            self.write(record)
            lost.append(record)
        return lost


@contextlib.contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Hold ``<store>/.wan-otel-serve.lock`` for the server's life; a second server on the
    same store gets ``WanOtelError``. The kernel drops the lock when the process dies."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = (root / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise WanOtelError(
                f"another wan-otel serve uses the store {root} (it holds {LOCK_FILE}); "
                "give each server its own --store"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()
