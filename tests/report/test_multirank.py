"""The report of a multi-GPU run: per-rank figures, waiting, stragglers, communication share,
parallel efficiency, the failing rank, and rank 0's sections left to rank 0.

The synthetic runs (``tests/report/multirank.py``) have figures that follow from a few numbers:
0.5 s of compute a step (+0.2 s warm-up in step 0), 10 collectives a step (2 forwards x 4
all-to-alls of 4 ms and 1 all-gather of 2 ms: 36 ms of transfer), and per step a straggler
whose peers each wait ``wait_us`` per collective. Every expected number below is worked out
by hand from those.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.helpers import run_cli
from tests.report.multirank import (
    BASELINE_STEPS_NS,
    ERROR_MESSAGE,
    MS,
    PEER_ERROR,
    T0,
    Plan,
    S,
    write_baseline_run,
    write_parallel_run,
)
from wan_otel import semconv as sc
from wan_otel.report import build_report, render_json, render_markdown, render_text
from wan_otel.report.model import RankLine, Report
from wan_otel.report.ranks import RankEnd, failing_rank, multi_gpu_ending
from wan_otel.report.sources import _root_window
from wan_otel.report.spans import span_rank
from wan_otel.store import RunStore
from wan_otel.store.otlp_json import SpanRecord
from wan_otel.store.run_store import RunData

GOLDEN = Path(__file__).parent / "golden" / "parallel-4"
UPDATE = os.environ.get("WAN_OTEL_UPDATE_GOLDEN") == "1"
EXACT = 1e-9
FOUR = Plan(
    run_id="parallel-4",
    world=4,
    stragglers=(2, 2, 2, 3),
    wait_us=(1000, 2000, 1000, 2000),
    sm=(0.92, 0.93, 0.80, 0.94),
)


def _report(store: Path, plan: Plan, baseline: str | None = None) -> Report:
    write_parallel_run(store, plan)
    base = RunStore(store).read(baseline) if baseline is not None else None
    return build_report(RunStore(store).read(plan.run_id), base)


def _figures(line: RankLine) -> tuple[float | None, ...]:
    return (line.compute_s, line.comm_s, line.wait_s, line.denoising_s, line.step_s_mean)


def _approx(*values: float) -> object:
    return pytest.approx(values, abs=EXACT)


# -- per-rank figures -------------------------------------------------------------------------


def test_two_ranks_split_each_step_into_compute_communication_and_waiting(tmp_path: Path) -> None:
    report = _report(tmp_path, Plan())
    r0, r1 = report.ranks
    # Rank 0 waits 10 x 1 ms in steps 0-2 and straggles in step 3 (compute +10 ms):
    # compute 0.2 + 3 x 0.5 + 0.51, comm 3 x 46 ms + 36 ms, wait 30 ms; steps 0.746 s then
    # 3 x 0.546 s, denoising their sum + 16 ms.
    assert _figures(r0) == _approx(2.21, 0.174, 0.030, 2.400, 0.596)
    assert _figures(r1) == _approx(2.23, 0.154, 0.010, 2.400, 0.596)
    assert (r0.comm_pct, r1.comm_pct) == _approx(100 * 0.174 / 2.4, 100 * 0.154 / 2.4)
    assert (r0.sm_pct, r1.sm_pct) == _approx(92.0, 95.0)
    assert (r0.peak_memory_gb, r1.peak_memory_gb) == (20.0, 21.0)
    assert (r0.comm_gb, r1.comm_gb) == (2.5, 2.5)  # 4 steps x 2 forwards x 5 x 64 MiB
    assert (r0.wait_reported_s, r1.wait_reported_s) == _approx(0.030, 0.010)
    assert [r0.gpu_uuid, r1.gpu_uuid] == [Plan().uuid(0), Plan().uuid(1)]
    assert [r0.status, r1.status] == ["ok", "ok"]
    p = report.parallel
    assert p is not None
    assert (p.world_size, p.ulysses_degree, p.ring_degree) == (2, 2, 1)
    assert (p.comm_s, p.comm_pct) == _approx(0.328, 100 * 0.328 / 4.8)
    assert (p.wait_s, p.wait_pct) == _approx(0.040, 100 * 0.040 / 4.8)
    assert report.notes == []


def test_four_ranks_waits_are_each_collective_above_the_fastest_rank(tmp_path: Path) -> None:
    report = _report(tmp_path, FOUR)
    # Steps 0-2 (straggler 2): ranks 0, 1, 3 wait 10 x (1, 2, 2) ms and compute 0.51, 0.50,
    # 0.50 s against rank 2's 0.52 s; step 3 (straggler 3): ranks 0, 1, 2 wait 10, 20, 10 ms.
    expected = {
        0: (2.24, 0.184, 0.040),
        1: (2.20, 0.224, 0.080),
        2: (2.27, 0.154, 0.010),
        3: (2.22, 0.204, 0.060),
    }
    for line in report.ranks:
        assert (line.compute_s, line.comm_s, line.wait_s) == _approx(*expected[line.rank])
        assert line.denoising_s == pytest.approx(2.44, abs=EXACT)
    p = report.parallel
    assert p is not None
    assert (p.wait_s, p.comm_s) == _approx(0.19, 0.766)
    assert p.comm_pct == pytest.approx(100 * 0.766 / (4 * 2.44), abs=EXACT)
    assert [line.sm_pct for line in report.ranks] == _approx(92.0, 93.0, 80.0, 94.0)


def test_rank_zero_sections_count_rank_zero_only(tmp_path: Path) -> None:
    """Other ranks' steps and stages are not rank 0's: 4 steps, not 16; one initialization."""
    report = _report(tmp_path, FOUR)
    assert report.summary.steps_done == 4 and report.summary.world_size == 4
    assert report.summary.step_s_mean == pytest.approx((0.756 + 3 * 0.556) / 4, abs=EXACT)
    assert [row.name for row in report.trace if row.name.startswith("Step ")] == [
        "Step 0",
        "Step 1",
        "Step 2",
        "Step 3",
    ]
    stages = {line.key: line.duration_s for line in report.stages}
    assert stages["initialization"] == pytest.approx(1.0) and stages["export"] == pytest.approx(0.1)
    assert report.memory.run_peak_gb == 20.0  # rank 0's peak, not rank 3's 23 GiB
    assert report.system.gpu_uuid == FOUR.uuid(0)


# -- stragglers -------------------------------------------------------------------------------


def test_straggler_of_each_step_and_what_it_cost(tmp_path: Path) -> None:
    p = _report(tmp_path, FOUR).parallel
    assert p is not None
    assert [(s.step, s.rank) for s in p.stragglers] == [(0, 2), (1, 2), (2, 2), (3, 3)]
    first = p.stragglers[1]
    # Rank 2's 0.52 s against the mean of 0.51, 0.50, 0.50; the others waited 10 + 20 + 20 ms.
    assert (first.compute_s, first.excess_s, first.wait_caused_s) == _approx(
        0.52, 0.52 - 1.51 / 3, 0.050
    )
    assert p.stragglers[3].wait_caused_s == pytest.approx(0.040, abs=EXACT)
    assert (p.straggler, p.straggler_steps) == (2, 3)
    assert [line.straggler_steps for line in _report(tmp_path, FOUR).ranks] == [0, 0, 3, 1]


def test_straggler_ties_go_to_the_lowest_rank(tmp_path: Path) -> None:
    p = _report(tmp_path, Plan(run_id="tie", stragglers=(0, 1, 0, 1))).parallel
    assert p is not None and (p.straggler, p.straggler_steps) == (0, 2)


def test_trace_rows_name_each_steps_straggler(tmp_path: Path) -> None:
    rows = {row.name: row.comment for row in _report(tmp_path, Plan()).trace}
    assert rows["Step 1"].endswith("straggler rank 1 (+10.0 ms compute, others waited 10.0 ms)")
    assert rows["Step 3"].endswith("straggler rank 0 (+10.0 ms compute, others waited 10.0 ms)")


def test_imbalance_names_the_rank_how_much_and_why(tmp_path: Path) -> None:
    rules = {r.rule: r.text for r in _report(tmp_path, FOUR).recommendations}
    text = rules["imbalance"]
    assert text.startswith(f"Rank 2 ({FOUR.uuid(2)}) was the straggler in 3 of 4 steps")
    assert "its compute took 16.7 ms (2.9%) longer" in text  # 16.7 ms over 0.57 s a step
    assert "the other ranks waited 0.15 s for it" in text
    assert "less busy (SM 80.0% against 93.0% on the others)" in text
    two = {r.rule: r.text for r in _report(tmp_path, Plan()).recommendations}
    assert "as busy as the others (SM 95.0% against 92.0%)" in two["imbalance"]
    assert "communication_bound" not in two  # 6.8 % of denoising


def test_imbalance_names_a_different_gpu_model(tmp_path: Path) -> None:
    plan = Plan(run_id="mixed", gpu_names={1: "NVIDIA H100 80GB HBM3"})
    rules = {r.rule: r.text for r in _report(tmp_path, plan).recommendations}
    assert "another model (NVIDIA H100 80GB HBM3 against NVIDIA H200)" in rules["imbalance"]


def test_no_imbalance_without_a_majority_straggler(tmp_path: Path) -> None:
    rules = {
        r.rule
        for r in _report(tmp_path, Plan(run_id="even", stragglers=(0, 1, 0, 1))).recommendations
    }
    assert "imbalance" not in rules


# -- communication ----------------------------------------------------------------------------


def test_communication_bound_run_gets_fewer_gpus_or_another_split(tmp_path: Path) -> None:
    write_baseline_run(tmp_path)
    plan = Plan(run_id="slow-link", a2a_ns=40 * MS, gather_ns=20 * MS, stragglers=(0, 1, 0, 1))
    report = _report(tmp_path, plan, "single")
    rules = {r.rule: r.text for r in report.recommendations}
    # 2 x (4 x 41 ms + 21 ms) = 0.37 s a step on a rank that waits, 0.36 s on the straggler.
    assert report.parallel is not None
    assert report.parallel.comm_pct == pytest.approx(100 * 2 * 1.46 / (2 * 3.696), abs=EXACT)
    text = rules["communication_bound"]
    assert text.startswith("Communication takes 39.5% of denoising: 1.46 s per rank")
    assert "--ulysses 1 --ring 2" in text and "fewer GPUs (one GPU)" in text
    assert "(0.36 s per step), 1.4% of it waiting for a slower peer" in text  # 40 of 2920 ms
    assert "each rank sends 0.62 GiB a step" in text
    assert "the step is 1.15x faster on 2 GPUs: 57.5% efficiency" in text
    assert "saves 0.73 s per video" in text
    assert "compute_bound" not in rules  # the SM % counts collectives as busy


def test_a_slower_multi_gpu_step_is_called_slower(tmp_path: Path) -> None:
    write_baseline_run(tmp_path, steps_ns=(500 * MS, 250 * MS, 250 * MS, 250 * MS))
    plan = Plan(run_id="worse", a2a_ns=40 * MS, gather_ns=20 * MS, stragglers=(0, 1, 0, 1))
    rules = {r.rule: r.text for r in _report(tmp_path, plan, "single").recommendations}
    # 0.25 s on one GPU against 0.87 s on two: 3.48x slower, 14.4 % efficiency.
    assert "the step is 3.48x slower on 2 GPUs: 14.4% efficiency" in rules["communication_bound"]


def test_communication_rule_on_four_gpus_suggests_half_and_a_ring(tmp_path: Path) -> None:
    plan = Plan(
        run_id="slow-4",
        world=4,
        stragglers=(0, 1, 2, 3),
        wait_us=(0, 0, 0, 0),
        sm=(0.9, 0.9, 0.9, 0.9),
        a2a_ns=40 * MS,
        gather_ns=20 * MS,
    )
    rules = {r.rule: r.text for r in _report(tmp_path, plan).recommendations}
    assert (
        "fewer GPUs (2 GPUs (--ulysses 2)) or another split: --ulysses 2 --ring 2"
        in (rules["communication_bound"])
    )


def test_recorded_wait_that_disagrees_is_noted(tmp_path: Path) -> None:
    report = _report(tmp_path, Plan(run_id="odd", reported_wait_s={1: 0.5}))
    assert report.ranks[1].wait_s == pytest.approx(0.010, abs=EXACT)
    assert report.ranks[1].wait_reported_s == 0.5
    assert report.notes == [
        "rank 1: waiting computed from the collectives (0.0100 s) differs from the recorded "
        f"{sc.PARALLEL_WAIT_S} (0.5000 s)"
    ]


def test_figures_are_silent_without_collective_data(tmp_path: Path) -> None:
    """Steps without comm/compute figures or collectives: n/a, no rule; the stragglers come
    from the pipeline's own list, uncosted."""
    write_parallel_run(tmp_path, Plan())
    run = RunStore(tmp_path).read("parallel-2")
    dropped = (sc.STEP_COMM_S, sc.STEP_COMPUTE_S)
    spans = [
        dataclasses.replace(
            s, attributes={k: v for k, v in s.attributes.items() if k not in dropped}
        )
        for s in run.spans
        if s.name != sc.SPAN_COLLECTIVE
    ]
    bare = RunData(run.run_id, spans, run.samples, summary=run.summary)
    report = build_report(bare)
    assert [(line.compute_s, line.comm_s, line.comm_pct) for line in report.ranks] == [
        (None, None, None)
    ] * 2
    # The recorded waits stand in for the computed ones.
    assert [line.wait_s for line in report.ranks] == _approx(0.030, 0.010)
    p = report.parallel
    assert p is not None and p.comm_pct is None
    assert [(s.rank, s.excess_s) for s in p.stragglers] == [(1, None)] * 3 + [(0, None)]
    assert not {"communication_bound", "imbalance"} & {r.rule for r in report.recommendations}
    assert "Communication:" not in render_text(report)


# -- parallel efficiency ----------------------------------------------------------------------


def test_efficiency_against_a_one_gpu_baseline(tmp_path: Path) -> None:
    write_baseline_run(tmp_path)
    e = _report(tmp_path, Plan(), "single").parallel.efficiency  # type: ignore[union-attr]
    assert e is not None
    # Mean step after the first: 1.0 s on one GPU, 0.546 s on two; denoising 4.116 s / 2.4 s.
    assert (e.baseline_step_s, e.step_s) == _approx(1.0, 0.546)
    assert (e.step_speedup, e.step_efficiency_pct) == _approx(1 / 0.546, 100 / 0.546 / 2)
    assert (e.denoising_speedup, e.denoising_efficiency_pct) == _approx(
        4.116 / 2.4, 100 * 4.116 / 2.4 / 2
    )
    assert e.baseline_gpu_name == "NVIDIA H200"


def test_efficiency_through_the_cli(tmp_path: Path) -> None:
    write_baseline_run(tmp_path)
    write_parallel_run(tmp_path, FOUR)
    result = run_cli(
        "report",
        "--run-id",
        "parallel-4",
        "--store",
        str(tmp_path),
        "--baseline",
        "single",
        "--format",
        "json",
    )
    assert result.code == 0, result.err
    body = json.loads(result.out)
    e = body["parallel"]["efficiency"]
    assert e["step_speedup"] == round(1 / 0.556, 4) and e["step_efficiency_pct"] == round(
        100 / 0.556 / 4, 4
    )
    assert body["summary"]["world_size"] == 4 and body["summary"]["failing_rank"] is None
    assert [r["rank"] for r in body["ranks"]] == [0, 1, 2, 3]
    assert {
        "rank",
        "gpu_uuid",
        "step_s_mean",
        "compute_s",
        "comm_s",
        "wait_s",
        "sm_pct",
        "peak_memory_gb",
    } <= set(body["ranks"][0])


def test_another_step_count_compares_the_step_only(tmp_path: Path) -> None:
    write_baseline_run(tmp_path, steps_ns=(*BASELINE_STEPS_NS, 1_000 * MS))
    report = _report(tmp_path, Plan(), "single")
    e = report.parallel.efficiency  # type: ignore[union-attr]
    assert e is not None and e.denoising_speedup is None
    assert e.step_speedup == pytest.approx(1 / 0.546, abs=EXACT)
    assert "denoising speedup n/a: baseline single ran 5 steps, this run 4" in report.notes


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda store: write_baseline_run(store, model={sc.REQUEST_NUM_FRAMES: 81}),
            "baseline 'single' is another generation (frames 81 against 121)",
        ),
        (
            lambda store: write_baseline_run(
                store, model={sc.MODEL_NAME: "Wan2.2-T2V-A14B", sc.REQUEST_WIDTH: 832}
            ),
            "(model Wan2.2-T2V-A14B against Wan2.2-TI2V-5B; size 832x704 against 1280x704)",
        ),
        (
            lambda store: write_parallel_run(store, Plan(run_id="single")),
            "baseline 'single' ran on 2 GPUs; --baseline takes a one-GPU run",
        ),
        (
            lambda store: write_baseline_run(store, steps_ns=()),
            "baseline 'single' has no denoising steps to compare with",
        ),
    ],
)
def test_a_baseline_that_cannot_be_compared_is_refused(
    tmp_path: Path, make: object, message: str
) -> None:
    make(tmp_path)  # type: ignore[operator]
    write_parallel_run(tmp_path, Plan())
    result = run_cli(
        "report", "--run-id", "parallel-2", "--store", str(tmp_path), "--baseline", "single"
    )
    assert result.code == 2 and result.out == ""
    assert message in result.err and result.err.count("\n") == 1


def test_baseline_refused_for_one_gpu_runs_itself_and_unknown_ids(tmp_path: Path) -> None:
    write_baseline_run(tmp_path)
    write_baseline_run(tmp_path, "single-2")
    write_parallel_run(tmp_path, Plan())
    for run_id, baseline, message in (
        ("single-2", "single", "run 'single-2' ran on one GPU"),
        ("parallel-2", "parallel-2", "is the run itself"),
        ("parallel-2", "nothing", "no run 'nothing'"),
    ):
        result = run_cli(
            "report", "--run-id", run_id, "--store", str(tmp_path), "--baseline", baseline
        )
        assert result.code == 2 and message in result.err and result.err.count("\n") == 1


# -- failed runs ------------------------------------------------------------------------------


def test_the_rank_that_raised_is_named(tmp_path: Path) -> None:
    report = _report(tmp_path, Plan(run_id="raised", fail="raise"))
    s = report.summary
    assert (s.status, s.failing_rank, s.error) == ("error", 1, ERROR_MESSAGE)
    assert s.ended == (
        "failed on rank 1 (the error is below); rank 0 was stopped by SIGTERM during "
        "Denoising, step 3 of 4"
    )
    assert [(line.status, line.steps_done) for line in report.ranks] == [
        ("interrupted", 2),
        ("error", 2),
    ]
    body = json.loads(render_json(report))
    assert body["summary"]["failing_rank"] == 1 and body["summary"]["status"] == "error"
    text = render_text(report)
    assert f"[Error]\n{'-' * 80}\n{ERROR_MESSAGE}\n" in text


def test_four_ranks_one_raised(tmp_path: Path) -> None:
    plan = Plan(
        run_id="raised-4",
        world=4,
        stragglers=FOUR.stragglers,
        wait_us=FOUR.wait_us,
        sm=FOUR.sm,
        fail="raise",
        fail_rank=2,
    )
    s = _report(tmp_path, plan).summary
    assert s.failing_rank == 2
    assert s.ended == (
        "failed on rank 2 (the error is below); ranks 0, 1 and 3 were stopped by SIGTERM "
        "during Denoising, step 3 of 4"
    )


def test_a_killed_rank_is_named_and_its_spans_stay_its_own(tmp_path: Path) -> None:
    report = _report(tmp_path, Plan(run_id="killed", fail="kill"))
    s = report.summary
    assert (s.status, s.failing_rank, s.error) == ("error", 1, None)
    assert s.ended == (
        "failed on rank 1: killed, its spans stop without its rank span (SIGKILL, the OOM "
        "killer, a lost node) after 2 step(s); rank 0 was stopped by SIGTERM during "
        "Denoising, step 3 of 4"
    )
    killed = report.ranks[1]
    assert (killed.status, killed.steps_done) == ("killed", 2)
    # Its orphaned stages and steps stay under it: rank 0 keeps one initialization.
    assert (killed.compute_s, killed.comm_s) == _approx(0.71 + 0.51, 2 * 0.036)
    assert report.stages[0].duration_s == pytest.approx(1.0)
    assert report.summary.steps_done == 2


def test_a_killed_rank_is_named_when_its_peers_collectives_raise(tmp_path: Path) -> None:
    """As gloo and NCCL do when a peer dies: the survivor's next collective raises. That
    error began in a collective: a consequence; the killed rank failed."""
    report = _report(tmp_path, Plan(run_id="reset", fail="kill", peers_raise=True))
    s = report.summary
    assert (s.status, s.failing_rank, s.error) == ("error", 1, PEER_ERROR)
    assert s.ended == (
        "failed on rank 1: killed, its spans stop without its rank span (SIGKILL, the OOM "
        "killer, a lost node) after 2 step(s); rank 0 failed after it (its error is below)"
    )
    assert [line.status for line in report.ranks] == ["error", "killed"]


def test_a_rank_that_raised_is_named_though_its_peer_was_killed(tmp_path: Path) -> None:
    """Rank 1 raised; torchrun had to SIGKILL rank 0, whose streamed spans stop earlier than
    rank 1's error: an error of its own outranks a killed peer."""
    plan = Plan(run_id="raised-then-killed", fail="raise", fail_rank=1)
    folder = write_parallel_run(tmp_path, plan)
    lines = (folder / "spans.jsonl").read_text().splitlines()
    body = json.loads(lines[0])
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    kept = [
        s
        for s in spans
        if s["name"] not in (sc.SPAN_GENERATE, sc.SPAN_DENOISE)
        and int(s["endTimeUnixNano"]) < T0 + 2 * S  # the last second never reached the file
    ]
    body["resourceSpans"][0]["scopeSpans"][0]["spans"] = kept
    (folder / "spans.jsonl").write_text(json.dumps(body) + "\n")
    s = build_report(RunStore(tmp_path).read(plan.run_id)).summary
    assert (s.failing_rank, s.error) == (1, ERROR_MESSAGE)
    assert s.ended == "failed on rank 1 (the error is below); rank 0 was killed"


def test_a_killed_rank_zero_is_named(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    plan = Plan(run_id="killed-0", fail="kill", fail_rank=0, dead_pid=int(child.stdout))
    report = _report(tmp_path, plan)
    s = report.summary
    assert (s.status, s.failing_rank) == ("killed", 0)
    assert s.ended.startswith(
        "failed on rank 0: killed, its spans stop without the run's root span"
    )
    assert s.ended.endswith("after 2 step(s); rank 1 was stopped by SIGTERM")
    # Rank 0's GPU comes from what run.json recorded at the start: its SM figure is there.
    assert report.ranks[0].gpu_uuid == plan.uuid(0)
    assert report.ranks[0].sm_pct == pytest.approx(92.0, abs=EXACT)


def test_a_rank_without_any_span_is_named(tmp_path: Path) -> None:
    plan = Plan(
        run_id="lost-4",
        world=4,
        stragglers=FOUR.stragglers,
        wait_us=FOUR.wait_us,
        sm=FOUR.sm,
        fail="kill",
        fail_rank=3,
    )
    folder = write_parallel_run(tmp_path, plan)
    (folder / "spans.rank3.jsonl").unlink()
    report = build_report(RunStore(tmp_path).read(plan.run_id))
    assert report.summary.failing_rank == 3
    assert report.summary.ended.startswith("failed on rank 3: it wrote no spans")
    assert report.ranks[3].status == "missing" and report.ranks[3].compute_s is None
    assert len(report.ranks) == 4


def test_a_completed_run_with_a_ranks_spans_lost_is_not_failed(tmp_path: Path) -> None:
    folder = write_parallel_run(tmp_path, Plan(run_id="lost-file"))
    (folder / "spans.rank1.jsonl").unlink()
    report = build_report(RunStore(tmp_path).read("lost-file"))
    assert (report.summary.status, report.summary.failing_rank) == ("ok", None)
    assert report.ranks[1].status == "missing"
    assert report.notes == [
        "the run completed, but rank 1 recorded no end (spans lost, or the process ended "
        "after the generation): their figures cover what was written"
    ]


def test_of_several_ranks_that_raised_the_first_to_end_failed() -> None:
    ends = [
        RankEnd(0, "interrupted", "RunInterrupted: stopped by SIGTERM", 900, "SIGTERM", "SIGTERM"),
        RankEnd(1, "error", "DistBackendError: connection closed", 800),
        RankEnd(2, "error", "RuntimeError: CUDA out of memory", 700),
        RankEnd(3, "killed", None, 600),
    ]
    failing = failing_rank(ends)
    assert failing is not None and failing.rank == 2
    status, ended, error = multi_gpu_ending(ends, failing, "interrupted", {})
    assert (status, error) == ("error", "RuntimeError: CUDA out of memory")
    assert ended == (
        "failed on rank 2 (the error is below); rank 1 failed after it; rank 3 was killed; "
        "rank 0 was stopped by SIGTERM"
    )
    # Every rank killed together (the node went away): nobody to blame.
    assert failing_rank([RankEnd(r, "killed", None, 5) for r in range(2)]) is None


def test_collectives_of_uneven_counts_align_over_the_shorter(tmp_path: Path) -> None:
    write_parallel_run(tmp_path, Plan())
    run = RunStore(tmp_path).read("parallel-2")

    # Rank 1 recorded one all-to-all fewer in the first forward of step 0.
    target = min(
        (
            s
            for s in run.spans
            if span_rank(s) == 1
            and s.name == sc.SPAN_COLLECTIVE
            and s.attributes.get(sc.COLLECTIVE_OP) == "all_to_all"
        ),
        key=lambda s: s.start_ns,
    )

    def trim(span: SpanRecord) -> SpanRecord:
        if span is not target:
            return span
        durations = span.attributes[sc.COLLECTIVE_DURATIONS]
        assert isinstance(durations, tuple) and len(durations) == 4
        attributes = {**span.attributes, sc.COLLECTIVE_DURATIONS: durations[:-1]}
        return dataclasses.replace(span, attributes=attributes)

    report = build_report(RunData(run.run_id, [trim(s) for s in run.spans], run.samples))
    assert report.notes[0] == (
        "1 merged collective(s) hold different counts on different ranks; waiting is computed "
        "over the collectives all of them recorded"
    )
    # Rank 0 loses the 1 ms it waited in the collective rank 1 did not record.
    assert report.ranks[0].wait_s == pytest.approx(0.029, abs=EXACT)


def test_ranks_section_in_ascii_and_markdown(tmp_path: Path) -> None:
    report = _report(tmp_path, FOUR)
    text = render_text(report, ascii_only=True)
    assert text.isascii()
    assert "[Ranks: 4 GPUs, Ulysses 4 x ring 1]" in text
    assert "   2 | GPU-000000a2 |     4 |    0.61 s |    2.27 s |    0.15 s |   10.0 ms |" in text
    markdown = render_markdown(report, ascii_only=True)
    assert markdown.isascii() and "## Ranks (4 GPUs, Ulysses 4 x ring 1)" in markdown
    assert "| 2 | GPU-000000a2 | 4 | 0.61 s | 2.27 s | 0.15 s | 10.0 ms | 6.3% | 80.0 |" in markdown


# -- one GPU, goldens --------------------------------------------------------------------------


def test_one_gpu_report_has_world_size_one_and_no_ranks(
    reference_store: Path, reference_run_id: str
) -> None:
    body = json.loads(render_json(build_report(RunStore(reference_store).read(reference_run_id))))
    assert body["summary"]["world_size"] == 1 and body["summary"]["failing_rank"] is None
    assert body["ranks"] == [] and body["parallel"] is None


def test_prometheus_is_asked_for_every_ranks_gpu(tmp_path: Path) -> None:
    write_parallel_run(tmp_path, FOUR)
    _, _, uuids = _root_window(RunStore(tmp_path).read("parallel-4").spans)
    assert uuids == [FOUR.uuid(rank) for rank in range(4)]


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


def test_four_rank_report_matches_golden(tmp_path: Path) -> None:
    write_baseline_run(tmp_path)
    report = _report(tmp_path, FOUR, "single")
    _golden("report.txt", render_text(report))
    _golden("report.md", render_markdown(report))
    _golden("report.json", render_json(report))
