"""The local run store: one folder per run holding its spans and GPU samples.

Layout under the store root (``--store``, ``$WAN_OTEL_STORE``, default ``./wan-otel-runs``)::

    <run id>/spans.jsonl        OTLP JSON lines, as the Collector's file exporter writes them
    <run id>/gpu_samples.jsonl  GPU samples (wan_otel.store.samples)
    <run id>/run.json           one-line summary written when the root span ends (for ``runs``)
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wan_otel.errors import WanOtelError
from wan_otel.store.jsonl import read_json_lines
from wan_otel.store.otlp_json import OtlpDecodeError, SpanRecord, decode_payload
from wan_otel.store.samples import GpuSample, read_samples

STORE_ENV = "WAN_OTEL_STORE"
DEFAULT_STORE = "wan-otel-runs"
SPANS_FILE = "spans.jsonl"
SAMPLES_FILE = "gpu_samples.jsonl"
SUMMARY_FILE = "run.json"

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_store_root() -> Path:
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def check_run_id(run_id: str) -> str:
    """A run id is a folder name: letters, digits, ``.``, ``_``, ``-``; at most 128 chars."""
    if not _RUN_ID.match(run_id) or ".." in run_id:
        raise WanOtelError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128)"
        )
    return run_id


@dataclass
class RunData:
    """What the store holds for one run, with everything that could not be read named."""

    run_id: str
    spans: list[SpanRecord]
    samples: list[GpuSample]
    warnings: list[str] = field(default_factory=list)


class RunStore:
    """Reads and locates runs under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run_dir(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def run_ids(self) -> list[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise WanOtelError(f"cannot read run store {self.root}: {exc.strerror}") from exc
        return sorted(e.name for e in entries if e.is_dir() and _RUN_ID.match(e.name))

    def _missing_run(self, run_id: str) -> WanOtelError:
        if not self.root.is_dir():
            return WanOtelError(
                f"run store {self.root} does not exist (set --store or {STORE_ENV})"
            )
        nearest = difflib.get_close_matches(run_id, self.run_ids(), n=3, cutoff=0.5)
        hint = f"; nearest: {', '.join(nearest)}" if nearest else "; `wan-otel runs` lists them"
        return WanOtelError(f"no run {run_id!r} in {self.root}{hint}")

    def read(self, run_id: str) -> RunData:
        """Spans and samples of one run; unreadable lines are skipped and named in warnings."""
        folder = self.run_dir(run_id)
        spans_path = folder / SPANS_FILE
        if not spans_path.is_file():
            raise self._missing_run(run_id)
        warnings: list[str] = []
        spans = read_spans(spans_path, warnings)
        samples_path = folder / SAMPLES_FILE
        samples = read_samples(samples_path, warnings) if samples_path.is_file() else []
        return RunData(run_id=run_id, spans=spans, samples=samples, warnings=warnings)

    def summary(self, run_id: str) -> dict[str, Any] | None:
        """The run's summary line, or None when the run never finished writing it."""
        path = self.run_dir(run_id) / SUMMARY_FILE
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) else None


def read_spans(path: Path, warnings: list[str]) -> list[SpanRecord]:
    """All decodable spans of an OTLP JSON-lines file; bad lines become warnings."""
    spans: list[SpanRecord] = []
    for number, payload in read_json_lines(path, warnings):
        try:
            spans.extend(decode_payload(payload))
        except OtlpDecodeError as exc:
            warnings.append(f"{path}: line {number}: {exc}; skipped")
    return spans
