"""Build the Report from a run's spans and GPU samples: a pure function, no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import statistics
from collections.abc import Sequence

from wan_otel import semconv as sc
from wan_otel.report.baseline import efficiency
from wan_otel.report.baselines import known_baseline
from wan_otel.report.compute import compute_figures
from wan_otel.report.costs import cost_figures
from wan_otel.report.experts import expert_lines
from wan_otel.report.formatting import duration
from wan_otel.report.model import (
    MemoryFigures,
    ParallelFigures,
    RankLine,
    Report,
    RunConfig,
    Summary,
    SystemInfo,
)
from wan_otel.report.parallel import parallel_figures
from wan_otel.report.ranks import failing_rank, lost_ranks, multi_gpu_ending, rank_ends
from wan_otel.report.recommend import recommend
from wan_otel.report.recommend_experts import recommend_experts
from wan_otel.report.recommend_parallel import COMMUNICATION_BOUND, recommend_parallel
from wan_otel.report.run_info import report_title, run_config, system_info
from wan_otel.report.sm import SOURCE_MEANING, SmSeries
from wan_otel.report.spans import (
    RunTree,
    attr_gib,
    attr_int,
    attr_str,
    build_tree,
    error_text,
    work_baseline_gib,
    work_peak_gib,
)
from wan_otel.report.stages import UNTRACED_MEMORY_GIB, stage_label, stage_lines
from wan_otel.report.trace_table import trace_rows
from wan_otel.store.otlp_json import STATUS_ERROR, SpanRecord
from wan_otel.store.run_store import RunData
from wan_otel.store.summary import KILLED, RUNNING, RunSummary, interrupt_detail

THROUGHPUT_STAGES = (sc.SPAN_TEXT_ENCODE, sc.SPAN_DENOISE, sc.SPAN_VAE_DECODE)


def _peak(spans: Sequence[SpanRecord], key: str) -> float | None:
    values = [v for s in spans if (v := attr_gib(s, key)) is not None]
    return max(values) if values else None


def _work_baseline(tree: RunTree, span: SpanRecord | None, notes: list[str]) -> float | None:
    """The stage's work baseline, or None where its working set is hidden under the weights
    offload moved at its start (a note says so): peak minus baseline would read as the
    stage's working set and overstate it."""
    if span is None:
        return None
    base = work_baseline_gib(tree, span)
    peak = attr_gib(span, sc.MEMORY_ALLOCATED_PEAK)
    if base is None or peak is None or work_peak_gib(tree, span) is not None:
        return base
    notes.append(
        f"{stage_label(span)}: its peak ({peak:.2f} GiB) is that of the weights offload moved "
        "away at its start, not its own work's; its working set is not measured"
    )
    return None


def _memory(tree: RunTree, config: RunConfig, notes: list[str]) -> MemoryFigures:
    root = tree.root
    weights = {
        comp: gib
        for comp in sc.WEIGHT_COMPONENTS
        if (gib := attr_gib(root, sc.weight_bytes_key(comp))) is not None
    }
    activation, activation_step = None, None
    for step in tree.steps():
        work = work_peak_gib(tree, step)
        if work is not None and (activation is None or work > activation):
            activation, activation_step = work, attr_int(step, sc.DENOISE_STEP)
    text = tree.first(sc.SPAN_TEXT_ENCODE)
    vae = tree.first(sc.SPAN_VAE_DECODE)
    untraced = []
    stages = tree.stages()
    for before, after in itertools.pairwise(stages):
        end = attr_gib(before, sc.MEMORY_ALLOCATED_END)
        start = attr_gib(after, sc.MEMORY_ALLOCATED_START)
        if end is not None and start is not None and abs(start - end) >= UNTRACED_MEMORY_GIB:
            untraced.append(
                f"{start - end:+.2f} GiB between {stage_label(before)} and "
                f"{stage_label(after)}, outside any span"
            )
    return MemoryFigures(
        offload=config.offload,
        weights_gb=weights,
        dit_activation_peak_gb=activation,
        dit_activation_step=activation_step,
        text_encoder_peak_gb=attr_gib(text, sc.MEMORY_ALLOCATED_PEAK) if text else None,
        text_encoder_baseline_gb=_work_baseline(tree, text, notes),
        vae_peak_gb=attr_gib(vae, sc.MEMORY_ALLOCATED_PEAK) if vae else None,
        vae_baseline_gb=_work_baseline(tree, vae, notes),
        run_peak_gb=_peak(tree.spans, sc.MEMORY_ALLOCATED_PEAK),
        reserved_peak_gb=_peak(tree.spans, sc.MEMORY_RESERVED_PEAK),
        untraced_changes=untraced,
    )


def _ending(tree: RunTree, summary: RunSummary | None, error: str | None) -> tuple[str, str]:
    """(status, how the run ended in words)."""
    root = tree.root
    if tree.root_is_real:
        signal = attr_str(root, sc.RUN_INTERRUPT_SIGNAL)
        if signal is not None:
            return "interrupted", f"interrupted by {interrupt_detail(root.attributes, signal)}"
        if root.status_code == STATUS_ERROR:
            return "error", "failed (the error is below)"
        return "ok", "completed"
    seen = summary.seen_from() if summary is not None else None
    steps = len(tree.steps())
    written = f"{steps} step(s) and {len(tree.spans)} span(s) written before the end"
    if seen is not None and seen.status == KILLED:
        return "killed", (
            f"killed: its process ended without recording the end (SIGKILL, the OOM killer, "
            f"a lost node); {written}"
        )
    if seen is not None and seen.status == RUNNING:
        return "running", f"still running (process {seen.pid} on {seen.host}); {written} so far"
    return "incomplete", f"no end recorded; {written}"


def _summary(
    tree: RunTree,
    config: RunConfig,
    system: SystemInfo,
    memory: MemoryFigures,
    sm: SmSeries,
    run_summary: RunSummary | None = None,
) -> Summary:
    root = tree.root
    total = root.duration_s
    steps = [s.duration_s for s in tree.steps()]
    mean = statistics.fmean(steps) if steps else None
    stable = statistics.fmean(steps[1:]) if len(steps) > 1 else mean
    window_parts = [s.duration_s for s in tree.stages() if s.name in THROUGHPUT_STAGES]
    finished = all(tree.first(name) is not None for name in THROUGHPUT_STAGES)
    window = sum(window_parts) if finished and window_parts else None
    frames_per_s = mpx_per_s = None
    if window and config.num_frames:
        frames_per_s = config.num_frames / window
        if config.width and config.height:
            mpx_per_s = config.width * config.height * config.num_frames / 1e6 / window
    whole = sm.mean(root)
    peak = memory.run_peak_gb
    failed = [e for s in tree.spans if (e := error_text(s))]
    status, ended = _ending(tree, run_summary, failed[-1] if failed else None)
    sm_note = whole.reason
    if whole.pct is not None and sm.series is not None:
        meaning = SOURCE_MEANING.get(sm.source or "", sm.source or "unknown source")
        held = sm.series.held
        sm_note = (
            f"{meaning}, sampled every {sm.series.interval_s:.2f} s and integrated over each "
            "span's exact window"
            + (
                f" ({held} held readings left out: GPM reads too soon after the one before)"
                if held
                else ""
            )
        )
    return Summary(
        status=status,
        ended=ended,
        error=failed[-1] if failed else None,
        started_ns=root.start_ns,
        total_s=total,
        steps_done=len(steps),
        step_s_mean=mean,
        step_s_first=steps[0] if steps else None,
        step_s_stable=stable,
        steps_per_s=1.0 / mean if mean else None,
        throughput_window_s=window,
        frames_per_s=frames_per_s,
        mpx_per_s=mpx_per_s,
        peak_memory_gb=peak,
        vram_gb=system.vram_gb,
        peak_memory_pct=100.0 * peak / system.vram_gb
        if peak is not None and system.vram_gb
        else None,
        avg_sm_pct=whole.pct,
        load_sm_s=total * whole.pct / 100.0 if whole.pct is not None else None,
        sm_source=sm.source,
        sm_note=sm_note,
        world_size=tree.world_size,
    )


def _multi_gpu(
    tree: RunTree,
    summary: Summary,
    config: RunConfig,
    run: RunData,
    baseline: RunData | None,
    notes: list[str],
) -> tuple[Summary, list[RankLine], ParallelFigures]:
    """The summary with the failing rank named, the rank lines and the parallel figures."""
    ends = rank_ends(tree, summary.status)
    failing = failing_rank(ends)
    lost = lost_ranks(ends)
    if lost is not None:
        notes.append(lost)
    if failing is not None:
        steps = {t.rank: len(t.steps()) for t in tree.rank_trees()}
        status, ended, error = multi_gpu_ending(ends, failing, summary.status, steps)
        summary = dataclasses.replace(
            summary, status=status, ended=ended, error=error, failing_rank=failing.rank
        )
    lines, figures = parallel_figures(tree, ends, run.samples, notes)
    if baseline is not None:
        figures = dataclasses.replace(figures, efficiency=efficiency(tree, config, baseline, notes))
    return summary, lines, figures


def _straggler_comments(figures: ParallelFigures | None) -> dict[int, str]:
    """Step index -> the trace table's word on that step's straggler."""
    if figures is None:
        return {}
    comments = {}
    for s in figures.stragglers:
        parts = []
        if s.excess_s is not None:
            parts.append(f"+{duration(s.excess_s)} compute")
        if s.wait_caused_s is not None:
            parts.append(f"others waited {duration(s.wait_caused_s)}")
        detail = f" ({', '.join(parts)})" if parts else ""
        comments[s.step] = f"straggler rank {s.rank}{detail}"
    return comments


def build_report(
    run: RunData, baseline: RunData | None = None, peak_tflops: float | None = None
) -> Report:
    """The whole analysis of one run, against a one-GPU ``baseline`` run when given (multi-GPU
    runs only); ``peak_tflops`` is the GPU's dense peak where the table's is not wanted (or
    not known). Raises WanOtelError when the run has no spans, or the baseline cannot be
    compared with it."""
    notes = list(run.warnings)
    started = run.summary.attributes if run.summary is not None else None
    tree = build_tree(run.run_id, run.spans, notes, started)
    sm = SmSeries(tree.root, run.samples)
    system, config = system_info(tree.root), run_config(tree.root)
    memory = _memory(tree, config, notes)
    summary = _summary(tree, config, system, memory, sm, run.summary)
    lines: list[RankLine] = []
    figures: ParallelFigures | None = None
    if tree.world_size > 1:
        summary, lines, figures = _multi_gpu(tree, summary, config, run, baseline, notes)
    elif baseline is not None:
        efficiency(tree, config, baseline, notes)  # refuses: this run ran on one GPU
    stages = stage_lines(tree, sm.mean)
    compute, step_flops = compute_figures(tree, config, system, peak_tflops)
    energy, costs = cost_figures(tree, config, stages, compute, step_flops, run.samples)
    summary = dataclasses.replace(
        summary, step_flops=compute.step_flops, mfu_pct=compute.mfu_pct, energy_j=energy.total_j
    )
    experts = expert_lines(tree, sm, notes)
    trace = trace_rows(tree, sm.mean, _straggler_comments(figures))
    found = recommend(summary, stages, memory, config, tree)
    found += recommend_experts(experts, summary, config)
    parallel = recommend_parallel(figures, lines)
    if any(r.rule == COMMUNICATION_BOUND for r in parallel):
        # SM activity counts the collectives' kernels as busy: denoising that spends its time
        # communicating is not made shorter by faster compute kernels.
        found = [r for r in found if r.rule != "compute_bound"]
    return Report(
        run_id=run.run_id,
        title=report_title(config),
        system=system,
        config=config,
        summary=summary,
        stages=stages,
        memory=memory,
        recommendations=found + parallel,
        trace=trace,
        notes=notes,
        ranks=lines,
        parallel=figures,
        experts=experts,
        compute=compute,
        energy=energy,
        costs=costs,
        known_baseline=known_baseline(config, system, summary, stages),
    )


def iso_time(t_ns: int) -> str:
    """UTC timestamp of an epoch-nanosecond time, to the second."""
    moment = dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
