"""The report of a two-expert run (Wan2.2 A14B): each expert's steps, time, activity, memory and
weight moves, the boundary and the switch, the memory of both experts resident, the three
expert rules, and one-expert reports left as they were.

The synthetic runs (``tests/report/experts.py``) take 8 steps at timesteps 999, 960, 900, 850,
700, 500, 300, 100 with the boundary at 875: the high-noise expert runs steps 0-2, the
low-noise one steps 3-7. Steps compute 2.0 s (step 0), 1.6 s (the switch) and 1.5 s otherwise.
With model offload, step 0 also moves the text encoder off (1 s, 10 GiB) and the high-noise
expert on (5 s, 26 GiB); the switch moves the high-noise expert off (8 s) and the low-noise one
on (5 s); VAE decode moves the low-noise expert off (8 s). Activations: 6 GiB (high-noise),
5 GiB (low-noise); SM 90 % over the high-noise steps, 70 % over the low-noise ones. Every
expected number below follows from those.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from tests.report.experts import ExpertPlan, write_expert_run
from tests.report.helpers import run_cli
from tests.report.multirank import T0, Plan, S, write_parallel_run
from wan_otel import semconv as sc
from wan_otel.report import build_report, render_markdown, render_text, report_dict
from wan_otel.report.model import ExpertLine, Report
from wan_otel.store import RunStore
from wan_otel.store.otlp_json import SpanRecord
from wan_otel.store.run_store import RunData
from wan_otel.store.samples import GpuSample

GOLDEN = Path(__file__).parent / "golden" / "a14b-model"
UPDATE = os.environ.get("WAN_OTEL_UPDATE_GOLDEN") == "1"
EXACT = 1e-9
NONE = ExpertPlan(run_id="a14b-none", offload="none")


def _report(store: Path, plan: ExpertPlan) -> Report:
    write_expert_run(store, plan)
    return build_report(RunStore(store).read(plan.run_id))


def _figures(e: ExpertLine) -> dict[str, object]:
    """Every figure of the line (all but its names)."""
    figures = dataclasses.asdict(e)
    del figures["name"], figures["component"]
    return figures


def _exact(**figures: object) -> dict[str, object]:
    return {
        k: pytest.approx(v, abs=EXACT) if isinstance(v, float) else v for k, v in figures.items()
    }


def _rules(report: Report) -> dict[str, str]:
    return {r.rule: r.text for r in report.recommendations}


# -- per-expert figures -----------------------------------------------------------------------


def test_model_offload_each_expert_figure(tmp_path: Path) -> None:
    high, low = _report(tmp_path, ExpertPlan()).experts
    assert (high.name, high.component, low.name, low.component) == (
        "high-noise",
        "transformer",
        "low-noise",
        "transformer_2",
    )
    assert _figures(high) == _exact(
        steps=3,
        first_step=0,
        last_step=2,
        first_timestep=999.0,
        duration_s=8.0 + 1.5 + 1.5,
        step_s_mean=11.0 / 3,
        step_s_first=8.0,  # 2.0 s of compute + 1 s + 5 s of moves
        step_s_stable=1.5,
        first_step_extra_s=6.5,
        first_step_transfer_s=6.0,
        first_step_transfer_gb=36.0,  # text encoder off, high-noise expert on
        forwards_per_step=2.0,
        sm_pct=90.0,
        weights_gb=26.0,
        init_s=3.0,
        transfer_s=6.0,
        transfer_gb=36.0,
        own_transfer_s=13.0,  # on in step 0 (5 s), off at the switch (8 s); not initialization's
        own_transfer_gb=52.0,
        activation_peak_gb=6.0,
        peak_memory_gb=32.0,
        boundary_ratio=0.875,
        boundary_timestep=875.0,
        guidance_scale=4.0,
    )
    assert _figures(low) == _exact(
        steps=5,
        first_step=3,
        last_step=7,
        first_timestep=850.0,
        duration_s=14.6 + 4 * 1.5,
        step_s_mean=20.6 / 5,
        step_s_first=14.6,  # 1.6 s of compute + 8 s + 5 s of moves
        step_s_stable=1.5,
        first_step_extra_s=13.1,  # the switch's cost
        first_step_transfer_s=13.0,
        first_step_transfer_gb=52.0,
        forwards_per_step=2.0,
        sm_pct=70.0,
        weights_gb=26.0,
        init_s=3.0,
        transfer_s=13.0,
        transfer_gb=52.0,
        own_transfer_s=13.0,  # on at the switch (5 s), off in VAE decode (8 s)
        own_transfer_gb=52.0,
        activation_peak_gb=5.0,
        peak_memory_gb=31.0,
        boundary_ratio=0.875,
        boundary_timestep=875.0,
        guidance_scale=3.0,
    )


def test_no_offload_each_expert_figure(tmp_path: Path) -> None:
    report = _report(tmp_path, NONE)
    high, low = report.experts
    resident = 10 + 26 + 26 + 0.25  # every component on the GPU from initialization on
    assert _figures(high) == _exact(
        steps=3,
        first_step=0,
        last_step=2,
        first_timestep=999.0,
        duration_s=5.0,
        step_s_mean=5.0 / 3,
        step_s_first=2.0,
        step_s_stable=1.5,
        first_step_extra_s=0.5,
        first_step_transfer_s=0.0,
        first_step_transfer_gb=0.0,
        forwards_per_step=2.0,
        sm_pct=90.0,
        weights_gb=26.0,
        init_s=3.0,
        transfer_s=0.0,
        transfer_gb=0.0,
        own_transfer_s=0.0,
        own_transfer_gb=0.0,
        activation_peak_gb=6.0,
        peak_memory_gb=resident + 6,
        boundary_ratio=0.875,
        boundary_timestep=875.0,
        guidance_scale=4.0,
    )
    assert low.steps == 5
    assert (low.duration_s, low.step_s_first, low.step_s_stable) == _approx(7.6, 1.6, 1.5)
    assert low.first_step_extra_s == pytest.approx(0.1, abs=EXACT)
    assert (low.transfer_s, low.own_transfer_s, low.first_step_transfer_s) == (0.0, 0.0, 0.0)
    assert (low.activation_peak_gb, low.peak_memory_gb) == _approx(5.0, resident + 5)
    assert low.sm_pct == pytest.approx(70.0, abs=EXACT)
    assert report.notes == []


def _approx(*values: float) -> object:
    return pytest.approx(values, abs=EXACT)


# -- sections ---------------------------------------------------------------------------------


def test_model_offload_boundary_switch_and_memory_lines(tmp_path: Path) -> None:
    text = render_text(_report(tmp_path, ExpertPlan()))
    assert "Boundary: ratio 0.875 (timestep 875.0); guidance 4 (high-noise), 3 (low-noise)." in text
    assert (
        "Switch: the low-noise expert took over at step 3 (timestep 850.0); that step took "
        "14.60 s, +13.10 s over the low-noise expert's later steps (1.50 s), of which 13.00 s "
        "weight transfers (52.00 GiB moved)."
    ) in text
    assert (
        "Expert weights moved in this generation (outside initialization): high-noise "
        "52.00 GiB in 13.00 s, low-noise 52.00 GiB in 13.00 s."
    ) in text
    # Offloaded: the peak measured; both resident: 26 + 26 GiB of weights + the 6 GiB peak.
    assert (
        "Memory: one expert resident at a time (offload=model); peak 32.00 GiB in the steps "
        "(measured). Both resident, the steps would need 58.00 GiB (weights 26.00 + 26.00 GiB, "
        "activations 6.00 GiB) of 140.00 GiB VRAM: fits with 82.00 GiB to spare."
    ) in text
    assert text.index("[Experts]") < text.index("[Memory Telemetry]")
    assert text.index("[Detailed Pipeline Latency]") < text.index("[Experts]")
    assert "- DiT high-noise weights    :  26.00 GiB" in text
    assert "- DiT low-noise weights     :  26.00 GiB" in text


def test_no_offload_memory_line_states_both_resident(tmp_path: Path) -> None:
    text = render_text(_report(tmp_path, NONE))
    assert (
        "Memory: both experts resident (offload=none); peak 68.25 GiB in the steps (measured), "
        "experts' weights 26.00 GiB + 26.00 GiB."
    ) in text
    assert "Switch: the low-noise expert took over at step 3 (timestep 850.0); that step took " in (
        text
    )
    assert "+0.10 s over the low-noise expert's later steps (1.50 s)." in text
    assert "Expert weights moved" not in text  # nothing moved


def test_step_rows_name_their_expert(tmp_path: Path) -> None:
    report = _report(tmp_path, ExpertPlan())
    steps = [row.name for row in report.trace if row.name.startswith("Step ")]
    assert steps == [f"Step {i} (high-noise)" for i in range(3)] + [
        f"Step {i} (low-noise)" for i in range(3, 8)
    ]
    assert "  Step 3 (low-noise)       |   14.60 s |" in render_text(report)
    assert "    Transfer transformer_2 |    5.00 s |" in render_text(report)


def test_markdown_has_the_experts_section(tmp_path: Path) -> None:
    md = render_markdown(_report(tmp_path, ExpertPlan()))
    assert md.index("## Pipeline latency") < md.index("## Experts") < md.index("## Memory")
    assert (
        "| high-noise | 3 (0-2) | 11.00 s | 3.67 s | 1.50 s | 90.0 | 6.00 s | 26.00 GiB | "
        "3.00 s | 32.00 |"
    ) in md
    assert "- Switch: the low-noise expert took over at step 3" in md


def test_json_experts_list(tmp_path: Path) -> None:
    body = report_dict(_report(tmp_path, ExpertPlan()))
    high, low = body["experts"]
    for item in (high, low):
        assert {"name", "component", "steps", "duration_s", "step_s_mean", "sm_pct"} <= set(item)
    assert (high["name"], high["component"], high["steps"]) == ("high-noise", "transformer", 3)
    assert (low["name"], low["component"], low["steps"]) == ("low-noise", "transformer_2", 5)
    assert (high["duration_s"], high["step_s_mean"], high["sm_pct"]) == (11.0, 3.6667, 90.0)
    assert (low["duration_s"], low["step_s_mean"], low["sm_pct"]) == (20.6, 4.12, 70.0)
    assert (low["first_step"], low["first_timestep"], low["first_step_extra_s"]) == (3, 850.0, 13.1)


def test_one_expert_reports_have_an_empty_experts_list(
    reference_store: Path, reference_run_id: str, tmp_path: Path
) -> None:
    reference = build_report(RunStore(reference_store).read(reference_run_id))
    assert reference.experts == [] and report_dict(reference)["experts"] == []
    assert "[Experts]" not in render_text(reference)
    assert "## Experts" not in render_markdown(reference)
    assert not any("noise" in row.name for row in reference.trace)


# -- recommendations --------------------------------------------------------------------------


def test_swap_rule_costs_the_moves_against_the_vram_they_save(tmp_path: Path) -> None:
    rules = _rules(_report(tmp_path, ExpertPlan()))
    # 26 s of expert moves in a 92.6 s run: 28.1 %.
    assert rules["expert_swap"] == (
        "Offload=model swaps the experts: the switch at step 3 spent 13.00 s moving 52.00 GiB "
        "of weights (the step took +13.10 s over the low-noise expert's later steps); in all, "
        "the experts' weights moved 104.00 GiB in 26.00 s (28.1% of the run), paid on every "
        "call (model offload returns each component to the host at the end of a call). It keeps "
        "one expert's 26.00 GiB of weights off the GPU. Both experts resident, the steps need "
        "58.00 GiB (weights 26.00 + 26.00 GiB, activations 6.00 GiB) of 140.00 GiB VRAM: fits "
        "with 82.00 GiB to spare: keeping both experts on the GPU saves 26.00 s per video."
    )
    assert {"expert_slower", "expert_few_steps"}.isdisjoint(rules)


def test_no_offload_has_no_expert_rule(tmp_path: Path) -> None:
    rules = _rules(_report(tmp_path, NONE))
    assert {"expert_swap", "expert_slower", "expert_few_steps"}.isdisjoint(rules)


def test_slower_expert_with_a_less_busy_gpu(tmp_path: Path) -> None:
    plan = ExpertPlan(
        run_id="slow", offload="none", compute_ms=(2000, 1500, 1500, 1900, 1800, 1800, 1800, 1800)
    )
    report = _report(tmp_path, plan)
    # 0.3 s more a step over the low-noise expert's 4 later steps: 1.2 s of a 25.4 s run.
    assert report.summary.total_s == pytest.approx(25.4, abs=EXACT)
    assert _rules(report)["expert_slower"] == (
        "The low-noise expert's steps take 1.80 s against 1.50 s for the high-noise expert's "
        "(after each one's first step): 1.20x, though the two experts have the same architecture "
        "(26.00 GiB of weights each). Its 4 later steps lose 1.20 s (4.7% of the run). Its GPU "
        "was less busy (SM 70.0% against 90.0%): time is lost outside the kernels (host work, "
        "synchronizations)."
    )


def test_slower_expert_with_an_as_busy_gpu_has_slower_kernels(tmp_path: Path) -> None:
    plan = ExpertPlan(
        run_id="slow-kernels",
        offload="none",
        compute_ms=(2000, 1800, 1800, 1600, 1500, 1500, 1500, 1500),
        sm=(0.9, 0.88),
    )
    text = _rules(_report(tmp_path, plan))["expert_slower"]
    assert text.startswith("The high-noise expert's steps take 1.80 s against 1.50 s")
    assert "Its 2 later steps lose 0.60 s" in text
    assert text.endswith(
        "Its GPU was as busy (SM 90.0% against 88.0%): its kernels are slower (another dtype or "
        "attention backend for that expert, clocks, power capping)."
    )


def test_slower_rule_is_silent_within_ten_percent(tmp_path: Path) -> None:
    plan = ExpertPlan(
        run_id="close", offload="none", compute_ms=(2000, 1500, 1500, 1700, 1600, 1600, 1600, 1600)
    )
    assert "expert_slower" not in _rules(_report(tmp_path, plan))  # 1.07x


def test_few_steps_rule_when_the_boundary_leaves_one_step(tmp_path: Path) -> None:
    plan = ExpertPlan(
        run_id="few",
        offload="none",
        timesteps=(999.0, 850.0, 700.0, 500.0, 300.0, 100.0, 50.0, 10.0),
    )
    report = _report(tmp_path, plan)
    assert [e.steps for e in report.experts] == [1, 7]
    assert report.experts[0].step_s_stable is None  # one step: nothing after its first
    assert _rules(report)["expert_few_steps"] == (
        "The boundary (timestep 875.0) left the high-noise expert 1 of 8 steps (2.00 s of "
        "denoising); its 26.00 GiB of weights stay resident for them. The split follows the "
        "step count and the scheduler's shift (the boundary is the model's): more steps give "
        "the high-noise expert more of them."
    )
    assert "expert_slower" not in _rules(report)  # no stable step to compare


def test_few_steps_rule_when_the_boundary_is_never_crossed(tmp_path: Path) -> None:
    plan = ExpertPlan(
        run_id="never",
        offload="none",
        timesteps=(999.0, 990.0, 980.0, 970.0),
        compute_ms=(2000, 1500, 1500, 1500),
    )
    report = _report(tmp_path, plan)
    high, low = report.experts
    assert (high.steps, low.steps, low.duration_s, low.step_s_mean, low.first_step) == (
        4,
        0,
        0.0,
        None,
        None,
    )
    assert (low.sm_pct, low.peak_memory_gb, low.activation_peak_gb) == (None, None, None)
    assert _rules(report)["expert_few_steps"] == (
        "All 4 steps ran the high-noise expert: the boundary (timestep 875.0) was never "
        "crossed, so the low-noise expert never ran; its 26.00 GiB of weights were loaded in "
        "3.00 s for no step. The split follows the step count and the scheduler's shift (the "
        "boundary is the model's): more steps give the low-noise expert some of them."
    )
    text = render_text(report)
    assert "Switch: none (4 step(s), all high-noise)." in text
    assert "low-noise  | 0          |       0 s |       n/a |       n/a |   n/a |" in text


# -- incomplete and odd runs ------------------------------------------------------------------


def test_killed_before_the_switch(tmp_path: Path) -> None:
    report = _report(tmp_path, ExpertPlan(run_id="killed", killed_after=2))
    high, low = report.experts
    assert report.summary.status == "running"  # run.json still says so: the root never ended
    assert (high.steps, low.steps) == (2, 0)
    assert high.boundary_ratio == 0.875  # from run.json: the root never ended
    assert high.boundary_timestep is None  # the loop never ended either
    assert "expert_few_steps" not in _rules(report)  # the run stopped: its split is not known
    assert "Switch: not reached (2 step(s) written, all high-noise)." in render_text(report)


def test_loop_switch_that_disagrees_with_the_steps_is_a_note(tmp_path: Path) -> None:
    report = _report(tmp_path, ExpertPlan(run_id="odd", loop_switch_step=4))
    assert report.experts[1].first_step == 3
    assert report.notes == [
        "VAE Decoding: its peak (26.00 GiB) is that of the weights offload moved away at its "
        "start, not its own work's; its working set is not measured",
        "the loop records the switch at step 4 (wan.denoise.switch_step), but the low-noise "
        "expert's first step is step 3; the report goes by the steps",
    ]


def test_decode_peak_hidden_under_moved_weights_is_not_a_working_set(tmp_path: Path) -> None:
    """Model offload moves the 26 GiB low-noise expert off as decoding starts: the decode's
    peak (26 GiB) is that expert's, not the 12 GiB the decode works with."""
    report = _report(tmp_path, ExpertPlan())
    assert report.memory.vae_peak_gb == 26.0 and report.memory.vae_baseline_gb is None
    offload = _rules(report)["offload"]
    # Weights 62.25 GiB + the 6 GiB DiT peak: a lower bound, and what the decode may add.
    assert "every component stays resident: at least 68.25 GiB" in offload
    assert offload.endswith("stays under 77.75 GiB.")


def test_cpu_run_without_samples_or_allocator_figures(tmp_path: Path) -> None:
    report = _report(tmp_path, ExpertPlan(run_id="cpu", offload="none", memory=False))
    for e in report.experts:
        assert (e.sm_pct, e.peak_memory_gb, e.activation_peak_gb) == (None, None, None)
        assert e.weights_gb == 26.0
    assert {"expert_swap", "expert_slower", "expert_few_steps"}.isdisjoint(_rules(report))
    assert (
        "Memory: both experts resident (offload=none); peak n/a in the steps, experts' weights "
        "26.00 GiB + 26.00 GiB."
    ) in render_text(report)


def test_multi_gpu_run_with_two_experts(tmp_path: Path) -> None:
    """Rank 0's steps make the experts section; the ranks and stragglers are as without."""
    one = build_report(RunStore(write_parallel_run(tmp_path, Plan()).parent).read("parallel-2"))
    two_plan = Plan(run_id="parallel-2-experts", two_experts=True)
    write_parallel_run(tmp_path, two_plan)
    two = build_report(RunStore(tmp_path).read("parallel-2-experts"))
    assert [e.steps for e in two.experts] == [2, 2]
    assert two.experts[1].first_step == 2
    assert [dataclasses.astuple(r) for r in two.ranks] == [
        dataclasses.astuple(r) for r in one.ranks
    ]
    steps = [row for row in two.trace if row.name.startswith("Step ")]
    assert [row.name for row in steps] == [
        "Step 0 (high-noise)",
        "Step 1 (high-noise)",
        "Step 2 (low-noise)",
        "Step 3 (low-noise)",
    ]
    plain = [row for row in one.trace if row.name.startswith("Step ")]
    assert [row.comment for row in steps] == [row.comment for row in plain]
    assert all("straggler rank" in row.comment for row in steps)
    text = render_text(two)
    assert text.index("[Experts]") < text.index("[Ranks: 2 GPUs, Ulysses 2 x ring 1]")


# -- golden -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "golden"),
    [("text", "report.txt"), ("json", "report.json"), ("markdown", "report.md")],
)
def test_model_offload_report_matches_golden(tmp_path: Path, fmt: str, golden: str) -> None:
    write_expert_run(tmp_path, ExpertPlan())
    result = run_cli("report", "--run-id", "a14b-model", "--store", str(tmp_path), "--format", fmt)
    assert result.code == 0, result.err
    path = GOLDEN / golden
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.out, encoding="utf-8")
    assert result.out == path.read_text(encoding="utf-8")
    if fmt == "json":
        assert [e["name"] for e in json.loads(result.out)["experts"]] == [
            "high-noise",
            "low-noise",
        ]


def test_slower_rule_without_activity_figures_gives_no_why(tmp_path: Path) -> None:
    plan = ExpertPlan(
        run_id="slow-cpu",
        offload="none",
        memory=False,
        compute_ms=(2000, 1500, 1500, 1900, 1800, 1800, 1800, 1800),
    )
    text = _rules(_report(tmp_path, plan))["expert_slower"]
    assert text.endswith("Its 4 later steps lose 1.20 s (4.7% of the run).")


def test_slower_rule_needs_two_steps_after_each_first(tmp_path: Path) -> None:
    plan = ExpertPlan(
        run_id="short",
        offload="none",
        timesteps=(999.0, 960.0, 850.0, 700.0, 500.0),
        compute_ms=(2000, 1500, 1900, 1800, 1800),
    )
    report = _report(tmp_path, plan)
    assert [e.steps for e in report.experts] == [2, 3]
    assert report.experts[0].step_s_stable == pytest.approx(1.5, abs=EXACT)
    assert "expert_slower" not in _rules(report)  # one later high-noise step: too few


def test_sm_of_an_expert_whose_steps_are_apart_weighs_each_stretch() -> None:
    """Steps high, low, high: the high-noise expert's activity is its two stretches', each
    integrated on its own and weighted by its length (the low-noise step between is not its)."""
    run_id, root_id, uuid = "apart", f"{1:016x}", "GPU-apart"

    def span(serial: int, name: str, start: float, end: float, **attrs: object) -> SpanRecord:
        parent = None if name == sc.SPAN_GENERATE else root_id
        if name == sc.SPAN_DENOISE_STEP:
            parent = f"{2:016x}"
        attributes = {sc.RUN_ID: run_id, **attrs}
        return SpanRecord(
            "c" * 32,
            f"{serial:016x}",
            parent,
            name,
            T0 + int(start * S),
            T0 + int(end * S),
            attributes,  # type: ignore[arg-type]
        )

    spans = [
        span(1, sc.SPAN_GENERATE, 0, 4, **{sc.GPU_UUID: uuid, sc.MODEL_BOUNDARY_RATIO: 0.875}),
        span(2, sc.SPAN_DENOISE, 0, 4),
        span(
            3, sc.SPAN_DENOISE_STEP, 0, 1, **{sc.DENOISE_STEP: 0, sc.DENOISE_EXPERT: "transformer"}
        ),
        span(
            4,
            sc.SPAN_DENOISE_STEP,
            1,
            2,
            **{sc.DENOISE_STEP: 1, sc.DENOISE_EXPERT: "transformer_2"},
        ),
        span(
            5, sc.SPAN_DENOISE_STEP, 2, 4, **{sc.DENOISE_STEP: 2, sc.DENOISE_EXPERT: "transformer"}
        ),
    ]
    # Busy 0.9 over step 0, 0.5 over step 1, 0.6 over step 2; sampled every 0.5 s.
    rates = [(0, 1, 0.9), (1, 2, 0.5), (2, 4, 0.6)]
    samples = []
    for half in range(9):
        t = half / 2
        busy = sum(rate * max(0.0, min(t, hi) - lo) for lo, hi, rate in rates)
        samples.append(GpuSample(T0 + int(t * S), 0, uuid, "gpm", sm_active_s=busy))
    high, low = build_report(RunData(run_id, spans, samples)).experts
    assert high.sm_pct == pytest.approx(100 * (0.9 * 1 + 0.6 * 2) / 3, abs=EXACT)
    assert low.sm_pct == pytest.approx(50.0, abs=EXACT)
    assert (high.steps, high.first_step, high.last_step, high.duration_s) == (2, 0, 2, 3.0)


def test_a_switch_step_faster_than_the_later_ones_reads_negative(tmp_path: Path) -> None:
    plan = ExpertPlan(
        run_id="fast-switch",
        offload="none",
        compute_ms=(2000, 1500, 1500, 1400, 1500, 1500, 1500, 1500),
    )
    report = _report(tmp_path, plan)
    assert report.experts[1].first_step_extra_s == pytest.approx(-0.1, abs=EXACT)
    assert "that step took 1.40 s, -0.10 s over the low-noise expert's later steps (1.50 s)." in (
        render_text(report)
    )
