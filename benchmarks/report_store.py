"""Benchmark: whole-process time of `wan-otel report` on a large store and a long run.

Builds a store of N runs of 50 steps (each with the full span tree: stages, steps, two
transformer passes a step, allocator figures) plus one 1,000-step run, GPU samples every 0.1 s,
then times `wan-otel report --run-id ...` as a subprocess (Python start-up included).

    python benchmarks/report_store.py --runs 10000 [--store DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wan_otel import semconv as sc
from wan_otel.store.otlp_json import encode_attributes

S = 1_000_000_000
T0 = 1_767_225_600 * S
UUID = "GPU-bench-0000"
PLACEHOLDER = "@@RUN@@"


def _span(sid: int, parent: int | None, name: str, start: int, end: int, **attrs: object) -> dict:
    attrs = {
        sc.RUN_ID: PLACEHOLDER,
        sc.MEMORY_ALLOCATED_START: 1 << 30,
        sc.MEMORY_ALLOCATED_END: 1 << 30,
        sc.MEMORY_ALLOCATED_PEAK: 3 << 30,
        **attrs,
    }
    out = {
        "traceId": "ab" * 16,
        "spanId": f"{sid:016x}",
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": encode_attributes(attrs),
        "status": {"code": 0},
    }
    if parent:
        out["parentSpanId"] = f"{parent:016x}"
    return out


def run_template(steps: int, step_s: float = 2.0) -> tuple[str, str]:
    """(spans.jsonl, gpu_samples.jsonl) text of one run, run id as a placeholder."""
    spans, sid, t = [], 2, T0
    for name, dur in (
        (sc.SPAN_INITIALIZE, 5.0),
        (sc.SPAN_PREPROCESS, 0.01),
        (sc.SPAN_TEXT_ENCODE, 1.0),
    ):
        spans.append(_span(sid, 1, name, t, t + int(dur * S)))
        sid, t = sid + 1, t + int(dur * S)
    loop_id, loop_start = sid, t
    sid += 1
    for i in range(steps):
        step_id = sid
        end = t + int(step_s * S)
        spans.append(
            _span(
                step_id,
                loop_id,
                sc.SPAN_DENOISE_STEP,
                t,
                end,
                **{sc.DENOISE_STEP: i, sc.DENOISE_TIMESTEP: 999.0 - i},
            )
        )
        half = (end - t) // 2
        for k, branch in enumerate(("cond", "uncond")):
            spans.append(
                _span(
                    sid + 1 + k,
                    step_id,
                    sc.SPAN_TRANSFORMER_FORWARD,
                    t + k * half,
                    t + (k + 1) * half,
                    **{sc.TRANSFORMER_BRANCH: branch},
                )
            )
        sid, t = sid + 3, end
    spans.append(_span(loop_id, 1, sc.SPAN_DENOISE, loop_start, t))
    for name, dur in ((sc.SPAN_VAE_DECODE, 10.0), (sc.SPAN_EXPORT, 0.5)):
        spans.append(_span(sid, 1, name, t, t + int(dur * S)))
        sid, t = sid + 1, t + int(dur * S)
    spans.append(
        _span(
            1,
            None,
            sc.SPAN_GENERATE,
            T0,
            t,
            **{
                sc.GPU_UUID: UUID,
                sc.MODEL_NAME: "Wan2.2-TI2V-5B",
                sc.REQUEST_WIDTH: 1280,
                sc.REQUEST_HEIGHT: 704,
                sc.REQUEST_NUM_FRAMES: 121,
                sc.REQUEST_NUM_STEPS: steps,
                sc.GPU_MEMORY_CAPACITY: 80 << 30,
                sc.OFFLOAD_MODE: "none",
            },
        )
    )
    # The SDK exports in batches of up to 512 spans: one line per batch.
    lines = [
        json.dumps(
            {
                "resourceSpans": [
                    {
                        "resource": {"attributes": []},
                        "scopeSpans": [
                            {"scope": {"name": "wan_otel.pipeline"}, "spans": spans[i : i + 512]}
                        ],
                    }
                ]
            },
            separators=(",", ":"),
        )
        for i in range(0, len(spans), 512)
    ]
    samples, busy, now = [], 0.0, T0 - S
    while now <= t + S:
        samples.append(
            json.dumps(
                {
                    "t_ns": now,
                    "gpu": 0,
                    "uuid": UUID,
                    "source": "gpm",
                    "sm_active_s": round(busy, 6),
                }
            )
        )
        busy += 0.09
        now += S // 10
    return "\n".join(lines) + "\n", "\n".join(samples) + "\n"


def write_run(store: Path, run_id: str, template: tuple[str, str]) -> None:
    folder = store / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spans.jsonl").write_text(template[0].replace(PLACEHOLDER, run_id))
    (folder / "gpu_samples.jsonl").write_text(template[1])


def time_report(store: Path, run_id: str, repeat: int) -> tuple[float, float]:
    cmd = [
        sys.executable,
        "-m",
        "wan_otel.cli",
        "report",
        "--run-id",
        run_id,
        "--store",
        str(store),
    ]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="wan-otel-bench-"))
    template = run_template(50)
    started = time.perf_counter()
    for i in range(args.runs):
        write_run(store, f"run-{i:05d}", template)
    write_run(store, "long-1000-steps", run_template(1000))
    built = time.perf_counter() - started
    mid = f"run-{args.runs // 2:05d}"
    med50, max50 = time_report(store, mid, args.repeat)
    med1k, max1k = time_report(store, "long-1000-steps", args.repeat)
    startup = statistics.median(
        _time([sys.executable, "-c", "import wan_otel.cli"]) for _ in range(args.repeat)
    )
    print(f"store: {args.runs} runs of 50 steps + one of 1,000 steps, built in {built:.1f} s")
    print(f"{'case':<38} {'median s':>9} {'max s':>7}")
    print(f"{'report, 50-step run in the store':<38} {med50:9.3f} {max50:7.3f}")
    print(f"{'report, 1,000-step run':<38} {med1k:9.3f} {max1k:7.3f}")
    print(f"{'python start + import wan_otel.cli':<38} {startup:9.3f}")


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
