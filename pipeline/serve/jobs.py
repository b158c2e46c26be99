"""A job: one request's life while the server holds it, and its record (the video object as
the API shows it and ``job.json`` keeps it: every field of OpenAI's ``Video``, plus this
server's).

A job is ``queued``, ``in_progress``, then ``completed`` or ``failed``. A job deleted while it
runs is cancelled at its next step and removed; it is never shown again, so ``cancelled``
(which OpenAI's ``Video`` does not have) appears only in records of older servers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.context import Context

from wan_otel.pipeline.serve.validation import VideoRequest

QUEUED, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = (
    "queued",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
)
FINAL = (COMPLETED, FAILED, CANCELLED)


@dataclass
class Job:
    """One request's life, while the server holds it (a finished job read back from disk is
    its record, a dict)."""

    id: str
    request: VideoRequest
    model: str
    trace_id: str
    parent: Context | None
    """The request's trace context (its HTTP server span): the parent of the run's root."""
    created_ns: int
    input_path: Path | None = None
    """The uploaded first frame, saved in the job's folder."""
    prompt: str | None = None
    """The prompt as the API shows it: only with ``--record-prompt``."""
    position: int = 0
    """Jobs ahead now (the running one included), while queued."""
    ahead_at_submit: int = 0
    status: str = QUEUED
    started_ns: int | None = None
    finished_ns: int | None = None
    expires_s: int | None = None
    """When the job and its video are pruned (retention after it ended); None: never."""
    steps_done: int = 0
    stage: str | None = None
    error: dict[str, str] | None = None
    cancel_requested: bool = False
    deleted: bool = False
    """Deleted while running: removed once the worker lets go of it; hidden until then."""
    video_bytes: int | None = None
    generation_s: float | None = None
    described: dict[str, Any] = field(default_factory=dict)
    """The request as shown in the API (no prompt text): size, frames, steps, seed..."""

    def record(self) -> dict[str, Any]:
        """The job as the API shows it and ``job.json`` keeps it."""
        steps = int(self.described.get("num_inference_steps") or 0)
        progress = 100 if self.status == COMPLETED else 0
        if self.status == IN_PROGRESS and steps:
            progress = min(99, math.floor(100 * self.steps_done / steps))
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
            "created_at": int(self.created_ns // 1_000_000_000),
            "started_at": _seconds(self.started_ns),
            "completed_at": _seconds(self.finished_ns),
            "expires_at": self.expires_s,
            "prompt": self.prompt,
            "remixed_from_video_id": None,
            **self.described,
            "stage": self.stage,
            "steps_done": self.steps_done,
            "queue_position": self.position if self.status == QUEUED else None,
            "timings": timings,
            "bytes": self.video_bytes,
            "error": self.error,
            "trace_id": self.trace_id,
        }


def _seconds(ns: int | None) -> int | None:
    return None if ns is None else int(ns // 1_000_000_000)


def describe(request: VideoRequest) -> dict[str, Any]:
    """The public fields of a request (the prompt text stays out of the job record)."""
    described: dict[str, Any] = {
        "size": request.size,
        "seconds": f"{(request.num_frames - 1) / request.fps:g}",
        "num_frames": request.num_frames,
        "fps": request.fps,
        "num_inference_steps": request.num_inference_steps,
        "guidance_scale": request.guidance_scale,
        "seed": request.seed,
        "has_input_reference": request.image is not None,
    }
    if request.guidance_scale_2 is not None:
        described["guidance_scale_2"] = request.guidance_scale_2
    return described
