"""Property-based fuzzing of every store decoder (hypothesis).

The property: whatever bytes or JSON a reader gets, it returns records plus one-line warnings,
or raises its documented error (``OtlpDecodeError``, ``SampleError``), never anything else;
and what it returns is valid (times in range, readings finite, counters never going down).
Example counts are kept moderate: the whole module runs in a few seconds on 2 cores.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.store.fuzz_strategies import json_values, payloads, sample_dicts
from wan_otel.report.integrate import CounterSeries
from wan_otel.store.jsonl import read_json_lines
from wan_otel.store.otlp_json import (
    MAX_TIME_NS,
    OtlpDecodeError,
    SpanRecord,
    decode_payload,
    read_otlp_file,
)
from wan_otel.store.samples import COUNTERS, GpuSample, SampleError, read_samples

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- checks ----------------------------------------------------------------------------------


def _check_warnings(warnings: list[str]) -> None:
    for line in warnings:
        assert isinstance(line, str) and "\n" not in line and len(line) < 2000


def _check_spans(decoded: list[SpanRecord]) -> None:
    for span in decoded:
        assert 0 < span.start_ns <= span.end_ns < MAX_TIME_NS
        assert len(span.trace_id) == 32 and len(span.span_id) == 16
        int(span.trace_id, 16), int(span.span_id, 16)
        span.name.encode("utf-8")
        assert all(isinstance(k, str) for k in span.attributes)
        for key, value in span.attributes.items():
            key.encode("utf-8")
            if isinstance(value, str):
                value.encode("utf-8")
        assert all(0 <= e.time_ns < MAX_TIME_NS for e in span.events)


def _check_samples(samples: list[GpuSample]) -> None:
    by_gpu: dict[str, list[GpuSample]] = {}
    for sample in samples:
        by_gpu.setdefault(sample.uuid, []).append(sample)
        assert 0 < sample.t_ns < MAX_TIME_NS
        for value in sample.to_json().values():
            if isinstance(value, float):
                assert math.isfinite(value) and value >= 0
    for series in by_gpu.values():
        assert all(a.t_ns < b.t_ns for a, b in itertools.pairwise(series))
        for name in COUNTERS:
            values = [getattr(s, name) for s in series if getattr(s, name) is not None]
            assert values == sorted(values)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz") / "file.jsonl"


# -- properties ------------------------------------------------------------------------------

line_bytes = st.lists(
    st.binary(max_size=40)
    | st.sampled_from([b"[" * 3000, b'{"a": NaN}', b"\xff", b'{"x": "\\ud800"}', b"{}"])
    | json_values.map(lambda v: json.dumps(v).encode()),
    max_size=8,
).map(lambda lines: b"\n".join(lines))


@FUZZ
@given(data=line_bytes)
def test_json_lines_reader_is_total_over_bytes(scratch: Path, data: bytes) -> None:
    scratch.write_bytes(data)
    warnings: list[str] = []
    rows = list(read_json_lines(scratch, warnings))
    _check_warnings(warnings)
    numbers = [n for n, _ in rows]
    assert numbers == sorted(set(numbers))
    assert len(rows) + len(warnings) <= data.count(b"\n") + 1


@FUZZ
@given(
    data=line_bytes
    | st.lists(payloads, max_size=3).map(lambda ps: "\n".join(json.dumps(p) for p in ps).encode())
)
def test_otlp_file_reader_is_total_over_bytes(scratch: Path, data: bytes) -> None:
    scratch.write_bytes(data)
    warnings: list[str] = []
    decoded = read_otlp_file(scratch, warnings)
    _check_warnings(warnings)
    _check_spans(decoded)


@FUZZ
@given(payload=payloads)
def test_decoder_gives_spans_or_its_error_for_any_json(payload: Any) -> None:
    warnings: list[str] = []
    try:
        decoded = decode_payload(payload, warnings)
    except OtlpDecodeError:
        with pytest.raises(OtlpDecodeError):  # strict mode agrees: not traces at all
            decode_payload(payload)
        return
    _check_warnings(warnings)
    _check_spans(decoded)
    if warnings:  # something was skipped: strict mode raises instead
        with pytest.raises(OtlpDecodeError):
            decode_payload(payload)
    else:
        assert decode_payload(payload) == decoded


@FUZZ
@given(obj=sample_dicts | json_values)
def test_sample_decoder_gives_a_sample_or_its_error(obj: Any) -> None:
    dropped: list[str] = []
    try:
        sample = GpuSample.from_json(obj, dropped)
    except SampleError:
        return
    _check_samples([sample])
    assert all(isinstance(obj.get(key), (int, float, str, list, dict)) for key in dropped)


@FUZZ
@given(rows=st.lists(sample_dicts | json_values, max_size=12))
def test_samples_reader_keeps_only_valid_readings(scratch: Path, rows: list[Any]) -> None:
    scratch.write_text("".join(json.dumps(r) + "\n" for r in rows))
    warnings: list[str] = []
    samples = read_samples(scratch, warnings)
    _check_warnings(warnings)
    _check_samples(samples)
    assert len(samples) <= len(rows)


@FUZZ
@given(
    points=st.lists(
        st.tuples(st.integers(-(2**63), 2**63), st.floats() | st.integers(0, 2**70)), max_size=12
    ),
    window=st.tuples(st.integers(-(2**63), 2**63), st.integers(-(2**63), 2**63)),
)
def test_counter_series_means_are_percentages_or_none(
    points: list[tuple[int, float]], window: tuple[int, int]
) -> None:
    series = CounterSeries([t for t, _ in points], [float(v) for _, v in points])
    mean = series.mean(*window)
    assert mean.pct is None or 0.0 <= mean.pct <= 110.0  # above 100 only by timing jitter
    assert mean.pct is not None or mean.reason
    assert 0.0 <= mean.tolerance_pct <= 100.0
