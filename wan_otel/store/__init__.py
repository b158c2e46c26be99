"""The local run store (embedded default): spans as OTLP JSON lines and GPU samples, per run."""

from wan_otel.store.otlp_json import SpanRecord, decode_payload
from wan_otel.store.run_store import RunData, RunStore, default_store_root
from wan_otel.store.samples import GpuSample, SampleWriter

__all__ = [
    "GpuSample",
    "RunData",
    "RunStore",
    "SampleWriter",
    "SpanRecord",
    "decode_payload",
    "default_store_root",
]
