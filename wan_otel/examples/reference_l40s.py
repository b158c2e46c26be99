"""The reference L40S run (``shared/reference/wan22-l40s-report.txt``) rebuilt as a stored run.

Spans carry the reference trace table's durations and allocator figures; GPU samples carry
its SM figures (L40S has no GPM, so the source is ``nvml_util``). Where the reference is
inconsistent, one value is chosen and the report shows it once: the root span lasts the
"Total Latency" (593.45 s), stages last what the trace table says, and the 36.41 s between
them is left unattributed, as it was in the original run. Used by the tests and as the
bundled example: ``python -m wan_otel.examples.reference_l40s --store DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wan_otel import semconv as sc
from wan_otel.store.otlp_json import encode_attributes
from wan_otel.store.run_store import RunStore
from wan_otel.store.summary import OK, RunSummary

RUN_ID = "reference-l40s"
T0_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
GIB = 1 << 30
UUID = "GPU-4e1b0c2a-7d0f-4a55-9c3e-0b1d2e3f4a5b"
TRACE_ID = "5a11e40e2e2e4c1c8d3b7f5e9a0c1d2e"
SAMPLE_INTERVAL_S = 0.5
TOTAL_S = 593.45
AVG_SM_PCT = 74.2

# (duration s, SM %, mem start GiB, mem end GiB, peak GiB) of S0..S29, from the trace table.
STEP_S = [
    12.74,
    12.54,
    12.67,
    12.69,
    12.73,
    12.78,
    12.83,
    12.77,
    12.78,
    12.81,
    12.83,
    12.82,
    12.83,
    12.84,
    12.86,
    12.88,
    12.87,
    12.87,
    12.87,
    12.87,
    12.86,
    12.87,
    12.88,
    12.87,
    12.88,
    12.87,
    12.87,
    12.87,
    12.86,
    12.88,
]
STEP_SM = [
    94.9,
    100.0,
    100.0,
    99.5,
    99.9,
    100.0,
    100.0,
    100.0,
    100.0,
    99.9,
    99.9,
    100.0,
    100.0,
    100.0,
    100.0,
    99.9,
    99.9,
    100.0,
    100.0,
    99.9,
    100.0,
    100.0,
    99.9,
    99.8,
    100.0,
    99.9,
    100.0,
    100.0,
    100.0,
    99.9,
]


@dataclass
class _Span:
    name: str
    start_s: float
    end_s: float
    sm_pct: float
    mem: tuple[float, float, float] | None
    attrs: dict[str, Any] = field(default_factory=dict)
    span_id: str = ""
    parent: str | None = None


def _timeline() -> tuple[list[_Span], list[tuple[float, float, float]]]:
    """Spans and the piecewise-constant activity (start, end, fraction) covering the root."""
    spans: list[_Span] = []
    t = 0.0

    def add(
        name: str,
        dur: float,
        sm: float,
        mem: tuple[float, float, float] | None,
        parent: str | None,
        **attrs: Any,
    ) -> _Span:
        nonlocal t
        span = _Span(name, t, t + dur, sm, mem, attrs, f"{len(spans) + 2:016x}", parent)
        spans.append(span)
        t += dur
        return span

    root_id = f"{1:016x}"
    add(sc.SPAN_INITIALIZE, 90.14, 0.2, (0.0, 2.63, 2.63), root_id)
    add(sc.SPAN_PREPROCESS, 0.001, 0.0, (2.63, 2.63, 2.63), root_id)
    add(sc.SPAN_TEXT_ENCODE, 36.44, 0.1, (2.63, 2.63, 2.63), root_id)
    t += 30.3989  # untraced: the transformer's 18.7 GiB reach the GPU here
    loop = add(
        sc.SPAN_DENOISE, 0.0, 0.0, (21.34, 21.554, 31.27), root_id, **{sc.DENOISE_NUM_STEPS: 30}
    )
    t = loop.start_s
    mem = 21.34
    for i, (dur, sm) in enumerate(zip(STEP_S, STEP_SM)):
        load_s = 0.0072 if i == 0 else 0.0001
        after_load = mem if i < 2 else 21.526
        add(
            sc.SPAN_WEIGHT_TRANSFER,
            load_s,
            0.0,
            (mem, after_load, max(mem, after_load)),
            loop.span_id,
            **{
                sc.COMPONENT_NAME: "transformer",
                sc.TRANSFER_DIRECTION: "to_device",
                sc.TRANSFER_BYTES: 0,
                sc.DENOISE_STEP: i,
            },
        )
        end = {0: 21.476, 10: 21.546}.get(i, 21.554)
        peak = {0: 31.11, 1: 31.22}.get(i, 31.27)
        add(
            sc.SPAN_DENOISE_STEP,
            dur,
            sm,
            (after_load, end, peak),
            loop.span_id,
            **{sc.DENOISE_STEP: i, sc.DENOISE_TIMESTEP: round(1000.0 * (1 - i / 30), 3)},
        )
        mem = end
    loop.end_s = t
    t += 0.5  # untraced: the transformer goes back to the host
    add(sc.SPAN_VAE_DECODE, 45.86, 99.9, (2.93, 4.55, 23.54), root_id)
    # The remaining 5.51 s to the root's end are untraced (export, in the original run).
    windows = sorted(
        (s.start_s, s.end_s, s.sm_pct / 100)
        for s in spans
        if s.name not in (sc.SPAN_DENOISE,) and s.end_s > s.start_s
    )
    activity: list[tuple[float, float, float]] = []
    cursor = 0.0
    gaps = []
    for start, end, frac in windows:
        if start > cursor + 1e-9:
            gaps.append((cursor, start))
        activity.append((start, end, frac))
        cursor = max(cursor, end)
    gaps.append((cursor, TOTAL_S))
    known = sum((e - s) * f for s, e, f in activity)
    gap_s = sum(e - s for s, e in gaps)
    gap_frac = (AVG_SM_PCT / 100 * TOTAL_S - known) / gap_s
    activity += [(s, e, gap_frac) for s, e in gaps]
    return spans, sorted(activity)


def _otlp_span(span: _Span) -> dict[str, Any]:
    attrs = {sc.RUN_ID: RUN_ID, **span.attrs}
    if span.mem is not None:
        start, end, peak = span.mem
        attrs.update(
            {
                sc.MEMORY_ALLOCATED_START: round(start * GIB),
                sc.MEMORY_ALLOCATED_END: round(end * GIB),
                sc.MEMORY_ALLOCATED_PEAK: round(peak * GIB),
            }
        )
    out: dict[str, Any] = {
        "traceId": TRACE_ID,
        "spanId": span.span_id,
        "name": span.name,
        "kind": 1,
        "startTimeUnixNano": str(T0_NS + round(span.start_s * 1e9)),
        "endTimeUnixNano": str(T0_NS + round(span.end_s * 1e9)),
        "attributes": encode_attributes(attrs),
        "status": {"code": 0},
    }
    if span.parent:
        out["parentSpanId"] = span.parent
    return out


ROOT_ATTRIBUTES: dict[str, Any] = {
    sc.RUN_ID: RUN_ID,
    sc.MODEL_NAME: "Wan2.2-TI2V-5B",
    sc.MODEL_TASK: "ti2v",
    sc.MODEL_SOURCE: "checkpoint",
    sc.MODEL_ARCHITECTURE: "DiT",
    sc.REQUEST_WIDTH: 1280,
    sc.REQUEST_HEIGHT: 704,
    sc.REQUEST_NUM_FRAMES: 161,
    sc.REQUEST_FPS: 24,
    sc.REQUEST_NUM_STEPS: 30,
    sc.REQUEST_GUIDANCE: 5.0,
    sc.OFFLOAD_MODE: "model",
    sc.DTYPE_TRANSFORMER: "float16",
    sc.DTYPE_VAE: "float32",
    sc.DEVICE: "cuda:0",
    sc.GPU_NAME: "NVIDIA L40S",
    sc.GPU_UUID: UUID,
    sc.GPU_MEMORY_CAPACITY: round(44.4 * GIB),
    sc.CUDA_VERSION: "12.4",
    sc.TORCH_VERSION: "2.5.1+cu124",
    sc.weight_bytes_key("transformer"): round(18.70 * GIB),
    sc.MEMORY_ALLOCATED_START: 0,
    sc.MEMORY_ALLOCATED_END: round(2.64 * GIB),
    sc.MEMORY_ALLOCATED_PEAK: round(31.27 * GIB),
}


def reference_spans_payload() -> dict[str, Any]:
    spans, _ = _timeline()
    root = {
        "traceId": TRACE_ID,
        "spanId": f"{1:016x}",
        "name": sc.SPAN_GENERATE,
        "kind": 1,
        "startTimeUnixNano": str(T0_NS),
        "endTimeUnixNano": str(T0_NS + round(TOTAL_S * 1e9)),
        "attributes": encode_attributes(ROOT_ATTRIBUTES),
        "status": {"code": 0},
    }
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": encode_attributes({"service.name": "wan-otel"})},
                "scopeSpans": [
                    {
                        "scope": {"name": "wan_otel.pipeline"},
                        "spans": [_otlp_span(s) for s in spans] + [root],
                    }
                ],
            }
        ]
    }


def reference_samples() -> Iterator[dict[str, Any]]:
    """Cumulative activity samples every 0.5 s and at every span boundary."""
    spans, activity = _timeline()
    times = {round(i * SAMPLE_INTERVAL_S, 6) for i in range(int(TOTAL_S / SAMPLE_INTERVAL_S) + 1)}
    times |= {round(s.start_s, 6) for s in spans} | {round(s.end_s, 6) for s in spans}
    times |= {TOTAL_S}
    for t in sorted(times):
        busy = sum(max(0.0, min(t, e) - s) * f for s, e, f in activity)
        yield {
            sc.SAMPLE_TIME: T0_NS + round(t * 1e9),
            sc.SAMPLE_GPU: 0,
            sc.SAMPLE_UUID: UUID,
            sc.SAMPLE_SOURCE: "nvml_util",
            sc.SAMPLE_SM_ACTIVE: round(busy, 9),
        }


def write_reference_run(store: Path, run_id: str = RUN_ID) -> Path:
    """Write the reference run into ``store``; returns its folder."""
    folder = RunStore(store).ensure_run(run_id)
    payload = json.dumps(reference_spans_payload(), separators=(",", ":"))
    if run_id != RUN_ID:
        payload = payload.replace(f'"{RUN_ID}"', f'"{run_id}"')
    folder.spans().write_text(payload + "\n", encoding="utf-8")
    with folder.samples().open("w", encoding="utf-8") as out:
        for sample in reference_samples():
            out.write(json.dumps(sample, separators=(",", ":")) + "\n")
    summary = RunSummary(
        run_id=run_id,
        status=OK,
        start_ns=T0_NS,
        total_s=TOTAL_S,
        model="Wan2.2-TI2V-5B",
        resolution="1280x704",
        num_frames=161,
        num_steps=30,
    )
    folder.write_summary(summary)
    return folder.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", type=Path, default=Path(os.environ.get("WAN_OTEL_STORE", "wan-otel-runs"))
    )
    args = parser.parse_args()
    print(write_reference_run(args.store))


if __name__ == "__main__":
    main()
