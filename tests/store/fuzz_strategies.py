"""Hypothesis strategies for fuzzing the readers: any JSON, and OTLP traces and GPU samples
with wrong types injected (shared by the store and backend fuzz tests)."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from wan_otel import semconv as sc

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid shape; one time in ten any JSON value at all (a wrong type injected)."""
    return st.integers(0, 9).flatmap(lambda i: json_values if i == 0 else valid)


hex_ids = st.binary(min_size=8, max_size=8).map(bytes.hex)
trace_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
times = st.integers(min_value=1, max_value=2**64).map(str) | st.integers(-5, 2**70)
any_values = st.recursive(
    st.builds(lambda v: {"stringValue": v}, st.text(max_size=8))
    | st.builds(lambda v: {"intValue": str(v)}, st.integers(-(2**64), 2**64))
    | st.builds(lambda v: {"doubleValue": v}, st.floats() | st.sampled_from(["NaN", "1e400"]))
    | st.builds(lambda v: {"boolValue": v}, st.booleans()),
    lambda kids: st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(kids, max_size=3)),
    max_leaves=6,
)
key_values = st.fixed_dictionaries({"key": field(st.text(max_size=8)), "value": field(any_values)})
events = st.fixed_dictionaries(
    {"name": field(st.text(max_size=8)), "timeUnixNano": field(times)},
    optional={"attributes": field(st.lists(key_values, max_size=2))},
)
span_times = st.tuples(st.integers(1, 2**64), st.integers(0, 10**12)).map(
    lambda t: (t[0], t[0] + t[1])
)


@st.composite
def spans(draw: st.DrawFn) -> dict[str, Any]:
    start, end = draw(span_times)
    span = draw(
        st.fixed_dictionaries(
            {
                "traceId": field(trace_ids),
                "spanId": field(hex_ids),
                "name": field(st.text(max_size=12)),
                "startTimeUnixNano": field(st.sampled_from([start, str(start)]) | times),
                "endTimeUnixNano": field(st.sampled_from([end, str(end)])),
            },
            optional={
                "parentSpanId": field(hex_ids),
                "kind": field(st.integers(0, 6) | st.sampled_from(["SPAN_KIND_SERVER", "x"])),
                "attributes": field(st.lists(key_values, max_size=3)),
                "status": field(st.fixed_dictionaries({"code": field(st.integers(0, 3))})),
                "events": field(st.lists(events, max_size=2)),
            },
        )
    )
    return span


resource_spans = st.fixed_dictionaries(
    {
        "scopeSpans": field(
            st.lists(
                st.fixed_dictionaries({"spans": field(st.lists(spans(), max_size=4))}), max_size=2
            )
        )
    },
    optional={
        "resource": field(st.fixed_dictionaries({"attributes": field(st.lists(key_values))}))
    },
)
payloads = st.one_of(
    st.fixed_dictionaries({"resourceSpans": field(st.lists(resource_spans, max_size=3))}),
    st.fixed_dictionaries({"batches": field(st.lists(resource_spans, max_size=2))}),
    st.builds(
        lambda p: {"trace": p},
        st.fixed_dictionaries({"resourceSpans": field(st.lists(resource_spans, max_size=2))}),
    ),
    json_values,
)


def readings(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return field(valid | st.sampled_from([math.nan, math.inf, -1.0, -1]))


sample_dicts = st.fixed_dictionaries(
    {
        sc.SAMPLE_TIME: field(st.integers(10**18, 10**18 + 10**10)),
        sc.SAMPLE_GPU: field(st.integers(0, 3)),
        sc.SAMPLE_UUID: field(st.sampled_from(["GPU-0", "GPU-1"])),
    },
    optional={
        sc.SAMPLE_SOURCE: field(st.sampled_from(["gpm", "nvml_util"])),
        sc.SAMPLE_SM_ACTIVE: readings(st.floats(0, 100)),
        sc.SAMPLE_ENERGY: readings(st.floats(0, 1e6)),
        sc.SAMPLE_PCIE_RX: readings(st.integers(0, 2**40)),
        sc.SAMPLE_MEMORY_USED: readings(st.integers(0, 2**40)),
        sc.SAMPLE_POWER: readings(st.floats(0, 1000)),
    },
)
