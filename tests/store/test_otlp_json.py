"""The OTLP JSON encoder and the total decoder: wrong types skip the smallest part, named."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from wan_otel.store.otlp_json import OtlpDecodeError, decode_payload, encode_spans, read_otlp_file


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


def _payload(*spans: object) -> dict:
    return {"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}


GOOD = _span("ab" * 16, "cd" * 8)


@pytest.mark.parametrize(
    ("bad", "warning"),
    [
        ({"startTimeUnixNano": "abc"}, "has a startTimeUnixNano that is not an integer ('abc')"),
        ({"startTimeUnixNano": [1]}, "has a startTimeUnixNano that is not an integer ([1])"),
        ({"startTimeUnixNano": True}, "has a startTimeUnixNano that is not an integer (True)"),
        ({"startTimeUnixNano": 1e30}, "has a startTimeUnixNano outside 1970..9999 (1e+30)"),
        ({"startTimeUnixNano": -5}, "has a startTimeUnixNano outside 1970..9999 (-5)"),
        ({"endTimeUnixNano": "9" * 24}, "has an endTimeUnixNano outside 1970..9999"),
        ({"startTimeUnixNano": "3"}, "ends before it starts (by 0.000000001 s)"),
        ({"attributes": {"a": 1}}, "has attributes that are not a list ({'a': 1})"),
        ({"attributes": [{"key": 3}]}, "has an attribute key that is not a string (3)"),
        ({"attributes": [5]}, "has an attribute that is not an object (5)"),
        ({"attributes": [{"key": "k", "value": 1}]}, "has an attribute value that is not an"),
        (
            {"attributes": [{"key": "k", "value": {"intValue": "1.5"}}]},
            "has an intValue that is not an integer ('1.5')",
        ),
        (
            {"attributes": [{"key": "k", "value": {"intValue": str(1 << 63)}}]},
            "has an intValue outside 64 bits",
        ),
        (
            {"attributes": [{"key": "k", "value": {"boolValue": "yes"}}]},
            "has a boolValue that is not true or false ('yes')",
        ),
        (
            {"attributes": [{"key": "k", "value": {"arrayValue": {"values": 3}}}]},
            "has array or kvlist values that are not a list (3)",
        ),
        ({"status": "ERROR"}, "has a status that is not an object ('ERROR')"),
        ({"status": {"code": 7}}, "has an unknown status code (7)"),
        ({"kind": "SPAN_KIND_WHATEVER"}, "has an unknown kind ('SPAN_KIND_WHATEVER')"),
        ({"name": 5}, "has a name that is not a string (5)"),
        ({"traceId": 12}, "has a traceId that is not a string (12)"),
        ({"spanId": "zz" * 8}, "has a spanId that is not 8 bytes of hex or base64"),
        ({"parentSpanId": "abc"}, "has a parentSpanId that is not 8 bytes of hex or base64"),
        ({"events": {"name": "x"}}, "has events that are not a list"),
        ({"events": [{"timeUnixNano": "soon"}]}, "has an event timeUnixNano that is not an"),
    ],
)
def test_a_span_of_wrong_types_is_skipped_and_named_the_rest_kept(bad: dict, warning: str) -> None:
    broken = {**GOOD, "name": "broken", **bad}
    warnings: list[str] = []
    decoded = decode_payload(_payload(GOOD, broken, GOOD), warnings, source="src")
    assert [s.name for s in decoded] == ["s", "s"]
    assert len(warnings) == 1
    assert warnings[0].startswith("src: span ") and warning in warnings[0], warnings
    assert warnings[0].endswith("; skipped")
    with pytest.raises(OtlpDecodeError, match="span "):  # without warnings: the first raises
        decode_payload(_payload(GOOD, broken))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"resourceSpans": 5}, "resourceSpans is not a list (5)"),
        ({"batches": "x"}, "resourceSpans is not a list ('x')"),
        ([GOOD], "payload is not a JSON object"),
        ("text", "payload is not a JSON object"),
        ({"trace": {"other": 1}}, "no resourceSpans or batches in payload"),
    ],
)
def test_a_payload_that_is_not_traces_raises(payload: object, message: str) -> None:
    with pytest.raises(OtlpDecodeError) as caught:
        decode_payload(payload, [])
    assert str(caught.value) == message


def test_bad_resources_and_scopes_skip_only_their_spans() -> None:
    payload = {
        "resourceSpans": [
            5,
            {"resource": 3, "scopeSpans": [{"spans": [GOOD]}]},
            {"resource": {"attributes": [{"key": None}]}, "scopeSpans": [{"spans": [GOOD]}]},
            {"scopeSpans": 7},
            {"scopeSpans": ["x", {"spans": {"a": 1}}, {"spans": [GOOD]}, {}]},
        ]
    }
    warnings: list[str] = []
    assert len(decode_payload(payload, warnings, source="src")) == 1
    assert warnings == [
        "src: resourceSpans[0], resourceSpans[4].scopeSpans[0] are not an object "
        "(first: 5); skipped",
        "src: resourceSpans[1] has a resource that is not an object (3); skipped",
        "src: resourceSpans[2] has an attribute key that is not a string (None); skipped",
        "src: resourceSpans[3] has scopes that are not a list (7); skipped",
        "src: resourceSpans[4].scopeSpans[1] has spans that are not a list ({'a': 1}); skipped",
    ]


def test_lone_surrogates_become_replacement_marks() -> None:
    span = {**GOOD, "name": "a\ud800b", "attributes": [{"key": "k\udc00", "value": {}}]}
    (decoded,) = decode_payload(_payload(span))
    assert decoded.name == "a?b" and decoded.attributes == {"k?": None}
    decoded.name.encode("utf-8")  # every renderer writes UTF-8


def test_values_nested_beyond_the_depth_limit_skip_the_span() -> None:
    value: dict = {"stringValue": "leaf"}
    for _ in range(40):
        value = {"arrayValue": {"values": [value]}}
    span = {**GOOD, "attributes": [{"key": "deep", "value": value}]}
    warnings: list[str] = []
    assert decode_payload(_payload(span), warnings) == []
    assert "has attribute values nested too deeply" in warnings[0]


def test_protobuf_json_spellings_of_numbers_are_read() -> None:
    attributes = [
        {"key": "i", "value": {"intValue": -42}},
        {"key": "d", "value": {"doubleValue": "NaN"}},
        {"key": "e", "value": {"doubleValue": "-Infinity"}},
        {"key": "f", "value": {"doubleValue": "2.5"}},
        {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "x", "value": {}}]}}},
        {"key": "new", "value": {"someFutureValue": 1}},
    ]
    span = {**GOOD, "startTimeUnixNano": 1.0, "kind": "2", "attributes": attributes}
    (decoded,) = decode_payload(_payload(span))
    assert decoded.start_ns == 1 and decoded.kind == 2
    attrs = decoded.attributes
    assert attrs["i"] == -42 and attrs["f"] == 2.5 and attrs["e"] == float("-inf")
    assert attrs["d"] != attrs["d"]  # NaN: OTLP allows non-finite doubles
    assert attrs["kv"] == (("x", None),) and attrs["new"] is None


def test_a_file_of_many_bad_spans_makes_one_warning_per_kind(tmp_path: Path) -> None:
    bad_time = {**GOOD, "startTimeUnixNano": "abc"}
    lines = [json.dumps(_payload(GOOD, bad_time)) for _ in range(500)]
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join([*lines, '{"resourceSpans": 5}', "not json"]) + "\n")
    warnings: list[str] = []
    spans = read_otlp_file(path, warnings)
    assert len(spans) == 500
    assert warnings == [
        f"{path}: line 502 is not valid JSON; skipped",
        f"{path}: line 1 span 's', line 2 span 's', line 3 span 's' and 497 more have a "
        "startTimeUnixNano that is not an integer (first: 'abc'); skipped",
        f"{path}: line 501 is not OTLP traces (resourceSpans is not a list (5)); skipped",
    ]


def test_a_deeply_nested_wrong_part_is_named_without_being_walked() -> None:
    deep = json.loads("[" * 900 + "]" * 900)  # as deep as the parser allows, about
    warnings: list[str] = []
    assert decode_payload(_payload({**GOOD, "attributes": deep}), warnings, source="src") == []
    assert warnings == [
        "src: span 's' has an attribute that is not an object ([[[[...]]]]); skipped"
    ]
