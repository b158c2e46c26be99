"""Properties of the report over random runs (hypothesis)."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wan_otel import semconv as sc
from wan_otel.report import build_report, render_markdown, render_text
from wan_otel.store.otlp_json import SpanRecord
from wan_otel.store.run_store import RunData
from wan_otel.store.samples import GpuSample

S = 1_000_000_000
UUID = "GPU-0000"
T0 = 1_700_000_000 * S


@st.composite
def runs(draw: st.DrawFn) -> RunData:
    gaps = st.integers(min_value=0, max_value=3 * S)
    t = T0 + draw(gaps)
    spans: list[SpanRecord] = []
    ids = iter(range(2, 10_000))

    def span(name: str, start: int, end: int, parent: str, **attrs: object) -> SpanRecord:
        attributes: dict[str, Any] = {sc.RUN_ID: "r", **attrs}
        record = SpanRecord("a" * 32, f"{next(ids):016x}", parent, name, start, end, attributes)
        spans.append(record)
        return record

    root_id = f"{1:016x}"
    for name in sc.STAGE_SPANS:
        if not draw(st.booleans()) and name != sc.SPAN_DENOISE:
            continue
        t += draw(gaps)
        if name == sc.SPAN_DENOISE:
            loop_id_start = t
            steps = draw(st.integers(min_value=1, max_value=12))
            # Two experts (Wan2.2 A14B) in some runs: the high-noise one up to the switch.
            switch = draw(st.none() | st.integers(min_value=0, max_value=steps))
            loop = span(name, t, t, root_id)
            for i in range(steps):
                expert: dict[str, str] = {}
                if switch is not None:
                    expert[sc.DENOISE_EXPERT] = "transformer" if i < switch else "transformer_2"
                t += draw(st.integers(min_value=0, max_value=S // 10))
                duration = draw(st.integers(min_value=S // 100, max_value=5 * S))
                peak = draw(st.integers(min_value=0, max_value=1 << 34))
                span(
                    sc.SPAN_DENOISE_STEP,
                    t,
                    t + duration,
                    loop.span_id,
                    **expert,
                    **{
                        sc.DENOISE_STEP: i,
                        sc.MEMORY_ALLOCATED_START: 0,
                        sc.MEMORY_ALLOCATED_END: 0,
                        sc.MEMORY_ALLOCATED_PEAK: peak,
                    },
                )
                t += duration
            spans.remove(loop)
            spans.append(
                SpanRecord(
                    loop.trace_id, loop.span_id, root_id, name, loop_id_start, t, loop.attributes
                )
            )
        else:
            duration = draw(st.integers(min_value=0, max_value=20 * S))
            span(name, t, t + duration, root_id)
            t += duration
    end = t + draw(gaps)
    spans.append(
        SpanRecord(
            "a" * 32,
            root_id,
            None,
            sc.SPAN_GENERATE,
            T0,
            end,
            {
                sc.RUN_ID: "r",
                sc.GPU_UUID: UUID,
                sc.REQUEST_NUM_FRAMES: 9,
                sc.REQUEST_WIDTH: 64,
                sc.REQUEST_HEIGHT: 32,
            },
        )
    )
    samples, busy, now = [], 0.0, T0 - S
    while now <= end + S:
        samples.append(GpuSample(now, 0, UUID, "gpm", sm_active_s=busy))
        interval = draw(st.sampled_from([S // 10, S // 4, S // 2]))
        busy += draw(st.floats(min_value=0, max_value=1)) * interval / S
        now += interval
    return RunData("r", spans, samples)


@settings(max_examples=60, deadline=None)
@given(runs())
def test_breakdown_load_and_summary_agree(run: RunData) -> None:
    report = build_report(run)
    s = report.summary
    # The latency breakdown sums to 100 % of the total.
    assert sum(line.share_pct or 0 for line in report.stages) == pytest.approx(100.0)
    present = [line.duration_s for line in report.stages if line.duration_s is not None]
    assert sum(present) == pytest.approx(s.total_s, abs=1e-6)
    # Load = duration x SM % / 100 on every row that has an SM figure.
    for row in report.trace:
        if row.sm_pct is None:
            assert row.load is None
        else:
            assert 0.0 <= row.sm_pct <= 100.0 + 1e-9  # not clipped: float rounding only
            assert row.load == pytest.approx(row.duration_s * row.sm_pct / 100)
    # Summary figures agree with the trace rows.
    total_row = report.trace[-1]
    assert total_row.duration_s == pytest.approx(s.total_s)
    assert total_row.sm_pct == s.avg_sm_pct
    steps = [row for row in report.trace if row.name.startswith("Step ")]
    assert len(steps) == s.steps_done
    assert s.step_s_mean == pytest.approx(statistics.fmean(r.duration_s for r in steps))
    assert s.peak_memory_gb == pytest.approx(max(r.peak_mem_gb or 0 for r in steps))
    denoise = next(line for line in report.stages if line.key == "denoising")
    assert (
        denoise.duration_s is not None
        and denoise.duration_s >= sum(r.duration_s for r in steps) - 1e-9
    )
    # A two-expert run's experts split the steps, their time and their peaks between them.
    if report.experts:
        assert sum(e.steps for e in report.experts) == s.steps_done
        assert sum(e.duration_s for e in report.experts) == pytest.approx(
            sum(r.duration_s for r in steps)
        )
        peaks = [e.peak_memory_gb for e in report.experts if e.peak_memory_gb is not None]
        assert max(peaks) == pytest.approx(s.peak_memory_gb)
        for e in report.experts:
            assert e.sm_pct is None or 0.0 <= e.sm_pct <= 100.0 + 1e-9
        assert "[Experts]" in render_text(report) and "## Experts" in render_markdown(report)
    else:
        assert not any("noise" in r.name for r in steps)
