"""Reading GPU samples: bad readings are dropped with a note, never averaged in."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from wan_otel import semconv as sc
from wan_otel.report.integrate import CounterSeries
from wan_otel.store.samples import GpuSample, SampleError, read_samples

S = 1_000_000_000
T0 = 1_767_225_600 * S
UUID = "GPU-0"


def _sample(i: int, busy: Any, **extra: Any) -> dict[str, Any]:
    return {
        sc.SAMPLE_TIME: T0 + i * S // 2,
        sc.SAMPLE_GPU: 0,
        sc.SAMPLE_UUID: UUID,
        sc.SAMPLE_SOURCE: "gpm",
        sc.SAMPLE_SM_ACTIVE: busy,
        **extra,
    }


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _steady(n: int, fraction: float) -> list[dict[str, Any]]:
    """``n`` samples 0.5 s apart of a GPU busy ``fraction`` of the time."""
    return [_sample(i, round(i * 0.5 * fraction, 9)) for i in range(n)]


def test_non_finite_negative_and_decreasing_readings_do_not_turn_74_into_100(
    tmp_path: Path,
) -> None:
    rows = _steady(41, 0.74)
    rows[10][sc.SAMPLE_SM_ACTIVE] = math.nan
    rows[20][sc.SAMPLE_SM_ACTIVE] = -3.0
    rows[30][sc.SAMPLE_SM_ACTIVE] = 0.01  # a counter that went down: not a restart here
    path = _write(tmp_path / "gpu_samples.jsonl", rows)
    # Read as a Prometheus series, where a drop is a restart, the run looks more than busy.
    raw = CounterSeries([r[sc.SAMPLE_TIME] for r in rows], [r[sc.SAMPLE_SM_ACTIVE] for r in rows])
    assert raw.mean(T0, T0 + 20 * S).reason == "GPU counter rises faster than time (128 % busy)"

    warnings: list[str] = []
    samples = read_samples(path, warnings)
    assert len(samples) == 41  # every sample kept, three readings dropped
    assert [i for i, s in enumerate(samples) if s.sm_active_s is None] == [10, 20, 30]
    series = CounterSeries(
        [s.t_ns for s in samples if s.sm_active_s is not None],
        [s.sm_active_s for s in samples if s.sm_active_s is not None],
    )
    assert series.mean(T0, T0 + 20 * S).pct == pytest.approx(74.0)
    assert warnings == [
        f"{path}: line 11, line 21 have sm_active_s not a finite non-negative number "
        "(first: nan); dropped that reading",
        f"{path}: line 31 has sm_active_s out of line with its GPU's other samples "
        "(the counter would go down) (0.01); dropped that reading",
    ]


def test_a_sample_read_at_a_wrong_time_costs_only_its_reading(tmp_path: Path) -> None:
    rows = _steady(10, 1.0)
    # A clock step back: the sample of 4.5 s claims 1.25 s. Sorted by time it sits between
    # 1.0 s and 1.5 s with a counter of 4.5, above both neighbours' later readings.
    rows[9][sc.SAMPLE_TIME] = T0 + 5 * S // 4
    warnings: list[str] = []
    samples = read_samples(_write(tmp_path / "s.jsonl", rows), warnings)
    kept = [(s.t_ns - T0) / S for s in samples if s.sm_active_s is not None]
    assert kept == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    assert warnings == [
        f"{tmp_path / 's.jsonl'}: line 10 has sm_active_s out of line with its GPU's other "
        "samples (the counter would go down) (4.5); dropped that reading"
    ]


def test_out_of_order_lines_are_sorted_not_dropped(tmp_path: Path) -> None:
    rows = _steady(6, 0.5)
    rows.reverse()
    warnings: list[str] = []
    samples = read_samples(_write(tmp_path / "s.jsonl", rows), warnings)
    assert warnings == []
    assert [s.sm_active_s for s in samples] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


def test_samples_at_one_time_keep_the_first(tmp_path: Path) -> None:
    rows = _steady(3, 1.0)
    rows += [dict(rows[1]), {**rows[2], sc.SAMPLE_SM_ACTIVE: 9.0}]
    other_gpu = {**rows[1], sc.SAMPLE_UUID: "GPU-1"}  # same time, another GPU: fine
    path = _write(tmp_path / "s.jsonl", [*rows, other_gpu])
    warnings: list[str] = []
    samples = read_samples(path, warnings)
    assert [(s.uuid, s.sm_active_s) for s in samples] == [
        ("GPU-0", 0.0),
        ("GPU-0", 0.5),
        ("GPU-0", 1.0),
        ("GPU-1", 0.5),
    ]
    assert warnings == [
        f"{path}: line 4 repeats an earlier sample of its GPU (line 2); skipped",
        f"{path}: line 5 has other values at the time of an earlier sample of its GPU "
        "(line 3); skipped",
    ]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ([1, 2], "not a JSON object ([1, 2])"),
        ({sc.SAMPLE_GPU: 0, sc.SAMPLE_UUID: UUID}, "no t_ns"),
        ({**_sample(0, 0.0), sc.SAMPLE_TIME: "soon"}, "t_ns is not an integer ('soon')"),
        ({**_sample(0, 0.0), sc.SAMPLE_TIME: 1e30}, "t_ns outside 1970..9999 (1e+30)"),
        ({**_sample(0, 0.0), sc.SAMPLE_TIME: -1}, "t_ns outside 1970..9999 (-1)"),
        ({**_sample(0, 0.0), sc.SAMPLE_GPU: True}, "gpu is not an integer (True)"),
        ({**_sample(0, 0.0), sc.SAMPLE_GPU: -1}, "gpu is not a device index (-1)"),
        ({**_sample(0, 0.0), sc.SAMPLE_UUID: 7}, "uuid is not a GPU UUID (7)"),
        ({**_sample(0, 0.0), sc.SAMPLE_SOURCE: ["gpm"]}, "source is not a name (['gpm'])"),
    ],
)
def test_a_line_that_is_not_a_sample_is_skipped(tmp_path: Path, row: Any, problem: str) -> None:
    path = _write(tmp_path / "s.jsonl", [_sample(1, 0.5), row])
    warnings: list[str] = []
    assert len(read_samples(path, warnings)) == 1
    assert warnings == [f"{path}: line 2 is not a GPU sample ({problem}); skipped"]
    with pytest.raises(SampleError):
        GpuSample.from_json(row)


@pytest.mark.parametrize("value", ["1.5", True, None, [1], {"a": 1}, -1, math.inf, 1e301])
def test_a_bad_reading_is_left_out_and_the_sample_kept(value: Any) -> None:
    obj = _sample(0, 0.5, **{sc.SAMPLE_POWER: value, sc.SAMPLE_MEMORY_USED: 1 << 30})
    dropped: list[str] = []
    sample = GpuSample.from_json(obj, dropped)
    assert sample.power_w is None and sample.memory_used_bytes == 1 << 30
    assert sample.sm_active_s == 0.5
    assert dropped == ([] if value is None else [sc.SAMPLE_POWER])
    if value is not None:
        with pytest.raises(SampleError, match="power_w is not a finite non-negative number"):
            GpuSample.from_json(obj)


def test_byte_counters_must_be_whole_numbers() -> None:
    dropped: list[str] = []
    obj = _sample(0, 0.5, **{sc.SAMPLE_PCIE_RX: 10.5, sc.SAMPLE_PCIE_TX: 4.0})
    sample = GpuSample.from_json(obj, dropped)
    assert sample.pcie_rx_bytes is None and sample.pcie_tx_bytes == 4
    assert dropped == [sc.SAMPLE_PCIE_RX]
