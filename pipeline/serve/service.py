"""The API's operations, apart from HTTP: submit, look up, list, delete, fetch a video or its
thumbnail, list models, prune expired jobs.

Each takes plain values (fields, an id, a trace context) and returns a record or raises
``ApiError``; ``api.py`` only moves them in and out of HTTP. These are blocking calls (disk,
image decoding): the API runs them off its event loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.context import Context

from wan_otel.pipeline.runner.trace_ids import MintedTraceIds
from wan_otel.pipeline.serve.engine import Engine
from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.images import THUMBNAIL_MEDIA_TYPE, NoVideoReader, write_thumbnail
from wan_otel.pipeline.serve.job_queue import JobQueue
from wan_otel.pipeline.serve.jobs import COMPLETED, IN_PROGRESS, QUEUED, Job, describe
from wan_otel.pipeline.serve.persist import JobFiles
from wan_otel.pipeline.serve.tracing import trace_id_hex
from wan_otel.pipeline.serve.validation import validate
from wan_otel.store.run_store import new_run_id

_log = logging.getLogger(__name__)

MAX_LIST = 100
VARIANTS = {"video": "video/mp4", "thumbnail": THUMBNAIL_MEDIA_TYPE}

ID_ATTEMPTS = 5
"""Run ids minted for a job before giving up (two alike in one second are rare)."""


@dataclass(frozen=True)
class Content:
    """A file to answer with."""

    path: Path
    media_type: str
    record: dict[str, Any]


class Service:
    def __init__(self, queue: JobQueue, engine: Engine, ids: MintedTraceIds) -> None:
        self.queue = queue
        self.engine = engine
        self.files: JobFiles = queue.files
        self.ids = ids
        self.created_s = int(time.time())

    def submit(
        self, fields: dict[str, Any], parent: Context | None, trace_id: int | None
    ) -> dict[str, Any]:
        """Validate and queue a request; the job's record (status ``queued``). ``parent`` is
        the request's trace context (None: the server picks the trace id)."""
        self.queue.check_open()  # a loading or stopping server says so before any 400
        limits = self.engine.limits
        assert limits is not None, "the queue opens once the model is loaded"
        request = validate(fields, limits, self.engine.defaults, self.engine.names)
        if self.engine.spec.needs_image and request.image is None:
            raise ApiError(
                400,
                f"input_reference is required: {self.engine.model_name} generates from a first "
                "frame",
                code="missing_required_parameter",
                param="input_reference",
            )
        if parent is None or trace_id is None:
            parent, trace_id = None, self.ids.new_trace_id()
        record_prompt = self.engine.config.record_prompt
        job = Job(
            id=new_run_id(),
            request=request,
            model=self.engine.model_name,
            trace_id=trace_id_hex(trace_id),
            parent=parent,
            created_ns=time.time_ns(),
            prompt=request.prompt if record_prompt else None,
            described=describe(request),
        )
        image = request.image

        def on_disk() -> None:
            for _ in range(ID_ATTEMPTS):  # a run id is the second and 24 random bits
                if self.files.create(job.id):
                    break
                job.id = new_run_id()
            else:
                raise RuntimeError(f"no free run id after {ID_ATTEMPTS} attempts")
            try:
                if image is not None:
                    job.input_path = self.files.save_input(job.id, image.data, image.suffix)
                self.files.write(job.record(), first=True)
            except BaseException:
                self.files.remove(job.id)  # a job is on disk whole, or not at all
                raise

        self.queue.submit(job, on_disk)
        return job.record()

    def view(self, job_id: str) -> dict[str, Any]:
        return self.queue.view(job_id)

    def delete(self, job_id: str) -> dict[str, Any]:
        return self.queue.delete(job_id)

    def content(self, job_id: str, variant: str) -> Content:
        """The mp4 (or its first frame) of a completed job; 409 while it is not."""
        if variant not in VARIANTS:
            raise ApiError(
                400,
                f"variant {variant!r} is not available here; allowed: {', '.join(VARIANTS)}",
                code="unsupported_variant",
                param="variant",
            )
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
        video = self.files.video(job_id)
        if not video.is_file():
            raise ApiError(
                404, f"video {job_id!r}: its file is gone from the store", code="not_found"
            )
        if variant == "video":
            return Content(video, VARIANTS[variant], record)
        thumbnail = self.files.thumbnail(job_id)
        if not thumbnail.is_file():
            try:
                write_thumbnail(video, thumbnail)
            except NoVideoReader as exc:
                raise ApiError(501, f"no thumbnail: {exc}", code="thumbnail_unavailable") from None
        return Content(thumbnail, VARIANTS[variant], record)

    def page(self, after: str | None, limit: int, order: str) -> dict[str, Any]:
        """A cursor page of jobs in id order (an id begins with its UTC second)."""
        if not 1 <= limit <= MAX_LIST:
            raise ApiError(
                400, f"limit: allowed 1 to {MAX_LIST}", code="invalid_value", param="limit"
            )
        if order not in ("asc", "desc"):
            raise ApiError(
                400, f"order {order!r}: allowed 'asc' or 'desc'", code="invalid_value",
                param="order",
            )  # fmt: skip
        ids, has_more = self.queue.page(after, limit, descending=order == "desc")
        data = []
        for job_id in ids:
            try:
                data.append(self.queue.view(job_id))
            except ApiError:  # deleted between the page and this read
                continue
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self.model(self.engine.model_name)]}

    def model(self, model_id: str) -> dict[str, Any]:
        if not self.engine.names.accepts(model_id):
            raise ApiError(404, f"no model {model_id!r}", code="model_not_found", param="model")
        return {
            "id": self.engine.model_name,
            "object": "model",
            "created": self.created_s,
            "owned_by": "wan-otel",
        }

    def prune(self, now_s: float) -> list[str]:
        """Delete the finished jobs whose retention has passed; their ids."""
        pruned = []
        for job_id in self.queue.expired(now_s):
            try:
                self.queue.delete(job_id)
            except ApiError:  # deleted meanwhile
                continue
            pruned.append(job_id)
        if pruned:
            _log.info("pruned %d expired job(s)", len(pruned))
        return pruned
