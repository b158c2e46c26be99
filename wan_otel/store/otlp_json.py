"""OTLP JSON for spans: the one encoder and the one total decoder the project uses.

The encoder writes what the OpenTelemetry Collector's file exporter writes (OTLP/JSON, one
``ExportTraceServiceRequest`` a line): hex ids, integer enums, 64-bit integers as strings.
The decoder reads that and what trace backends answer: base64 ids (Tempo, protobuf JSON),
enum names (``SPAN_KIND_SERVER``, ``STATUS_CODE_ERROR``), Tempo v1 ``batches``, Tempo v2
``trace.resourceSpans`` and Jaeger v3 ``result.resourceSpans``; ``read_otlp_file`` reads
OTLP JSON-lines files (the store's, the Collector's). Whatever JSON it gets, the decoder gives
spans plus named skips, or ``OtlpDecodeError``; nothing else escapes it.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wan_otel.store.jsonl import Skips, read_json_lines, shown

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
    """JSON that is not OTLP traces (a whole payload, or one part of one); the message names
    the field at fault."""


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
#
# The decoder is total over parsed JSON: a payload that is not OTLP traces at all raises
# OtlpDecodeError; inside one, each resource, scope or span with a part of the wrong JSON type
# or out of range is skipped and named (the smallest of those holding the bad part), and the
# rest is kept. Times must lie after 1970 and before 9999 (so every later date computation
# works) and a span must not end before it starts; such spans are skipped rather than clamped,
# since which of the two times is wrong cannot be known.

MAX_TIME_NS = 253_370_764_800 * 10**9
"""9999-01-01T00:00:00Z in Unix nanoseconds: span times must lie before (dates end at 9999)."""

_MAX_VALUE_DEPTH = 32
_INT64 = re.compile(r"-?[0-9]{1,24}")
_DOUBLE_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _BadPart(OtlpDecodeError):
    """One part of a payload that is not OTLP: ``problem`` is a verb phrase (``has a name that
    is not a string``), ``detail`` what was seen."""

    def __init__(self, problem: str, detail: str = "") -> None:
        super().__init__(problem + (f" ({detail})" if detail else ""))
        self.problem = problem
        self.detail = detail


def _clean(text: str) -> str:
    """``text`` that can be written as UTF-8: JSON's ``\\ud800`` escapes give lone surrogates,
    which would fail every renderer."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeio" else f"a {word}"


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""  # protobuf JSON leaves out empty strings
    if not isinstance(value, str):
        raise _BadPart(f"has {_a(what)} that is not a string", shown(value))
    return _clean(value)


def _time(value: Any, what: str, *, zero_ok: bool = False) -> int:
    """Unix nanoseconds from a JSON integer, a decimal string (protobuf JSON's 64-bit form) or
    an integral float."""
    if value is None:
        t = 0
    elif isinstance(value, int) and not isinstance(value, bool):
        t = value
    elif (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 25) or (
        isinstance(value, float) and value.is_integer()
    ):
        t = int(value)
    else:
        raise _BadPart(f"has {_a(what)} that is not an integer", shown(value))
    if (t == 0 and zero_ok) or 0 < t < MAX_TIME_NS:
        return t
    raise _BadPart(f"has {_a(what)} outside 1970..9999", shown(value))


def _decode_id(value: Any, nbytes: int, what: str) -> str | None:
    """Hex or base64 id to lowercase hex; absent, empty or all-zero ids are None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _BadPart(f"has {_a(what)} that is not a string", shown(value))
    raw: bytes | None = None
    if len(value) == 2 * nbytes:
        try:
            raw = bytes.fromhex(value)  # whitespace shortens the result: refused below
        except ValueError:
            raw = None
    if raw is None and len(value) <= 4 * nbytes:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != nbytes:
        raise _BadPart(f"has {_a(what)} that is not {nbytes} bytes of hex or base64", shown(value))
    return None if raw == bytes(nbytes) else raw.hex()


def _decode_enum(value: Any, names: Mapping[str, int], what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 4:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return value
    raise _BadPart(f"has an unknown {what}", shown(value))


def _decode_value(value: Any, depth: int = 0) -> AttrValue:
    """An OTLP ``AnyValue``; a kind this decoder does not know (a newer OTLP) is None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _BadPart("has an attribute value that is not an object", shown(value))
    if depth > _MAX_VALUE_DEPTH:
        raise _BadPart("has attribute values nested too deeply", f"over {_MAX_VALUE_DEPTH}")
    if "stringValue" in value:
        return _text(value["stringValue"], "stringValue")
    if "boolValue" in value:
        if not isinstance(value["boolValue"], bool):
            raise _BadPart("has a boolValue that is not true or false", shown(value["boolValue"]))
        return value["boolValue"]
    if "intValue" in value:
        return _int64(value["intValue"])
    if "doubleValue" in value:
        return _double(value["doubleValue"])
    if "arrayValue" in value:
        return tuple(_decode_value(v, depth + 1) for v in _values(value["arrayValue"]))
    if "kvlistValue" in value:
        return tuple(_attributes(_values(value["kvlistValue"]), depth + 1).items())
    if "bytesValue" in value:
        return _text(value["bytesValue"], "bytesValue")
    return None


def _int64(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INT64.fullmatch(value):
        number = int(value)
    else:
        raise _BadPart("has an intValue that is not an integer", shown(value))
    if not -(1 << 63) <= number < 1 << 63:
        raise _BadPart("has an intValue outside 64 bits", shown(value))
    return number


def _double(value: Any) -> float:
    """A double: a JSON number, or protobuf JSON's strings (``"NaN"``, ``"Infinity"``, ``"1.5"``);
    non-finite values are kept, as OTLP allows them."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            pass
    elif isinstance(value, str) and len(value) <= 64:
        if value in _DOUBLE_WORDS:
            return _DOUBLE_WORDS[value]
        try:
            return float(value)
        except ValueError:
            pass
    raise _BadPart("has a doubleValue that is not a number", shown(value))


def _values(container: Any) -> list[Any]:
    """The ``values`` list of an ``arrayValue`` or ``kvlistValue`` (absent: empty)."""
    if not isinstance(container, dict):
        raise _BadPart("has an array or kvlist value that is not an object", shown(container))
    values = container.get("values")
    if values is None:
        return []
    if not isinstance(values, list):
        raise _BadPart("has array or kvlist values that are not a list", shown(values))
    return values


def decode_attributes(items: Any) -> dict[str, AttrValue]:
    """OTLP ``KeyValue`` list to a dict. Raises ``OtlpDecodeError`` for anything else."""
    return _attributes(items, 0)


def _attributes(items: Any, depth: int) -> dict[str, AttrValue]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise _BadPart("has attributes that are not a list", shown(items))
    out: dict[str, AttrValue] = {}
    for kv in items:
        if not isinstance(kv, dict):
            raise _BadPart("has an attribute that is not an object", shown(kv))
        key = kv.get("key")
        if not isinstance(key, str):
            raise _BadPart("has an attribute key that is not a string", shown(key))
        out[_clean(key)] = _decode_value(kv.get("value"), depth)
    return out


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadPart(f"has {what} that are not a list", shown(value))
    return value


def _decode_span(sp: Any, resource: Mapping[str, AttrValue]) -> SpanRecord:
    if not isinstance(sp, dict):
        raise _BadPart("is not an object", shown(sp))
    trace_id = _decode_id(sp.get("traceId"), 16, "traceId")
    span_id = _decode_id(sp.get("spanId"), 8, "spanId")
    if trace_id is None or span_id is None:
        raise _BadPart("has no traceId or spanId")
    start = _time(sp.get("startTimeUnixNano"), "startTimeUnixNano")
    end = _time(sp.get("endTimeUnixNano"), "endTimeUnixNano")
    if end < start:
        raise _BadPart("ends before it starts", f"by {(start - end) / 1e9:.9f} s")
    status = sp.get("status")
    if status is None:
        status = {}
    elif not isinstance(status, dict):
        raise _BadPart("has a status that is not an object", shown(status))
    events = []
    for ev in _list(sp.get("events"), "events"):
        if not isinstance(ev, dict):
            raise _BadPart("has an event that is not an object", shown(ev))
        events.append(
            SpanEvent(
                name=_text(ev.get("name"), "event name"),
                time_ns=_time(ev.get("timeUnixNano"), "event timeUnixNano", zero_ok=True),
                attributes=decode_attributes(ev.get("attributes")),
            )
        )
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_decode_id(sp.get("parentSpanId"), 8, "parentSpanId"),
        name=_text(sp.get("name"), "name"),
        start_ns=start,
        end_ns=end,
        attributes=decode_attributes(sp.get("attributes")),
        status_code=_decode_enum(status.get("code"), _STATUS_NAMES, "status code"),
        status_message=_text(status.get("message"), "status message"),
        kind=_decode_enum(sp.get("kind"), _KIND_NAMES, "kind"),
        events=tuple(events),
        resource=resource,
    )


def _resource_spans(payload: Any) -> list[Any]:
    """The ``resourceSpans`` list of any of the payload shapes we accept."""
    if not isinstance(payload, Mapping):
        raise OtlpDecodeError("payload is not a JSON object")
    for wrapper in ("trace", "result"):
        inner = payload.get(wrapper)
        if isinstance(inner, Mapping):
            payload = inner
    found = payload.get("resourceSpans", payload.get("batches"))
    if found is None:
        raise OtlpDecodeError("no resourceSpans or batches in payload")
    if not isinstance(found, list):
        raise OtlpDecodeError(f"resourceSpans is not a list ({shown(found)})")
    return found


def _span_name(sp: Any, index: int) -> str:
    name = sp.get("name") if isinstance(sp, dict) else None
    return f"span {shown(name)}" if isinstance(name, str) and name else f"span #{index}"


def decode_spans(payload: Any, skips: Skips | None, where: str = "") -> list[SpanRecord]:
    """Spans of one OTLP JSON traces payload (any accepted shape). A payload that is not
    traces raises ``OtlpDecodeError``; a bad resource, scope or span inside one is skipped and
    counted in ``skips`` (``where`` prefixes its place), or raises when ``skips`` is None."""
    spans: list[SpanRecord] = []

    def bad(place: str, exc: _BadPart) -> None:
        if skips is None:
            raise OtlpDecodeError(f"{where}{place} {exc}") from exc
        skips.add(f"{where}{place}", exc.problem, exc.detail)

    for i, rs in enumerate(_resource_spans(payload)):
        try:
            if not isinstance(rs, dict):
                raise _BadPart("is not an object", shown(rs))
            resource_obj = rs.get("resource")
            if resource_obj is not None and not isinstance(resource_obj, dict):
                raise _BadPart("has a resource that is not an object", shown(resource_obj))
            resource = decode_attributes((resource_obj or {}).get("attributes"))
            scopes = _list(rs.get("scopeSpans", rs.get("instrumentationLibrarySpans")), "scopes")
        except _BadPart as exc:
            bad(f"resourceSpans[{i}]", exc)
            continue
        for j, ss in enumerate(scopes):
            try:
                if not isinstance(ss, dict):
                    raise _BadPart("is not an object", shown(ss))
                scope_spans = _list(ss.get("spans"), "spans")
            except _BadPart as exc:
                bad(f"resourceSpans[{i}].scopeSpans[{j}]", exc)
                continue
            for k, sp in enumerate(scope_spans):
                try:
                    spans.append(_decode_span(sp, resource))
                except _BadPart as exc:
                    bad(_span_name(sp, k), exc)
    return spans


def decode_payload(
    payload: Any, warnings: list[str] | None = None, *, source: str = "OTLP payload"
) -> list[SpanRecord]:
    """Spans of one OTLP JSON traces payload (any accepted shape).

    Raises ``OtlpDecodeError`` for a payload that is not traces. With ``warnings`` a bad span
    (or resource, or scope) is skipped and named there, one line per kind of problem, prefixed
    with ``source``; without, the first one raises too.
    """
    if warnings is None:
        return decode_spans(payload, None)
    skips = Skips(source)
    try:
        return decode_spans(payload, skips)
    finally:
        skips.flush(warnings)


def read_otlp_file(
    path: Path, warnings: list[str], *, follow_symlinks: bool = False
) -> list[SpanRecord]:
    """Every decodable span of an OTLP JSON-lines file (the store's ``spans*.jsonl``, the
    Collector file exporter's output). Lines that are not traces and bad spans inside lines
    are skipped and named in ``warnings``, one line per kind of problem. Raises
    ``UnreadableFile`` only when the file cannot be opened as a regular file."""
    spans: list[SpanRecord] = []
    skips = Skips(str(path))
    try:
        for number, payload in read_json_lines(path, warnings, follow_symlinks=follow_symlinks):
            try:
                spans.extend(decode_spans(payload, skips, f"line {number} "))
            except OtlpDecodeError as exc:
                skips.add(f"line {number}", "is not OTLP traces", str(exc))
    finally:
        skips.flush(warnings)
    return spans


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
