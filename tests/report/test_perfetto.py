"""The run as Chrome trace JSON for Perfetto and chrome://tracing: a process per rank, a
thread per lane, a complete event per span, counters for SM activity and memory."""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.report.helpers import run_cli
from tests.report.multirank import Plan, write_parallel_run
from wan_otel.report import build_report
from wan_otel.report.render_perfetto import MEMORY_COUNTERS, SM_COUNTER, render_perfetto
from wan_otel.store import RunStore

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "runs"
ULYSSES = "h200-ti2v-5b-random-ulysses2-10steps-20261128T235018Z"
A14B_OFFLOAD = "h200-t2v-a14b-random-model-4steps-20261128T233252Z"


def _trace(store: Path, run_id: str) -> dict[str, Any]:
    run = RunStore(store).read(run_id)
    return dict(json.loads(render_perfetto(build_report(run), run)))


def validate(trace: dict[str, Any]) -> None:
    """What the viewers need of a JSON trace: each event's phase, time, process and thread;
    complete events with a name and a non-negative duration, never overlapping another of
    their thread unless nested in it; counters with finite numbers; names for every process
    and thread used."""
    events = trace["traceEvents"]
    assert isinstance(events, list) and events
    for event in events:
        assert event["ph"] in ("X", "C", "M"), event
        for key in ("ts", "pid", "tid"):
            assert isinstance(event[key], (int, float)) and not isinstance(event[key], bool)
        assert isinstance(event["name"], str) and event["name"]
        assert math.isfinite(event["ts"]) and event["ts"] >= 0
    threads: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for event in events:
        if event["ph"] == "X":
            assert event["dur"] >= 0 and math.isfinite(event["dur"])
            threads[event["pid"], event["tid"]].append((event["ts"], event["ts"] + event["dur"]))
        elif event["ph"] == "C":
            assert event["args"] and all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in event["args"].values()
            )
    for slices in threads.values():
        slices.sort(key=lambda s: (s[0], -s[1]))
        for (_, end), (start, _) in itertools.pairwise(slices):
            assert start >= end - 1e-3  # lanes never overlap: a thread nests trivially
    named = {(e["pid"], e["tid"]) for e in events if e["name"] == "thread_name"}
    assert set(threads) <= named
    processes = {e["pid"] for e in events if e["name"] == "process_name"}
    assert {pid for pid, _ in threads} == processes


def test_two_gpu_run_is_a_process_per_rank_with_counters() -> None:
    trace = _trace(EXAMPLES, ULYSSES)
    validate(trace)
    events = trace["traceEvents"]
    spans = RunStore(EXAMPLES).read(ULYSSES).spans
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == len(spans) == 162
    assert min(e["ts"] for e in slices) == 0
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert names == {
        1: "rank 0 · NVIDIA H200 · GPU-e3367e5d",
        2: "rank 1 · NVIDIA H200 · GPU-6e5ec113",
    }
    for pid in (1, 2):
        counters = {e["name"] for e in events if e["ph"] == "C" and e["pid"] == pid}
        assert counters == {SM_COUNTER, *MEMORY_COUNTERS.values()}
        collectives = [e for e in slices if e["pid"] == pid and e["cat"] == "collective"]
        assert len(collectives) == 40
        assert {e["name"] for e in collectives} == {"all_to_all", "all_gather"}


def test_span_events_carry_times_and_attributes() -> None:
    trace = _trace(EXAMPLES, ULYSSES)
    run = RunStore(EXAMPLES).read(ULYSSES)
    origin = min(s.start_ns for s in run.spans)
    assert trace["otherData"]["origin_unix_ns"] == str(origin)
    by_id = {s.span_id: s for s in run.spans}
    for event in (e for e in trace["traceEvents"] if e["ph"] == "X"):
        span = by_id[event["args"]["span.id"]]
        assert event["ts"] == round((span.start_ns - origin) / 1e3, 3)
        assert event["dur"] == round((span.end_ns - span.start_ns) / 1e3, 3)
        assert event["args"]["span.name"] == span.name
        assert event["pid"] == int(span.attributes["wan.rank"]) + 1
    step = next(e for e in trace["traceEvents"] if e["name"] == "Step 3" and e["pid"] == 1)
    assert step["args"]["wan.denoise.step"] == 3 and step["cat"] == "step"
    assert isinstance(step["args"]["sm_pct"], float)
    collective = next(e for e in trace["traceEvents"] if e.get("cat") == "collective")
    assert isinstance(collective["args"]["wan.collective.durations"], list)


def test_sm_counter_reads_each_gpus_activity(tmp_path: Path) -> None:
    """Each GPU works at its fraction from its first step to the end of its VAE decode
    (tests/report/multirank.py): the counter reads it exactly inside the steps."""
    plan = Plan(sm=(0.92, 0.95))
    write_parallel_run(tmp_path, plan)
    trace = _trace(tmp_path, plan.run_id)
    validate(trace)
    events = trace["traceEvents"]
    for rank, fraction in enumerate(plan.sm):
        steps = [e for e in events if e.get("cat") == "step" and e["pid"] == rank + 1]
        lo, hi = min(e["ts"] for e in steps), max(e["ts"] + e["dur"] for e in steps)
        sm = [e for e in events if e["name"] == SM_COUNTER and e["pid"] == rank + 1]
        inside = [e["args"]["%"] for e in sm if lo + 0.25e6 <= e["ts"] <= hi - 0.25e6]
        assert len(inside) >= 5
        assert inside == pytest.approx([100 * fraction] * len(inside), abs=1e-3)


def test_memory_counters_hold_the_allocators_readings() -> None:
    trace = _trace(EXAMPLES, A14B_OFFLOAD)
    validate(trace)
    run = RunStore(EXAMPLES).read(A14B_OFFLOAD)
    report = build_report(run)
    allocated = [
        e["args"]["GiB"] for e in trace["traceEvents"] if e["name"] == MEMORY_COUNTERS["allocated"]
    ]
    readings = sum(
        ("wan.memory.allocated.start_bytes" in s.attributes)
        + ("wan.memory.allocated.end_bytes" in s.attributes)
        for s in run.spans
    )
    assert len(allocated) == readings
    assert report.memory.run_peak_gb is not None
    assert max(allocated) <= report.memory.run_peak_gb + 1e-4
    transfers = [e for e in trace["traceEvents"] if e.get("cat") == "transfer"]
    assert len(transfers) == 11


@pytest.mark.parametrize("run_id", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_every_example_run_validates(run_id: str) -> None:
    trace = _trace(EXAMPLES, run_id)
    validate(trace)
    counters = {e["name"] for e in trace["traceEvents"] if e["ph"] == "C"}
    assert SM_COUNTER in counters and MEMORY_COUNTERS["allocated"] in counters


def test_a_killed_rank_validates_with_its_stand_ins(tmp_path: Path) -> None:
    plan = Plan(fail="kill", fail_rank=1)
    write_parallel_run(tmp_path, plan)
    trace = _trace(tmp_path, plan.run_id)
    validate(trace)
    stood_in = [e["name"] for e in trace["traceEvents"] if "stand_in" in e.get("args", {})]
    assert sorted(stood_in) == ["Denoising", "Rank 1"]


def test_cli_writes_the_trace_to_a_file(
    reference_store: Path, reference_run_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "trace.json"
    result = run_cli(
        "report",
        "--run-id",
        reference_run_id,
        "--store",
        str(reference_store),
        "--format",
        "perfetto",
        "--output",
        str(out),
    )
    assert (result.code, result.out, result.err) == (0, "", "")
    trace = json.loads(out.read_text(encoding="utf-8"))
    validate(trace)
    assert trace["otherData"]["run_id"] == reference_run_id
    assert sum(e.get("cat") == "step" for e in trace["traceEvents"]) == 30
