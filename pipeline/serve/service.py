"""The API's operations, apart from HTTP: submit, look up, wait for, cancel, fetch a video.

Each takes plain values (body bytes, headers, an id) and returns a record or raises
``ApiError``; ``api.py`` only moves them in and out of HTTP.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wan_otel.pipeline.runner.trace_ids import MintedTraceIds
from wan_otel.pipeline.serve.engine import Engine
from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.jobs import COMPLETED, IN_PROGRESS, QUEUED, Job, JobQueue, describe
from wan_otel.pipeline.serve.persist import JOB_FILE, JobFiles
from wan_otel.pipeline.serve.tracing import incoming_context, trace_id_hex
from wan_otel.pipeline.serve.validation import parse_json, validate
from wan_otel.store.run_store import new_run_id

MAX_LIST = 100


class Service:
    def __init__(self, queue: JobQueue, engine: Engine, ids: MintedTraceIds) -> None:
        self.queue = queue
        self.engine = engine
        self.files: JobFiles = queue.files
        self.ids = ids

    def submit(self, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """Validate and queue a request; the job's record (status ``queued``)."""
        limits = self.engine.limits
        if limits is None:
            raise ApiError(
                503, "the model is loading; see /readyz", code="unavailable",
                headers={"Retry-After": "10"},
            )  # fmt: skip
        request = validate(parse_json(raw), limits, self.engine.defaults, self.engine.model_name)
        if self.engine.spec.needs_image and request.image is None:
            raise ApiError(
                400,
                f"input_reference is required: {self.engine.model_name} generates from a first "
                "frame",
                code="missing_required_parameter",
                param="input_reference",
            )
        parent, trace_id = incoming_context(headers)
        if trace_id is None:
            trace_id = self.ids.new_trace_id()
        described = describe(request)
        if self.engine.config.record_prompt:
            described["prompt"] = request.prompt
        job = Job(
            id=new_run_id(),
            request=request,
            model=self.engine.model_name,
            trace_id=trace_id_hex(trace_id),
            parent=parent,
            created_ns=time.time_ns(),
            described=described,
        )
        if request.image is not None:
            self.files.create(job.id)
            job.input_path = self.files.save_input(job.id, request.image.data, request.image.suffix)
        try:
            self.queue.submit(job)
        except ApiError:
            if request.image is not None:  # refused: leave no trace of it in the store
                shutil.rmtree(self.files.folder(job.id), ignore_errors=True)
            raise
        return job.record()

    def view(self, job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        return self.queue.view(job_id, wait_s)

    def cancel(self, job_id: str) -> tuple[int, dict[str, Any]]:
        return self.queue.cancel(job_id)

    def content(self, job_id: str) -> tuple[Path, dict[str, Any]]:
        """The mp4 of a completed job; 409 while it is not (saying where it stands)."""
        record = self.queue.view(job_id)
        status = record.get("status")
        if status != COMPLETED:
            where = {
                QUEUED: f"queued (position {record.get('queue_position')})",
                IN_PROGRESS: f"in_progress ({record.get('stage') or 'starting'}, step "
                f"{record.get('steps_done')} of {record.get('num_inference_steps')})",
            }.get(str(status), str(status))
            raise ApiError(
                409,
                f"video {job_id!r} is {where}; its content exists once status is completed",
                code="video_not_ready",
            )
        path = self.files.video(job_id)
        if not path.is_file():
            raise ApiError(
                404, f"video {job_id!r}: its file is gone from the store", code="not_found"
            )
        return path, record

    def list(self, limit: int, after: str | None) -> dict[str, Any]:
        """By id, newest first (an id begins with its UTC second; within one second the order
        is the random suffix's), ``limit`` records after the id ``after``."""
        if not 1 <= limit <= MAX_LIST:
            raise ApiError(
                400, f"limit: allowed 1 to {MAX_LIST}", code="invalid_value", param="limit"
            )
        names = sorted(
            (p.name for p in self.files.root.iterdir() if (p / JOB_FILE).is_file()),
            reverse=True,
        )
        if after is not None:
            names = [n for n in names if n < after]
        data = [self.queue.view(name) for name in names[: limit + 1]]
        return {"object": "list", "data": data[:limit], "has_more": len(data) > limit}
