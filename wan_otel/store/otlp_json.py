"""OTLP JSON for spans: the one encoder and the one tolerant decoder the project uses.

The encoder writes what the OpenTelemetry Collector's file exporter writes (OTLP/JSON, one
``ExportTraceServiceRequest`` a line): hex ids, integer enums, 64-bit integers as strings.
The decoder reads that and what trace backends answer: base64 ids (Tempo, protobuf JSON),
enum names (``SPAN_KIND_SERVER``, ``STATUS_CODE_ERROR``), Tempo v1 ``batches``, Tempo v2
``trace.resourceSpans`` and Jaeger v3 ``result.resourceSpans``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

AttrValue = str | bool | int | float | tuple[Any, ...] | None

STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_KIND_NAMES = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}


class OtlpDecodeError(ValueError):
    """A payload that is JSON but not OTLP traces."""


@dataclass(frozen=True)
class SpanEvent:
    """A span event (an exception record, typically)."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttrValue]


@dataclass(frozen=True)
class SpanRecord:
    """One decoded span with its resource attributes; ids are lowercase hex."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttrValue]
    status_code: int = STATUS_UNSET
    status_message: str = ""
    kind: int = 1
    events: tuple[SpanEvent, ...] = ()
    resource: Mapping[str, AttrValue] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


# ----------------------------------------------------------------------------- decoding


def _decode_id(value: Any, nbytes: int) -> str | None:
    """Hex or base64 id to lowercase hex; empty or all-zero ids are None."""
    if not value:
        return None
    if not isinstance(value, str):
        raise OtlpDecodeError(f"id is not a string: {value!r}")
    if len(value) == 2 * nbytes:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if raw:
            return None if raw == bytes(nbytes) else raw.hex()
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise OtlpDecodeError(f"id is neither hex nor base64: {value!r}") from exc
    if len(raw) != nbytes:
        raise OtlpDecodeError(f"id {value!r} is {len(raw)} bytes, expected {nbytes}")
    return None if raw == bytes(nbytes) else raw.hex()


def _decode_enum(value: Any, names: Mapping[str, int]) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        if value in names:
            return names[value]
    raise OtlpDecodeError(f"unknown enum value {value!r}")


def _decode_value(value: Mapping[str, Any]) -> AttrValue:
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return tuple(_decode_value(v) for v in value["arrayValue"].get("values", []))
    if "bytesValue" in value:
        return str(value["bytesValue"])
    if "kvlistValue" in value:
        return tuple(
            (kv["key"], _decode_value(kv.get("value", {})))
            for kv in value["kvlistValue"].get("values", [])
        )
    return None


def decode_attributes(items: Iterable[Mapping[str, Any]] | None) -> dict[str, AttrValue]:
    """OTLP ``KeyValue`` list to a dict."""
    return {kv["key"]: _decode_value(kv.get("value") or {}) for kv in items or ()}


def _resource_spans(payload: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """The ``resourceSpans`` list of any of the payload shapes we accept."""
    for wrapper in ("trace", "result"):
        inner = payload.get(wrapper)
        if isinstance(inner, Mapping):
            payload = inner
    found = payload.get("resourceSpans", payload.get("batches"))
    if found is None:
        raise OtlpDecodeError("no resourceSpans or batches in payload")
    if not isinstance(found, list):
        raise OtlpDecodeError("resourceSpans is not a list")
    return found


def decode_payload(payload: Mapping[str, Any]) -> Iterator[SpanRecord]:
    """Spans of one OTLP JSON traces payload (any accepted shape)."""
    if not isinstance(payload, Mapping):
        raise OtlpDecodeError("payload is not a JSON object")
    for rs in _resource_spans(payload):
        resource = decode_attributes((rs.get("resource") or {}).get("attributes"))
        scopes = rs.get("scopeSpans", rs.get("instrumentationLibrarySpans", []))
        for ss in scopes or ():
            for sp in ss.get("spans", []) or ():
                yield _decode_span(sp, resource)


def _decode_span(sp: Mapping[str, Any], resource: Mapping[str, AttrValue]) -> SpanRecord:
    try:
        trace_id = _decode_id(sp.get("traceId"), 16)
        span_id = _decode_id(sp.get("spanId"), 8)
        if trace_id is None or span_id is None:
            raise OtlpDecodeError(f"span {sp.get('name')!r} has no traceId or spanId")
        status = sp.get("status") or {}
        events = tuple(
            SpanEvent(
                name=str(ev.get("name", "")),
                time_ns=int(ev.get("timeUnixNano", 0)),
                attributes=decode_attributes(ev.get("attributes")),
            )
            for ev in sp.get("events", []) or ()
        )
        return SpanRecord(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=_decode_id(sp.get("parentSpanId"), 8),
            name=str(sp["name"]),
            start_ns=int(sp["startTimeUnixNano"]),
            end_ns=int(sp["endTimeUnixNano"]),
            attributes=decode_attributes(sp.get("attributes")),
            status_code=_decode_enum(status.get("code"), _STATUS_NAMES),
            status_message=str(status.get("message", "")),
            kind=_decode_enum(sp.get("kind"), _KIND_NAMES),
            events=events,
            resource=resource,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, OtlpDecodeError):
            raise
        raise OtlpDecodeError(f"malformed span {sp.get('name')!r}: {exc!r}") from exc


# ----------------------------------------------------------------------------- encoding


def _encode_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_encode_value(v) for v in value]}}
    return {"stringValue": str(value)}


def encode_attributes(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A dict to an OTLP ``KeyValue`` list."""
    return [{"key": k, "value": _encode_value(v)} for k, v in (attributes or {}).items()]


def _encode_span(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    out: dict[str, Any] = {
        "traceId": f"{ctx.trace_id:032x}",
        "spanId": f"{ctx.span_id:016x}",
        "name": span.name,
        "kind": int(span.kind.value) + 1,  # SDK SpanKind INTERNAL=0; OTLP INTERNAL=1
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": encode_attributes(span.attributes),
        "status": {"code": int(span.status.status_code.value)},
    }
    if span.parent is not None:
        out["parentSpanId"] = f"{span.parent.span_id:016x}"
    if span.status.description:
        out["status"]["message"] = span.status.description
    if span.events:
        out["events"] = [
            {
                "name": ev.name,
                "timeUnixNano": str(ev.timestamp),
                "attributes": encode_attributes(ev.attributes),
            }
            for ev in span.events
        ]
    if span.links:
        out["links"] = [
            {"traceId": f"{ln.context.trace_id:032x}", "spanId": f"{ln.context.span_id:016x}"}
            for ln in span.links
        ]
    return out


def encode_spans(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """SDK spans to one OTLP JSON ``ExportTraceServiceRequest``, grouped by resource and scope."""
    by_resource: dict[int, tuple[Any, dict[tuple[str, str], list[dict[str, Any]]]]] = {}
    for span in spans:
        entry = by_resource.setdefault(id(span.resource), (span.resource, {}))
        scope = span.instrumentation_scope
        key = (scope.name, scope.version or "") if scope is not None else ("", "")
        entry[1].setdefault(key, []).append(_encode_span(span))
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": encode_attributes(resource.attributes if resource else {})
                },
                "scopeSpans": [
                    {"scope": {"name": name, "version": version}, "spans": encoded}
                    for (name, version), encoded in scopes.items()
                ],
            }
            for resource, scopes in by_resource.values()
        ]
    }
