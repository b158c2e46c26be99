"""The OTLP JSON encoder and the tolerant decoder."""

from __future__ import annotations

import base64
import json

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from wan_otel.store.otlp_json import OtlpDecodeError, decode_payload, encode_spans


def _sdk_spans() -> list:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "t"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("wan_otel.test", "1.0")
    with tracer.start_as_current_span("parent", attributes={"a": 1, "b": 2.5, "c": True}) as p:
        with tracer.start_as_current_span("child", attributes={"s": "x", "l": [1, 2]}) as c:
            c.set_status(Status(StatusCode.ERROR, "boom"))
            c.record_exception(ValueError("bad"))
        assert p.is_recording()
    return list(exporter.get_finished_spans())


def test_round_trip_through_json() -> None:
    spans = _sdk_spans()
    payload = json.loads(json.dumps(encode_spans(spans)))
    decoded = {s.name: s for s in decode_payload(payload)}
    parent, child = decoded["parent"], decoded["child"]
    assert child.parent_span_id == parent.span_id and parent.parent_span_id is None
    assert len(parent.trace_id) == 32 and len(parent.span_id) == 16
    assert parent.attributes == {"a": 1, "b": 2.5, "c": True}
    assert child.attributes == {"s": "x", "l": (1, 2)}
    assert child.status_code == 2 and child.status_message == "boom"
    assert child.events[0].name == "exception"
    assert child.events[0].attributes["exception.type"] == "ValueError"
    assert parent.resource["service.name"] == "t"
    sdk_parent = next(s for s in spans if s.name == "parent")
    assert parent.start_ns == sdk_parent.start_time and parent.end_ns == sdk_parent.end_time
    assert parent.kind == 1  # INTERNAL in OTLP numbering


def _span(trace_id: str, span_id: str, **extra: object) -> dict:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "s",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": 2,
        **extra,
    }


def test_backend_shapes_base64_ids_and_enum_names() -> None:
    trace = bytes(range(16))
    span = bytes(range(8))
    b64 = _span(
        base64.b64encode(trace).decode(),
        base64.b64encode(span).decode(),
        kind="SPAN_KIND_SERVER",
        status={"code": "STATUS_CODE_ERROR"},
    )
    tempo_v1 = {"batches": [{"scopeSpans": [{"spans": [b64]}]}]}
    tempo_v2 = {"trace": {"resourceSpans": [{"scopeSpans": [{"spans": [b64]}]}]}}
    jaeger = {"result": {"resourceSpans": [{"scopeSpans": [{"spans": [b64]}]}]}}
    for payload in (tempo_v1, tempo_v2, jaeger):
        (decoded,) = decode_payload(payload)
        assert decoded.trace_id == trace.hex() and decoded.span_id == span.hex()
        assert decoded.kind == 2 and decoded.status_code == 2


def test_all_zero_parent_is_no_parent() -> None:
    (decoded,) = decode_payload(
        {
            "resourceSpans": [
                {"scopeSpans": [{"spans": [_span("ab" * 16, "cd" * 8, parentSpanId="0" * 16)]}]}
            ]
        }
    )
    assert decoded.parent_span_id is None


@pytest.mark.parametrize(
    "payload",
    [
        {"nothing": 1},
        {"resourceSpans": [{"scopeSpans": [{"spans": [_span("zz", "cd" * 8)]}]}]},
        {
            "resourceSpans": [
                {"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 8}]}]}
            ]
        },
    ],
)
def test_garbage_is_a_decode_error(payload: dict) -> None:
    with pytest.raises(OtlpDecodeError):
        list(decode_payload(payload))
