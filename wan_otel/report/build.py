"""Build the Report from a run's spans and GPU samples: a pure function, no I/O."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
from collections.abc import Sequence

from wan_otel import semconv as sc
from wan_otel.report.integrate import CounterSeries, WindowMean
from wan_otel.report.model import (
    MemoryFigures,
    Report,
    RunConfig,
    Summary,
    SystemInfo,
)
from wan_otel.report.recommend import recommend
from wan_otel.report.spans import (
    RunTree,
    attr_float,
    attr_gib,
    attr_int,
    attr_str,
    build_tree,
    error_text,
)
from wan_otel.report.stages import UNTRACED_MEMORY_GIB, stage_label, stage_lines
from wan_otel.report.trace_table import trace_rows
from wan_otel.store.otlp_json import STATUS_ERROR, SpanRecord
from wan_otel.store.run_store import RunData
from wan_otel.store.samples import GpuSample
from wan_otel.store.summary import KILLED, RUNNING, RunSummary, interrupt_detail

THROUGHPUT_STAGES = (sc.SPAN_TEXT_ENCODE, sc.SPAN_DENOISE, sc.SPAN_VAE_DECODE)
SOURCE_MEANING = {
    "gpm": "GPM SM activity (share of SMs busy)",
    "nvml_util": "NVML utilization (share of time any kernel ran; this GPU has no GPM)",
}


class SmSeries:
    """SM activity of the run's GPU: window means, or why there are none."""

    def __init__(self, root: SpanRecord, samples: Sequence[GpuSample]) -> None:
        uuid = attr_str(root, sc.GPU_UUID)
        self.series: CounterSeries | None = None
        self.source: str | None = None
        if not samples:
            gpu = attr_str(root, sc.DEVICE) or "unknown device"
            self.why = f"no GPU samples were recorded for this run (device: {gpu})"
            return
        mine = [s for s in samples if s.uuid == uuid and s.sm_active_s is not None]
        if not mine:
            seen = sorted({s.uuid for s in samples})
            self.why = f"no GPU samples for the run's GPU {uuid} (samples cover {', '.join(seen)})"
            return
        self.series = CounterSeries([s.t_ns for s in mine], [s.sm_active_s or 0.0 for s in mine])
        self.source = mine[-1].source
        self.why = ""

    def mean(self, span: SpanRecord) -> WindowMean:
        if self.series is None:
            return WindowMean(None, self.why)
        return self.series.mean(span.start_ns, span.end_ns)


def _system(root: SpanRecord) -> SystemInfo:
    return SystemInfo(
        device=attr_str(root, sc.DEVICE),
        gpu_name=attr_str(root, sc.GPU_NAME),
        gpu_uuid=attr_str(root, sc.GPU_UUID),
        vram_gb=attr_gib(root, sc.GPU_MEMORY_CAPACITY),
        driver_version=attr_str(root, sc.GPU_DRIVER_VERSION),
        cuda_version=attr_str(root, sc.CUDA_VERSION),
        torch_version=attr_str(root, sc.TORCH_VERSION),
        diffusers_version=attr_str(root, sc.DIFFUSERS_VERSION),
        host_name=attr_str(root, sc.HOST_NAME) or _resource_str(root, sc.HOST_NAME),
    )


def _resource_str(span: SpanRecord, key: str) -> str | None:
    value = span.resource.get(key)
    return None if value is None else str(value)


def _config(root: SpanRecord) -> RunConfig:
    dtypes = {
        name: value
        for name, key in (
            ("transformer", sc.DTYPE_TRANSFORMER),
            ("text_encoder", sc.DTYPE_TEXT_ENCODER),
            ("vae", sc.DTYPE_VAE),
        )
        if (value := attr_str(root, key)) is not None
    }
    return RunConfig(
        model=attr_str(root, sc.MODEL_NAME),
        task=attr_str(root, sc.MODEL_TASK),
        source=attr_str(root, sc.MODEL_SOURCE),
        architecture=attr_str(root, sc.MODEL_ARCHITECTURE),
        width=attr_int(root, sc.REQUEST_WIDTH),
        height=attr_int(root, sc.REQUEST_HEIGHT),
        num_frames=attr_int(root, sc.REQUEST_NUM_FRAMES),
        fps=attr_int(root, sc.REQUEST_FPS),
        num_steps=attr_int(root, sc.REQUEST_NUM_STEPS),
        guidance_scale=attr_float(root, sc.REQUEST_GUIDANCE),
        seed=attr_int(root, sc.REQUEST_SEED),
        offload=attr_str(root, sc.OFFLOAD_MODE),
        dtypes=dtypes,
    )


def _title(config: RunConfig) -> str:
    model = config.model or "Wan2.2"
    detail = ", ".join(p for p in (config.architecture, config.task, config.source) if p)
    return f"{model} Performance Analysis Report" + (f" ({detail})" if detail else "")


def _peak(spans: Sequence[SpanRecord], key: str) -> float | None:
    values = [v for s in spans if (v := attr_gib(s, key)) is not None]
    return max(values) if values else None


def _baseline(tree: RunTree, span: SpanRecord) -> float | None:
    """Allocated GiB when the span's own work began: at its start, or, where offload moved
    weights inside it, after the last of those transfers (what moved is not working set)."""
    transfers = tree.descendants(span, sc.SPAN_WEIGHT_TRANSFER)
    if transfers:
        last = max(transfers, key=lambda t: t.end_ns)
        after = attr_gib(last, sc.MEMORY_ALLOCATED_END)
        if after is not None:
            return after
    return attr_gib(span, sc.MEMORY_ALLOCATED_START)


def _memory(tree: RunTree, config: RunConfig) -> MemoryFigures:
    root = tree.root
    weights = {
        comp: gib
        for comp in sc.WEIGHT_COMPONENTS
        if (gib := attr_gib(root, sc.weight_bytes_key(comp))) is not None
    }
    activation, activation_step = None, None
    for step in tree.steps():
        peak = attr_gib(step, sc.MEMORY_ALLOCATED_PEAK)
        start = _baseline(tree, step)
        if (
            peak is not None
            and start is not None
            and (activation is None or peak - start > activation)
        ):
            activation, activation_step = peak - start, attr_int(step, sc.DENOISE_STEP)
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
        text_encoder_baseline_gb=_baseline(tree, text) if text else None,
        vae_peak_gb=attr_gib(vae, sc.MEMORY_ALLOCATED_PEAK) if vae else None,
        vae_baseline_gb=_baseline(tree, vae) if vae else None,
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
        sm_note = (
            f"{meaning}, sampled every {sm.series.interval_s:.2f} s and integrated over each "
            "span's exact window"
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
    )


def build_report(run: RunData) -> Report:
    """The whole analysis of one run. Raises WanOtelError only when the run has no spans."""
    notes = list(run.warnings)
    started = run.summary.attributes if run.summary is not None else None
    tree = build_tree(run.run_id, run.spans, notes, started)
    sm = SmSeries(tree.root, run.samples)
    system, config = _system(tree.root), _config(tree.root)
    memory = _memory(tree, config)
    summary = _summary(tree, config, system, memory, sm, run.summary)
    stages = stage_lines(tree, sm.mean)
    trace = trace_rows(tree, sm.mean)
    return Report(
        run_id=run.run_id,
        title=_title(config),
        system=system,
        config=config,
        summary=summary,
        stages=stages,
        memory=memory,
        recommendations=recommend(summary, stages, memory, config, tree),
        trace=trace,
        notes=notes,
    )


def iso_time(t_ns: int) -> str:
    """UTC timestamp of an epoch-nanosecond time, to the second."""
    moment = dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
