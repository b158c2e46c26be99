"""The Report value: everything ``wan-otel report`` shows, computed once, rendered many ways.

Units: seconds, GiB (2^30 bytes; the ``_gb`` keys of the JSON schema), percent (0..100) for
shares and SM activity, SM-seconds for load. ``None`` means "not measured" and renders as n/a.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wan_otel.report.limits import ComputeFigures, Costs, EnergyFigures, KnownBaseline


@dataclass(frozen=True)
class SystemInfo:
    device: str | None
    gpu_name: str | None
    gpu_uuid: str | None
    vram_gb: float | None
    driver_version: str | None
    cuda_version: str | None
    torch_version: str | None
    diffusers_version: str | None
    host_name: str | None


@dataclass(frozen=True)
class RunConfig:
    model: str | None
    task: str | None
    source: str | None
    architecture: str | None
    width: int | None
    height: int | None
    num_frames: int | None
    fps: int | None
    num_steps: int | None
    guidance_scale: float | None
    seed: int | None
    offload: str | None
    dtypes: dict[str, str]


@dataclass(frozen=True)
class Summary:
    status: str
    """``ok``; ``error`` (the run failed); ``interrupted`` (a signal stopped it, its spans all
    written); ``killed`` (no root span and its process is gone: SIGKILL, out of memory);
    ``running`` (no root span yet, its process is alive); ``incomplete`` (no root span, and
    nothing says why)."""
    ended: str
    """How the run ended, in words (one line)."""
    error: str | None
    started_ns: int
    total_s: float
    steps_done: int
    step_s_mean: float | None
    step_s_first: float | None
    step_s_stable: float | None
    """Mean step time after the first (warm-up) step."""
    steps_per_s: float | None
    throughput_window_s: float | None
    """Text encoding + denoising + VAE decode: the time throughput is measured over."""
    frames_per_s: float | None
    mpx_per_s: float | None
    peak_memory_gb: float | None
    vram_gb: float | None
    peak_memory_pct: float | None
    avg_sm_pct: float | None
    load_sm_s: float | None
    sm_source: str | None
    sm_note: str | None
    """Why SM figures are missing, or how exact they are."""
    world_size: int = 1
    """GPUs (processes) that ran the generation; 1 for a one-GPU run."""
    failing_rank: int | None = None
    """Multi-GPU runs: the rank that failed (raised an error that is not an interruption, or
    was killed while others recorded their end); None otherwise, and always for one GPU."""
    step_flops: float | None = None
    """Model FLOPs of a mean step (``Report.compute``)."""
    mfu_pct: float | None = None
    """MFU of the denoising stage against the GPUs' dense peak."""
    energy_j: float | None = None
    """GPU energy of the generation (every GPU of the run), joules."""


@dataclass(frozen=True)
class StageLine:
    key: str
    label: str
    duration_s: float | None
    """None when the run has no span for the stage."""
    share_pct: float | None
    sm_pct: float | None
    transfer_s: float
    """Time spent in weight transfers inside the stage (not compute)."""


@dataclass(frozen=True)
class MemoryFigures:
    offload: str | None
    weights_gb: dict[str, float]
    dit_activation_peak_gb: float | None
    """Largest step peak minus the step's baseline (its start, or after its transfers)."""
    dit_activation_step: int | None
    text_encoder_peak_gb: float | None
    text_encoder_baseline_gb: float | None
    """Allocated when text encoding's own work began (after any weight transfer inside it)."""
    vae_peak_gb: float | None
    vae_baseline_gb: float | None
    """Allocated when decoding began (after any weight transfer inside it): the peak minus
    this is the decode's working set."""
    run_peak_gb: float | None
    reserved_peak_gb: float | None
    untraced_changes: list[str] = field(default_factory=list)
    """Memory that changed between stage spans, outside any span."""


@dataclass(frozen=True)
class Recommendation:
    rule: str
    text: str


@dataclass(frozen=True)
class TraceRow:
    name: str
    depth: int
    duration_s: float
    sm_pct: float | None
    sm_tolerance_pct: float | None
    load: float | None
    """SM-seconds: duration_s x sm_pct / 100."""
    mem_start_gb: float | None
    mem_end_gb: float | None
    peak_mem_gb: float | None
    mem_delta_gb: float | None
    comment: str


@dataclass(frozen=True)
class RankLine:
    """One rank of a multi-GPU run: its GPU, its steps split into compute, communication and
    waiting (totals over its denoising steps), its GPU's activity and its memory peak."""

    rank: int
    status: str
    """``ok``, ``error`` (it raised), ``interrupted`` (a signal stopped it), ``killed`` (its
    spans stop without its rank span: SIGKILL, the OOM killer) or ``missing`` (no spans)."""
    error: str | None
    gpu_uuid: str | None
    gpu_name: str | None
    device: str | None
    host_name: str | None
    steps_done: int
    step_s_mean: float | None
    denoising_s: float | None
    """The rank's denoising stage (its ``wan.denoise.loop``), the denominator of its shares."""
    compute_s: float | None
    """Time of its steps outside collectives, summed over the steps."""
    comm_s: float | None
    """Time in collectives during its steps, summed over the steps: transfer and waiting."""
    comm_pct: float | None
    """``comm_s`` as a share of ``denoising_s``."""
    wait_s: float | None
    """Part of ``comm_s`` spent waiting for a slower peer: each collective's duration above
    the fastest rank's for the same collective, summed."""
    wait_reported_s: float | None
    """The rank's own ``wan.parallel.wait_s`` (computed by the pipeline), when recorded."""
    comm_gb: float | None
    """GiB this rank sent into collectives over its steps."""
    straggler_steps: int
    """Steps in which this rank had the longest compute."""
    sm_pct: float | None
    """Activity of its GPU over its denoising stage (the summary's SM source)."""
    peak_memory_gb: float | None


@dataclass(frozen=True)
class StepStraggler:
    """The rank the others waited for in one step: the one with the longest compute."""

    step: int
    rank: int
    compute_s: float | None
    """The straggler's compute in the step."""
    excess_s: float | None
    """Its compute in the step above the mean compute of the other ranks."""
    wait_caused_s: float | None
    """The other ranks' waiting in that step, summed (GPU-seconds lost to the straggler)."""


@dataclass(frozen=True)
class Efficiency:
    """A multi-GPU run against a one-GPU baseline of the same generation."""

    baseline_run_id: str
    baseline_gpu_name: str | None
    baseline_step_s: float
    """The baseline's mean step after the first (warm-up) step."""
    step_s: float
    """This run's mean step after the first, on rank 0."""
    step_speedup: float
    step_efficiency_pct: float
    """``step_speedup`` / world size, in percent."""
    baseline_denoising_s: float | None
    denoising_speedup: float | None
    """None when the runs ran different step counts (their stages are not comparable)."""
    denoising_efficiency_pct: float | None


@dataclass(frozen=True)
class ParallelFigures:
    """What a multi-GPU run adds to the report (absent for one GPU)."""

    world_size: int
    ulysses_degree: int | None
    ring_degree: int | None
    comm_s: float | None
    """Time in collectives over every rank's steps."""
    comm_pct: float | None
    """Communication share of the denoising time, over all ranks (sum over sum)."""
    wait_s: float | None
    wait_pct: float | None
    """Waiting share of the denoising time, over all ranks."""
    straggler: int | None
    """The rank that straggled in the most steps (lowest rank on a tie)."""
    straggler_steps: int
    stragglers: list[StepStraggler]
    """One per step where at least two ranks recorded their compute, in step order."""
    efficiency: Efficiency | None


@dataclass(frozen=True)
class ExpertLine:
    """One expert of a two-expert model (Wan2.2 A14B): the steps it ran, their time, activity
    and memory, its weights and their moves. The low-noise expert's first step is the switch:
    its ``first_step_*`` figures are what the switch cost."""

    name: str
    """Display name (``semconv.EXPERTS``): ``high-noise`` or ``low-noise``."""
    component: str
    """``transformer`` (high-noise) or ``transformer_2`` (low-noise)."""
    guidance_scale: float | None
    """The guidance scale it ran with (``guidance_scale``, ``guidance_scale_2``)."""
    steps: int
    first_step: int | None
    """Index of its first step (the low-noise expert's: the switch step)."""
    last_step: int | None
    first_timestep: float | None
    """Timestep of its first step (the low-noise expert's: the switch timestep)."""
    duration_s: float
    """Its steps' durations, summed (0 when it ran no step)."""
    step_s_mean: float | None
    step_s_first: float | None
    step_s_stable: float | None
    """Mean of its steps after its first (None below two steps): its first step may hold
    loading (offload), warm-up, or the switch."""
    first_step_extra_s: float | None
    """Its first step above ``step_s_stable``: the low-noise expert's is the switch's cost."""
    first_step_transfer_s: float | None
    """Weight transfers inside its first step."""
    first_step_transfer_gb: float | None
    forwards_per_step: float | None
    """Mean transformer forwards per step (2 with classifier-free guidance)."""
    sm_pct: float | None
    """SM activity from its first step's start to its last step's end (each run of
    consecutive steps integrated as a stage row, weighted by its length)."""
    weights_gb: float | None
    init_s: float | None
    """Its ``wan.component.initialize`` span (building or loading it)."""
    transfer_s: float
    """Weight transfers inside its steps (of any component: offload)."""
    transfer_gb: float
    own_transfer_s: float
    """Moves of its own weights anywhere in the generation but initialization (model offload:
    on every call), summed."""
    own_transfer_gb: float
    activation_peak_gb: float | None
    """Largest (step peak - the step's baseline) over its steps."""
    peak_memory_gb: float | None
    """Largest allocated peak of its steps."""
    boundary_ratio: float | None
    """The run's boundary ratio (the same in both experts' lines)."""
    boundary_timestep: float | None
    """The run's boundary timestep (the same in both experts' lines): the high-noise expert
    runs the timesteps at or above it, the low-noise one those below."""


@dataclass(frozen=True)
class Report:
    run_id: str
    title: str
    system: SystemInfo
    config: RunConfig
    summary: Summary
    stages: list[StageLine]
    memory: MemoryFigures
    recommendations: list[Recommendation]
    trace: list[TraceRow]
    notes: list[str]
    """What is missing or approximate: unreadable lines, absent samples, partial data."""
    ranks: list[RankLine] = field(default_factory=list)
    """One line per rank of a multi-GPU run, in rank order; empty for one GPU."""
    parallel: ParallelFigures | None = None
    """Multi-GPU figures; None for one GPU."""
    experts: list[ExpertLine] = field(default_factory=list)
    """The two experts of a two-expert model (high-noise, then low-noise); empty for one."""
    compute: ComputeFigures | None = None
    """Model FLOPs and MFU (None only for reports built without them)."""
    energy: EnergyFigures | None = None
    costs: Costs = field(default_factory=Costs)
    """FLOPs, MFU and energy of each stage and step."""
    known_baseline: KnownBaseline | None = None
    """The known figure for the run's GPU and configuration, when one matches."""
