"""The local run store (embedded default): spans as OTLP JSON lines and GPU samples, per run."""

from wan_otel.store.otlp_json import SpanRecord, decode_payload
from wan_otel.store.run_store import (
    RunData,
    RunFolder,
    RunStore,
    check_run_id,
    default_store_root,
    new_run_id,
)
from wan_otel.store.samples import GpuSample, SampleWriter
from wan_otel.store.summary import RunSummary

__all__ = [
    "GpuSample",
    "RunData",
    "RunFolder",
    "RunStore",
    "RunSummary",
    "SampleWriter",
    "SpanRecord",
    "check_run_id",
    "decode_payload",
    "default_store_root",
    "new_run_id",
]
