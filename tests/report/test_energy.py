"""GPU energy from the samples' NVML energy counter: windows, tolerances, resets, coverage,
the committed runs (one and two GPUs) and a run without an energy counter."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from wan_otel.report import build_report, render_json
from wan_otel.report.energy import EnergySeries, RunEnergy
from wan_otel.report.integrate import CounterSeries
from wan_otel.report.model import Report
from wan_otel.store import RunStore
from wan_otel.store.samples import GpuSample

S = 1_000_000_000
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "runs"
H200_NONE = "h200-ti2v-5b-random-none-10steps-20261128T224324Z"
ULYSSES = "h200-ti2v-5b-random-ulysses2-10steps-20261128T235018Z"


def _samples(
    watts: float, seconds: float, every_s: float = 0.1, uuid: str = "GPU-a"
) -> list[GpuSample]:
    count = round(seconds / every_s)
    return [
        GpuSample(
            t_ns=round(i * every_s * S),
            gpu=0,
            uuid=uuid,
            source="gpm",
            energy_j=watts * i * every_s,
            power_w=watts,
        )
        for i in range(count + 1)
    ]


def _report(run_id: str) -> Report:
    return build_report(RunStore(EXAMPLES).read(run_id))


def test_constant_power_window_is_power_times_time_with_its_tolerance() -> None:
    series = EnergySeries(_samples(500.0, 10.0))
    window = series.window(1_050_000_000, 3_550_000_000)
    assert window.joules == pytest.approx(1250.0)
    # each edge may be off by the counter's update period (0.1 s) at 500 W
    assert window.tolerance_j == pytest.approx(2 * 0.1 * 500.0)


def test_a_coarser_sample_interval_widens_the_tolerance() -> None:
    series = EnergySeries(_samples(300.0, 20.0, every_s=0.5))
    window = series.window(2 * S, 6 * S)
    assert window.joules == pytest.approx(1200.0)
    assert window.tolerance_j == pytest.approx(2 * 0.5 * 300.0)


def test_window_under_one_second_says_too_short() -> None:
    window = EnergySeries(_samples(500.0, 10.0)).window(S, S + S // 2)
    assert window.joules is None
    assert window.reason == "too short: window 0.50 s < 1.0 s (the counter moves every ~0.1 s)"


def test_counter_that_restarts_is_integrated_across_the_restart() -> None:
    """A Prometheus series spans a driver reload: the counter restarts from 0."""
    values = [1000.0 + 100.0 * i for i in range(6)] + [100.0 * i for i in range(6)]
    samples = [
        GpuSample(t_ns=i * S, gpu=0, uuid="GPU-a", source="gpm", energy_j=v)
        for i, v in enumerate(values)
    ]
    window = EnergySeries(samples).window(2 * S, 9 * S)
    # 3 s at 100 J/s before the reload, then the restart from 0 to 300 J over 3 s; the
    # interval holding the reload (5 s -> 6 s) counts the new counter's first reading (0 J)
    assert window.joules == pytest.approx(300.0 + 0.0 + 300.0)
    assert CounterSeries([0, S], [5.0, 1.0]).values == [5.0, 6.0]


def test_partly_covered_window_is_scaled_and_barely_covered_has_none() -> None:
    series = EnergySeries(_samples(400.0, 10.0))
    almost = series.window(-S // 2, 9 * S + S // 2)  # 95 % covered
    assert almost.joules == pytest.approx(400.0 * 10.0)
    half = series.window(5 * S, 15 * S)
    assert half.joules is None and half.reason == "samples cover 50% of the window"


def test_a_gpu_without_energy_readings_is_named() -> None:
    energy = RunEnergy([GpuSample(t_ns=S, gpu=0, uuid="GPU-a", source="gpm", sm_active_s=0.1)])
    window = energy.window("GPU-a", 0, 10 * S)
    assert window.joules is None and window.reason == "no energy readings for GPU GPU-a"
    assert RunEnergy([]).window("GPU-a", 0, S).reason == "no GPU samples"


def _raw_energy(run_id: str, uuid: str, start_ns: int, end_ns: int) -> float:
    """The stored counter's difference over the window, read straight from the file: linear
    between samples, and the mean power of the covered part over the few milliseconds before
    the sampler's first sample (it starts just after the root span)."""
    rows = []
    path = EXAMPLES / run_id / "gpu_samples.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if obj["uuid"] == uuid and "energy_j" in obj:
            rows.append((obj["t_ns"], obj["energy_j"]))
    rows.sort()
    lo, hi = max(start_ns, rows[0][0]), min(end_ns, rows[-1][0])
    assert (hi - lo) / (end_ns - start_ns) > 0.999
    covered = _at(rows, hi) - _at(rows, lo)
    return covered * (end_ns - start_ns) / (hi - lo)


def _at(rows: list[tuple[int, float]], t_ns: int) -> float:
    for (t0, e0), (t1, e1) in itertools.pairwise(rows):
        if t0 <= t_ns <= t1:
            return float(e0 + (e1 - e0) * (t_ns - t0) / (t1 - t0))
    raise AssertionError("outside the samples")


def test_h200_run_energy_is_the_counter_over_the_root_span() -> None:
    report = _report(H200_NONE)
    energy, c = report.energy, report.config
    assert energy is not None and energy.total_j is not None
    spans = RunStore(EXAMPLES).read(H200_NONE).spans
    root = next(s for s in spans if s.name == "wan.pipeline.generate")
    uuid = report.system.gpu_uuid or ""
    expected = _raw_energy(H200_NONE, uuid, root.start_ns, root.end_ns)
    assert energy.total_j == pytest.approx(expected, rel=1e-9)
    assert 23_000 < energy.total_j < 24_000  # 23.3 kJ for a 10-step TI2V-5B video
    assert energy.mean_power_w == pytest.approx(energy.total_j / report.summary.total_s)
    assert energy.j_per_frame == pytest.approx(energy.total_j / 121)
    assert energy.video_s == pytest.approx(121 / 24) and c.fps == 24
    assert energy.j_per_video_s == pytest.approx(energy.total_j / (121 / 24))
    assert energy.gpus == [uuid] and energy.edge_s == pytest.approx(0.1, abs=0.02)
    assert report.summary.energy_j == energy.total_j


def test_h200_stage_and_step_energies_add_up() -> None:
    report = _report(H200_NONE)
    stages = {s.key: s for s in report.costs.stages}
    denoising = stages["denoising"]
    assert denoising.energy_j is not None and denoising.power_w is not None
    assert 550 < denoising.power_w < 700  # the H200 is compute-bound here, under its 700 W
    steps = [s.energy_j for s in report.costs.steps]
    assert all(j is not None for j in steps) and len(steps) == 10
    # the steps fill the loop but for the scheduler's few milliseconds between them
    assert sum(j or 0.0 for j in steps) == pytest.approx(denoising.energy_j, rel=0.01)
    parts = sum(s.energy_j or 0.0 for k, s in stages.items() if k != "total")
    assert parts < stages["total"].energy_j  # type: ignore[operator]
    # text encoding (0.66 s) and preprocess (67 ms) are under a second: too short
    assert stages["text_encoding"].energy_j is None
    assert "< 1.0 s" in (stages["text_encoding"].energy_note or "")


def test_two_gpu_run_sums_both_gpus() -> None:
    report = _report(ULYSSES)
    energy = report.energy
    assert energy is not None and energy.total_j is not None and len(energy.gpus) == 2
    run = RunStore(EXAMPLES).read(ULYSSES)
    root = next(s for s in run.spans if s.name == "wan.pipeline.generate")
    rank0 = RunEnergy(run.samples).window(report.system.gpu_uuid, root.start_ns, root.end_ns)
    assert rank0.joules is not None
    # rank 1's GPU decodes and denoises too: the two GPUs together draw well over one's
    assert 1.5 * rank0.joules < energy.total_j < 2.1 * rank0.joules
    assert (energy.mean_power_w or 0) > 1000
    step = report.costs.steps[5]
    assert step.energy_j is not None and step.power_w is not None and step.power_w > 1000


def test_run_without_an_energy_counter_says_why(
    reference_store: Path, reference_run_id: str
) -> None:
    """The reference L40S run's samples carry SM activity only."""
    report = build_report(RunStore(reference_store).read(reference_run_id))
    assert report.energy is not None and report.energy.total_j is None
    assert report.energy.note == (
        "no energy counter readings for the run's GPU: a GPU without one, or samples from "
        "Prometheus (which holds SM activity only)"
    )
    assert all(s.energy_j is None for s in report.costs.stages)
    body = json.loads(render_json(report))
    assert body["summary"]["energy_j"] is None and body["energy"]["total_j"] is None
