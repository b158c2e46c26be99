"""The run summary (``run.json``): one typed line per run, written at its start and its end.

At creation the run's writer records ``running`` with its process id and host, and what the run
was asked for; when the root span ends the store span exporter replaces it with the outcome.
A run whose summary still says ``running`` after its process is gone was killed (SIGKILL, the
OOM killer, a lost node): ``wan-otel runs`` and the report say so instead of guessing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from wan_otel import semconv

RUNNING = "running"
OK = "ok"
ERROR = "error"
INTERRUPTED = "interrupted"
KILLED = "killed"
"""Derived, never written: ``running`` in the file, but its process is gone."""
STATUSES = (RUNNING, OK, ERROR, INTERRUPTED)
Scalar = str | bool | int | float
MAX_SECONDS = 1e8
"""Longer than any run (three years): a summary claiming more is not one."""


@dataclass(frozen=True)
class RunSummary:
    """What ``wan-otel runs`` lists for one run."""

    run_id: str
    status: str
    start_ns: int = 0
    total_s: float | None = None
    model: str | None = None
    resolution: str | None = None
    num_frames: int | None = None
    num_steps: int | None = None
    world_size: int | None = None
    detail: str | None = None
    """How it ended, in words: the error, or the signal and where it arrived."""
    pid: int | None = None
    host: str | None = None
    attributes: Mapping[str, Scalar] | None = None
    """The root span's attributes known when the run started (system, request): what a
    report shows of a run killed before its root span ended."""

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, obj: Any) -> RunSummary | None:
        """The summary in ``obj`` (parsed JSON), or None when it is not one."""
        if not isinstance(obj, Mapping) or not isinstance(obj.get("run_id"), str):
            return None
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in obj.items():
            kind = kinds.get(name)
            if kind is None or value is None:
                continue
            if name == "attributes":
                if not isinstance(value, Mapping):
                    return None
                values[name] = _scalars(value)
                continue
            if "int" in kind and "float" not in kind:
                if not isinstance(value, int) or isinstance(value, bool):
                    return None
                if not 0 <= value < 2**63:
                    return None
            elif "float" in kind:
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    return None
                value = float(value)
                if not 0 <= value <= MAX_SECONDS:  # NaN fails too
                    return None
            elif not isinstance(value, str):
                return None
            values[name] = value
        status = values.get("status")
        if status not in STATUSES:
            values["status"] = str(status) if status is not None else RUNNING
        return cls(**values)

    def seen_from(self, host: str | None = None) -> RunSummary:
        """This summary as this machine sees it now: ``running`` on this host with its process
        gone becomes ``killed``."""
        if self.status != RUNNING or self.pid is None:
            return self
        here = host or socket.gethostname()
        if self.host != here or _alive(self.pid):
            return self
        return replace(self, status=KILLED, detail="ended without recording its end")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    except OSError:
        return False
    return True


def started_summary(run_id: str, start_ns: int, attributes: Mapping[str, Any]) -> RunSummary:
    """The summary written when a run starts: ``running``, with this process and host, and
    the root's attributes known so far."""
    return replace(
        summary_from_attributes(run_id, attributes, start_ns, None, RUNNING),
        pid=os.getpid(),
        host=socket.gethostname(),
        attributes=_scalars(attributes),
    )


def _scalars(attributes: Mapping[Any, Any]) -> dict[str, Scalar]:
    return {
        str(k): v
        for k, v in attributes.items()
        if isinstance(k, str) and isinstance(v, (str, bool, int, float))
    }


def summary_from_attributes(
    run_id: str,
    attributes: Mapping[str, Any],
    start_ns: int,
    end_ns: int | None,
    status: str,
    detail: str | None = None,
) -> RunSummary:
    """A summary from a root span's attributes (or the request a run was created with)."""
    width = attributes.get(semconv.REQUEST_WIDTH)
    height = attributes.get(semconv.REQUEST_HEIGHT)
    world = attributes.get(semconv.WORLD_SIZE)
    return RunSummary(
        run_id=run_id,
        status=status,
        start_ns=int(start_ns),
        total_s=None if end_ns is None else max(0, end_ns - start_ns) / 1e9,
        model=_text(attributes.get(semconv.MODEL_NAME)),
        resolution=f"{width}x{height}" if width and height else None,
        num_frames=_int(attributes.get(semconv.REQUEST_NUM_FRAMES)),
        num_steps=_int(attributes.get(semconv.REQUEST_NUM_STEPS)),
        world_size=_int(world),
        detail=detail,
    )


def end_detail(attributes: Mapping[str, Any], error: str | None) -> tuple[str, str | None]:
    """(status, detail) of a finished run from its root's attributes and status message."""
    signal = attributes.get(semconv.RUN_INTERRUPT_SIGNAL)
    if isinstance(signal, str):
        return INTERRUPTED, interrupt_detail(attributes, signal)
    if error is not None:
        return ERROR, " ".join(error.split())[:200]
    return OK, None


def interrupt_detail(attributes: Mapping[str, Any], signal: str) -> str:
    """``SIGTERM during Denoising, step 8 of 50``: the signal, the stage, the step (from 1)."""
    text = signal
    where = attributes.get(semconv.RUN_INTERRUPT_STAGE)
    stage = semconv.stage_for_span(where) if isinstance(where, str) else None
    if stage is not None:
        text += f" during {stage.label}"
    step = attributes.get(semconv.RUN_INTERRUPT_STEP)
    if isinstance(step, int) and not isinstance(step, bool):
        total = attributes.get(semconv.REQUEST_NUM_STEPS)
        text += f", step {step + 1}" + (f" of {total}" if isinstance(total, int) else "")
    return text


def iso_time(ns: int) -> str:
    """UTC time of a Unix-epoch nanosecond stamp, to the second (``-`` when out of range)."""
    try:
        moment = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "-"
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
