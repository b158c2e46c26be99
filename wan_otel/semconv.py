"""The naming contract: every span name, attribute key and metric name wan-otel uses.

Dashboards, alert rules, the report, the exporter, the pipeline and the tests import these
constants; nobody retypes a name. Each constant's docstring gives its type, unit and source,
and the OpenTelemetry peer name (``hw.gpu.*``) where one exists. ``docs/telemetry.md`` is
generated from this module (``python -m wan_otel.semconv_doc``) and a test keeps it current.

Rules (STYLE.md): span names ``wan.<component>.<operation>`` with no ids or numbers in them;
attributes in the ``wan.`` namespace unless a standard key means the same; Prometheus names
``wan_<quantity>_<base unit>``, ``_total`` only on counters, ``_ratio`` for 0..1 fractions;
labels bounded, never a run id or a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# --------------------------------------------------------------------------------------------
# Span names
# --------------------------------------------------------------------------------------------

SPAN_GENERATE: Final = "wan.pipeline.generate"
"""Root span, one per generation (run). Its duration is the run's total latency."""

SPAN_INITIALIZE: Final = "wan.pipeline.initialize"
"""Building or loading the pipeline: components, scheduler, device placement."""

SPAN_COMPONENT_INITIALIZE: Final = "wan.component.initialize"
"""One component built or loaded (child of initialize); ``wan.component.name`` says which."""

SPAN_PREPROCESS: Final = "wan.pipeline.preprocess"
"""Between text encoding and the first step: timesteps, latent preparation and image
conditioning (diffusers encodes the prompt first)."""

SPAN_TEXT_ENCODE: Final = "wan.text_encoder.encode"
"""Prompt (and negative prompt) encoding by the UMT5 text encoder."""

SPAN_DENOISE: Final = "wan.denoise.loop"
"""The denoising loop; parent of one ``wan.denoise.step`` span per step."""

SPAN_DENOISE_STEP: Final = "wan.denoise.step"
"""One denoising step: the transformer passes and the scheduler update."""

SPAN_TRANSFORMER_FORWARD: Final = "wan.transformer.forward"
"""One transformer forward (child of a step); ``wan.transformer.branch`` is cond or uncond."""

SPAN_WEIGHT_TRANSFER: Final = "wan.offload.transfer"
"""Weights moved between host and device by an offload mechanism. Time moving weights is
not compute time; the report shows it apart."""

SPAN_VAE_DECODE: Final = "wan.vae.decode"
"""``vae.decode`` of the final latents to pixels (a method, not ``forward``)."""

SPAN_EXPORT: Final = "wan.pipeline.export"
"""Writing the output video (mp4) to its file."""

SPAN_RANK: Final = "wan.parallel.rank"
"""Multi-GPU runs: the root of one rank's spans (ranks 1 and up; rank 0's spans hang under the
run's ``wan.pipeline.generate`` as in a one-GPU run). A child of that root span, in the same
trace; its children are the rank's own stages, steps, forwards and collectives."""

SPAN_COLLECTIVE: Final = "wan.parallel.collective"
"""Multi-GPU runs: the collectives of one kind (``wan.collective.op``) inside one transformer
forward, merged like weight moves: the span starts at the first and lasts the sum of their
durations; ``wan.collective.durations`` keeps each one's. A collective's time is measured on
the compute stream from its launch to the moment its result may be used: the transfer, and
the wait for the slowest peer."""

# --------------------------------------------------------------------------------------------
# Stages: the root span's direct children, one table read by every side
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One stage of a generation: its span, its names on each side, and its place in the run."""

    order: int
    """Run order from 1: the latency breakdown's numbering and the trace table's order."""
    span: str
    """Span name (a direct child of the root span)."""
    key: str
    """Short id: the report's JSON ``stages[].key`` and the server's job ``stage``."""
    metric_label: str
    """Value of the ``stage`` label of ``wan_stage_duration_seconds``: the span name without
    ``wan.`` (kept as it is so that Prometheus series do not change)."""
    label: str
    """Display label: report sections and the progress bar."""


STAGES: Final = (
    Stage(1, SPAN_INITIALIZE, "initialization", "pipeline.initialize", "Initialization"),
    Stage(2, SPAN_TEXT_ENCODE, "text_encoding", "text_encoder.encode", "Text Encoding"),
    Stage(3, SPAN_PREPROCESS, "preprocess", "pipeline.preprocess", "Preprocess"),
    Stage(4, SPAN_DENOISE, "denoising", "denoise.loop", "Denoising"),
    Stage(5, SPAN_VAE_DECODE, "vae_decode", "vae.decode", "VAE Decoding"),
    Stage(6, SPAN_EXPORT, "export", "pipeline.export", "Export"),
)
"""The stages in run order (diffusers encodes the prompt before it prepares latents); the
full table is at the end of docs/telemetry.md."""

STAGE_SPANS: Final = tuple(stage.span for stage in STAGES)
"""The stages' span names, in run order: the root's children that make up the latency
breakdown."""

_STAGE_BY_SPAN: Final = {stage.span: stage for stage in STAGES}


def stage_for_span(name: str) -> Stage | None:
    """The stage whose span is named ``name``, or None for a span that is not a stage."""
    return _STAGE_BY_SPAN.get(name)


# --------------------------------------------------------------------------------------------
# Span attributes: run and request (root span; RUN_ID on every span of the run)
# --------------------------------------------------------------------------------------------

RUN_ID: Final = "wan.run.id"
"""string. The run id, on every span of the run (trace backends search spans, and one serving
process runs many jobs). Never a metric label."""

RUN_INTERRUPT_SIGNAL: Final = "wan.run.interrupt.signal"
"""string. Root span of a run stopped by a signal: its name, ``SIGTERM`` or ``SIGINT`` (what
Kubernetes sends on eviction, rollout or preemption; Ctrl-C). The root's status is ERROR."""

RUN_INTERRUPT_STAGE: Final = "wan.run.interrupt.stage"
"""string. Root span of an interrupted run: the span name of the stage the signal arrived in."""

RUN_INTERRUPT_STEP: Final = "wan.run.interrupt.step"
"""int. Root span of a run interrupted while denoising: the index of the step in progress
(between two steps: of the step it kept from starting; absent after the last step)."""

WORLD_SIZE: Final = "wan.world_size"
"""int. Processes (GPUs) that run one generation together; 1 for a single-GPU run. On every
span of the run."""

RANK: Final = "wan.rank"
"""int. This process's rank in a multi-GPU run (0 to world size - 1); on every span."""

MODEL_NAME: Final = "wan.model.name"
"""string. Model name, e.g. ``Wan2.2-TI2V-5B``."""

MODEL_TASK: Final = "wan.model.task"
"""string. ``t2v``, ``i2v`` or ``ti2v``."""

MODEL_SOURCE: Final = "wan.model.source"
"""string. Where the weights came from: a preset name (``tiny``, ``ti2v-5b-random``) or
``checkpoint``."""

MODEL_ARCHITECTURE: Final = "wan.model.architecture"
"""string. Denoiser architecture, ``DiT`` for Wan2.2 (used in the report title)."""

REQUEST_HEIGHT: Final = "wan.request.height"
"""int, pixels. Output video height."""

REQUEST_WIDTH: Final = "wan.request.width"
"""int, pixels. Output video width."""

REQUEST_NUM_FRAMES: Final = "wan.request.num_frames"
"""int, frames. Output video length."""

REQUEST_FPS: Final = "wan.request.fps"
"""int, frames per second of the exported video."""

REQUEST_NUM_STEPS: Final = "wan.request.num_inference_steps"
"""int. Denoising steps asked for."""

REQUEST_GUIDANCE: Final = "wan.request.guidance_scale"
"""double. Classifier-free guidance scale (> 1 runs two transformer passes a step); with two
experts, the high-noise expert's."""

REQUEST_GUIDANCE_2: Final = "wan.request.guidance_scale_2"
"""double. Two-expert models (Wan2.2 A14B): the low-noise expert's guidance scale."""

MODEL_BOUNDARY_RATIO: Final = "wan.model.boundary_ratio"
"""double. Two-expert models: the fraction of the training timesteps above which the
high-noise expert (``transformer``) runs; below it the low-noise one (``transformer_2``).
Wan2.2 T2V-A14B 0.875, I2V-A14B 0.9."""

REQUEST_SEED: Final = "wan.request.seed"
"""int. Random seed, when given."""

REQUEST_HAS_IMAGE: Final = "wan.request.has_image"
"""boolean. Whether an input image conditions the video (TI2V image-to-video)."""

REQUEST_PROMPT_LENGTH: Final = "wan.request.prompt.length"
"""int, characters. Length of the prompt (recorded instead of its text by default)."""

REQUEST_PROMPT_SHA256: Final = "wan.request.prompt.sha256"
"""string. SHA-256 hex of the prompt, so equal prompts can be matched without the text."""

REQUEST_PROMPT: Final = "wan.request.prompt"
"""string. The prompt text: only when the user opts in (``--record-prompt``)."""

OFFLOAD_MODE: Final = "wan.offload.mode"
"""string. ``none``, ``model``, ``sequential`` or ``group`` (diffusers' offload mechanisms)."""

OFFLOAD_MODES: Final = ("none", "model", "sequential", "group")
"""The values OFFLOAD_MODE takes."""

DTYPE_TRANSFORMER: Final = "wan.dtype.transformer"
"""string. Transformer weights dtype, e.g. ``bfloat16``."""

DTYPE_TEXT_ENCODER: Final = "wan.dtype.text_encoder"
"""string. Text encoder weights dtype."""

DTYPE_VAE: Final = "wan.dtype.vae"
"""string. VAE weights dtype."""

# --------------------------------------------------------------------------------------------
# OpenTelemetry GenAI attributes (root span): the generation in the GenAI conventions' keys
# --------------------------------------------------------------------------------------------

GENAI_OPERATION_NAME: Final = "gen_ai.operation.name"
"""string. Standard OTel GenAI key: always GENAI_OPERATION. The GenAI semantic conventions
(open-telemetry/semantic-conventions-genai, status Development) describe calls to generative
models; where one of their keys means something a video generation has, the root span carries
it beside our own key, so that GenAI-aware backends find the generation. The instrumentation
writes these from the root's own attributes, at the call; the span keeps its name and its kind
(INTERNAL, what the conventions ask of a model run in the same process)."""

GENAI_OPERATION: Final = "generate_content"
"""Value of GENAI_OPERATION_NAME: the conventions' well-known value for a multimodal content
generation; their other operations (chat, text_completion, embeddings, ...) are not videos."""

GENAI_PROVIDER_NAME: Final = "gen_ai.provider.name"
"""string. Standard OTel GenAI key (required on their inference spans): always GENAI_PROVIDER."""

GENAI_PROVIDER: Final = "diffusers"
"""Value of GENAI_PROVIDER_NAME. The well-known values are hosted APIs (openai, aws.bedrock,
...); a model that diffusers runs in the same process has none of them, so the library that
runs it is named, a custom value as the conventions allow."""

GENAI_REQUEST_MODEL: Final = "gen_ai.request.model"
"""string. Standard OTel GenAI key: the value of MODEL_NAME."""

GENAI_REQUEST_SEED: Final = "gen_ai.request.seed"
"""int. Standard OTel GenAI key: the value of REQUEST_SEED, when the call gave a seed."""

GENAI_OUTPUT_TYPE: Final = "gen_ai.output.type"
"""string. Standard OTel GenAI key, the output modality the call asks for: always
GENAI_OUTPUT_VIDEO."""

GENAI_OUTPUT_VIDEO: Final = "video"
"""Value of GENAI_OUTPUT_TYPE. Not one of the conventions' well-known values (text, json,
image, speech: they have no video type yet), so a custom value in their style; never
``image``, which would count every video as one picture. The video's size is in
REQUEST_HEIGHT, REQUEST_WIDTH and REQUEST_NUM_FRAMES, which have no GenAI key."""

GENAI_NOT_WRITTEN: Final = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.request.max_tokens",
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.top_k",
    "gen_ai.request.choice.count",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system",
)
"""GenAI keys that do not fit and are never written. Tokens: the prompt is tokenized inside
the pipeline (its length is REQUEST_PROMPT_LENGTH, in characters) and a video is not made of
tokens. Sampling settings: a diffusion model has none; its knobs are REQUEST_NUM_STEPS and
REQUEST_GUIDANCE. Choice count: the conventions want it only when it is not 1, and
diffusers' ``num_videos_per_prompt`` is 1 unless asked (it has no key of ours yet). Messages:
the prompt is private by default (REQUEST_PROMPT only when the user opts in).
``gen_ai.system``: deprecated, replaced by GENAI_PROVIDER_NAME. Not taken either: the GenAI
span name (``{operation} {model}``; ours is SPAN_GENERATE, a name that never changes) and the
GenAI duration metrics, whose recommended buckets stop at 81.92 s where a video takes minutes
(METRIC_GENERATION_DURATION is the one to use)."""

# --------------------------------------------------------------------------------------------
# Span attributes: system context (root span)
# --------------------------------------------------------------------------------------------

DEVICE: Final = "wan.device"
"""string. Torch device the pipeline ran on, e.g. ``cuda:0`` or ``cpu``."""

GPU_NAME: Final = "wan.gpu.name"
"""string. GPU product name, e.g. ``NVIDIA H100 80GB HBM3``. OTel peer: ``hw.model``."""

GPU_UUID: Final = "wan.gpu.uuid"
"""string. GPU UUID; equals the exporter's ``uuid`` label and the samples' ``uuid``: the key
that joins spans to GPU metrics. OTel peer: ``hw.id``."""

GPU_MEMORY_CAPACITY: Final = "wan.gpu.memory.total_bytes"
"""int, bytes. Device memory as torch sees it (``total_memory``)."""

GPU_DRIVER_VERSION: Final = "wan.gpu.driver_version"
"""string. NVIDIA driver version."""

CUDA_VERSION: Final = "wan.cuda.version"
"""string. CUDA runtime version torch was built with."""

TORCH_VERSION: Final = "wan.torch.version"
"""string. torch version."""

DIFFUSERS_VERSION: Final = "wan.diffusers.version"
"""string. diffusers version."""

HOST_NAME: Final = "host.name"
"""string. Standard OTel key: the host (node) name; joins to the exporter's ``hostname``."""

WEIGHT_COMPONENTS: Final = ("text_encoder", "transformer", "transformer_2", "vae")
"""Pipeline components whose static weight bytes are recorded."""


def weight_bytes_key(component: str) -> str:
    """Attribute key of one component's static weight bytes (root span), e.g.
    ``wan.weights.transformer.bytes``: int, bytes, parameters plus buffers."""
    if component not in WEIGHT_COMPONENTS:
        raise ValueError(f"unknown component {component!r}; expected one of {WEIGHT_COMPONENTS}")
    return f"wan.weights.{component}.bytes"


# --------------------------------------------------------------------------------------------
# Span attributes: stages
# --------------------------------------------------------------------------------------------

COMPONENT_NAME: Final = "wan.component.name"
"""string. Pipeline component a span is about (``transformer``, ``vae``, ``text_encoder``...)."""

DENOISE_NUM_STEPS: Final = "wan.denoise.num_steps"
"""int. Steps the loop ran (on the loop span)."""

DENOISE_STEP: Final = "wan.denoise.step"
"""int. Step index from 0 (on step spans and their children)."""

DENOISE_TIMESTEP: Final = "wan.denoise.timestep"
"""double. Scheduler timestep of the step."""

DENOISE_EXPERT: Final = "wan.denoise.expert"
"""string. Which transformer ran the step (``transformer`` or ``transformer_2``) where a model
has two experts (Wan2.2 A14B); absent for TI2V-5B."""

EXPERTS: Final = {"transformer": "high-noise", "transformer_2": "low-noise"}
"""The two experts of Wan2.2 A14B by component, and their names in reports."""

DENOISE_BOUNDARY_TIMESTEP: Final = "wan.denoise.boundary_timestep"
"""double. Loop span of a two-expert model: the timestep at which the low-noise expert takes
over (``boundary_ratio`` x the scheduler's training timesteps)."""

DENOISE_SWITCH_STEP: Final = "wan.denoise.switch_step"
"""int. Loop span of a two-expert model: the index of the first step the low-noise expert ran
(absent when every step ran one expert)."""

DENOISE_SWITCH_TIMESTEP: Final = "wan.denoise.switch_timestep"
"""double. Loop span of a two-expert model: the timestep of that first low-noise step."""

TRANSFORMER_BRANCH: Final = "wan.transformer.branch"
"""string. ``cond`` or ``uncond``: the classifier-free guidance pass."""

TRANSFER_DIRECTION: Final = "wan.offload.direction"
"""string. ``to_device`` (onload) or ``to_host`` (offload)."""

TRANSFER_BYTES: Final = "wan.offload.bytes"
"""int, bytes. Weight bytes moved by one transfer."""

TRANSFER_MOVES: Final = "wan.offload.moves"
"""int. Weight moves merged into this transfer span. Group and sequential offloading move
weights block by block or layer by layer, hundreds of times a step; wan-otel merges the moves
of one component and direction under one parent span into one transfer span that starts at the
first move and lasts the sum of their durations. Absent on a single whole-component move."""

OUTPUT_FORMAT: Final = "wan.output.format"
"""string. Output container, e.g. ``mp4``."""

OUTPUT_BYTES: Final = "wan.output.bytes"
"""int, bytes. Size of the written output file."""

COLLECTIVE_OP: Final = "wan.collective.op"
"""string. The collective of a ``wan.parallel.collective`` span: ``all_to_all`` (Ulysses),
``all_gather`` (ring attention's key/value exchange, the output gather), ``permute``."""

COLLECTIVE_COUNT: Final = "wan.collective.count"
"""int. Collectives merged into this span (Ulysses: 4 per attention layer)."""

COLLECTIVE_BYTES: Final = "wan.collective.bytes"
"""int, bytes. Bytes this rank sent into the merged collectives."""

COLLECTIVE_DURATIONS: Final = "wan.collective.durations"
"""double[], seconds. Each merged collective's duration, in call order: the report aligns them
across ranks (the same index is the same collective on every rank) to split waiting from
transfer."""

STEP_COMM_S: Final = "wan.parallel.comm_s"
"""double, seconds. Step spans of multi-GPU runs: time in collectives during the step."""

STEP_COMPUTE_S: Final = "wan.parallel.compute_s"
"""double, seconds. Step spans of multi-GPU runs: the step's time outside collectives."""

PARALLEL_ULYSSES: Final = "wan.parallel.ulysses_degree"
"""int. Ulysses (all-to-all) sequence-parallel degree; on every span of a multi-GPU run."""

PARALLEL_RING: Final = "wan.parallel.ring_degree"
"""int. Ring-attention degree; on every span of a multi-GPU run."""

PARALLEL_WAIT_S: Final = "wan.parallel.wait_s"
"""double, seconds. Root span of each rank: time this rank's collectives spent above the
fastest rank's time for the same collective (waiting for a slower peer), summed over the run.
Computed after the pipeline call from every rank's durations (one exchange, outside the loop)."""

PARALLEL_STRAGGLERS: Final = "wan.parallel.stragglers"
"""int[]. Root span of rank 0: for each step, the rank whose compute was longest (the one the
others waited for)."""

TIMING_SOURCE: Final = "wan.timing.source"
"""string. ``cuda_event`` when the span's window comes from CUDA events (GPU time), ``host``
when from the host clock."""

ERROR_TYPE: Final = "error.type"
"""string. Standard OTel key: the exception class of a failed span (status ERROR)."""

# --------------------------------------------------------------------------------------------
# Span attributes: torch allocator figures (every span, when the device is a GPU)
# --------------------------------------------------------------------------------------------

MEMORY_ALLOCATED_START: Final = "wan.memory.allocated.start_bytes"
"""int, bytes. ``torch.cuda.memory_allocated()`` when the span starts."""

MEMORY_ALLOCATED_END: Final = "wan.memory.allocated.end_bytes"
"""int, bytes. ``torch.cuda.memory_allocated()`` when the span ends."""

MEMORY_ALLOCATED_PEAK: Final = "wan.memory.allocated.peak_bytes"
"""int, bytes. Peak ``memory_allocated`` within the span's window."""

MEMORY_RESERVED_END: Final = "wan.memory.reserved.end_bytes"
"""int, bytes. ``torch.cuda.memory_reserved()`` (caching allocator) when the span ends."""

MEMORY_RESERVED_PEAK: Final = "wan.memory.reserved.peak_bytes"
"""int, bytes. Peak ``memory_reserved`` within the span's window."""

# --------------------------------------------------------------------------------------------
# OTel metric instruments (pipeline). Prometheus names as the OTel Prometheus exporter and the
# Collector write them: dots to underscores, unit suffix, ``_total`` on counters.
# --------------------------------------------------------------------------------------------

METRIC_GENERATION_DURATION: Final = "wan.generation.duration"
"""Histogram, seconds. Whole-generation latency. Prometheus:
``wan_generation_duration_seconds``."""

METRIC_STAGE_DURATION: Final = "wan.stage.duration"
"""Histogram, seconds, label ``stage``. Stage latency. Prometheus:
``wan_stage_duration_seconds``."""

METRIC_STEP_DURATION: Final = "wan.denoise.step.duration"
"""Histogram, seconds. Denoising step latency (GPU time). Prometheus:
``wan_denoise_step_duration_seconds``."""

METRIC_COMM_DURATION: Final = "wan.parallel.comm.duration"
"""Histogram, seconds, labels ``rank`` and ``world_size``. Time in collectives per denoising
step, per rank. Prometheus: ``wan_parallel_comm_duration_seconds``."""

METRIC_WAIT_DURATION: Final = "wan.parallel.wait.duration"
"""Histogram, seconds, labels ``rank`` and ``world_size``. Per denoising step, the time this
rank's collectives waited for a slower peer. Prometheus: ``wan_parallel_wait_duration_seconds``."""

METRIC_GENERATIONS: Final = "wan.generations"
"""Counter, generations finished (label ``status``: ok or error). Prometheus:
``wan_generations_total``."""

METRIC_FRAMES: Final = "wan.frames.generated"
"""Counter, frames generated. Prometheus: ``wan_frames_generated_total``."""

METRIC_FAILURES: Final = "wan.generation.failures"
"""Counter, failed generations (label ``error_type``). Prometheus:
``wan_generation_failures_total``."""

METRIC_INSTRUMENTATION_ERRORS: Final = "wan.telemetry.instrumentation_errors"
"""Counter, errors inside wan-otel's own instrumentation code (logged once per site, never
raised into the model). Prometheus: ``wan_telemetry_instrumentation_errors_total``."""

METRIC_SPANS_DROPPED: Final = "wan.telemetry.spans_dropped"
"""Counter, spans the exporters could not deliver. Prometheus:
``wan_telemetry_spans_dropped_total``."""

METRIC_METRIC_POINTS_DROPPED: Final = "wan.telemetry.metric_points_dropped"
"""Counter, metric data points the OTLP exporter could not deliver. Prometheus:
``wan_telemetry_metric_points_dropped_total``."""

METRIC_GENERATIONS_ACTIVE: Final = "wan.generations.active"
"""UpDownCounter, generations running now (0 or 1 per GPU). Prometheus:
``wan_generations_active``. Alert rules join on it to know a GPU should be busy."""

METRIC_GENERATION_ENERGY: Final = "wan.generation.energy"
"""Histogram, joules, labels ``model``, ``resolution``, ``num_frames``, ``offload``,
``world_size`` (never a run id): GPU energy of one finished generation, every GPU of the run
summed, from NVML's energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since
the driver loaded) read on each rank's GPU at the generation's start and end, outside the
denoising loop. Not recorded where a GPU has no counter (before Volta) or the generation took
under 1 s (the counter moves about every 0.1 s). ``_sum / _count`` is the mean energy per video.
Prometheus: ``wan_generation_energy_joules``. OTel peer: ``hw.energy`` (a device's counter)."""

ENERGY_BUCKETS_J: Final = (
    100.0, 250.0, 500.0, 1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7,
)  # fmt: skip
"""Histogram bucket bounds (joules) of METRIC_GENERATION_ENERGY: from a tiny model's second of
GPU time to an eight-GPU 720p A14B video (a one-GPU H200 TI2V-5B video at 10 steps: 23 kJ)."""

PROMETHEUS_NAMES: Final = {
    METRIC_GENERATION_DURATION: "wan_generation_duration_seconds",
    METRIC_STAGE_DURATION: "wan_stage_duration_seconds",
    METRIC_STEP_DURATION: "wan_denoise_step_duration_seconds",
    METRIC_COMM_DURATION: "wan_parallel_comm_duration_seconds",
    METRIC_WAIT_DURATION: "wan_parallel_wait_duration_seconds",
    METRIC_GENERATIONS: "wan_generations_total",
    METRIC_FRAMES: "wan_frames_generated_total",
    METRIC_FAILURES: "wan_generation_failures_total",
    METRIC_SPANS_DROPPED: "wan_telemetry_spans_dropped_total",
    METRIC_METRIC_POINTS_DROPPED: "wan_telemetry_metric_points_dropped_total",
    METRIC_INSTRUMENTATION_ERRORS: "wan_telemetry_instrumentation_errors_total",
    METRIC_GENERATIONS_ACTIVE: "wan_generations_active",
    METRIC_GENERATION_ENERGY: "wan_generation_energy_joules",
}
"""OTel instrument name -> the Prometheus name the OTel Prometheus exporter (and the
Collector's) writes; histograms add ``_bucket``, ``_sum`` and ``_count``."""

DURATION_BUCKETS_S: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    45.0,
    60.0,
    90.0,
    120.0,
    180.0,
    300.0,
    450.0,
    600.0,
    900.0,
    1200.0,
    1800.0,
    2700.0,
    3600.0,
    5400.0,
    7200.0,
)
"""Histogram bucket bounds (seconds) for stage, step and generation durations: from a tiny
CPU step to a two-hour video job (a single-GPU TI2V-5B generation runs 500+ s)."""

LABEL_MODEL: Final = "model"
"""Metric label: model name (bounded)."""

LABEL_RESOLUTION: Final = "resolution"
"""Metric label: ``WIDTHxHEIGHT``."""

LABEL_FRAMES: Final = "num_frames"
"""Metric label: frames per video."""

LABEL_OFFLOAD: Final = "offload"
"""Metric label: offload mode."""

LABEL_STAGE: Final = "stage"
"""Metric label: the stage's ``Stage.metric_label`` (its span name without ``wan.``)."""

LABEL_STATUS: Final = "status"
"""Metric label: ``ok`` or ``error``."""

LABEL_ERROR_TYPE: Final = "error_type"
"""Metric label: exception class name of a failure."""

LABEL_WORLD_SIZE: Final = "world_size"
"""Metric label: GPUs (processes) of one generation; ``1`` for one GPU."""

LABEL_RANK: Final = "rank"
"""Metric label of the communication histograms: the process's rank. Bounded by the GPUs of
the job (at most 8 per node for Wan2.2's parallel modes), never a run id."""

# --------------------------------------------------------------------------------------------
# Prometheus metrics of the GPU exporter (sidecar). Labels GPU_LABELS on every GPU series.
# --------------------------------------------------------------------------------------------

LABEL_GPU: Final = "gpu"
"""Exporter label: NVML device index."""

LABEL_UUID: Final = "uuid"
"""Exporter label: GPU UUID (equals the span attribute ``wan.gpu.uuid``)."""

LABEL_MODEL_NAME: Final = "model_name"
"""Exporter label: GPU product name."""

LABEL_HOSTNAME: Final = "hostname"
"""Exporter label: node host name (equals the span attribute ``host.name``)."""

LABEL_SOURCE: Final = "source"
"""Exporter label on activity counters: ``gpm`` (SMs busy, Hopper+) or ``nvml_util`` (any
kernel running, older GPUs)."""

GPU_LABELS: Final = (LABEL_GPU, LABEL_UUID, LABEL_MODEL_NAME, LABEL_HOSTNAME)
"""Labels on every per-GPU series (plus ``pod`` and ``namespace`` from the downward API)."""

GPU_SM_ACTIVE: Final = "wan_gpu_sm_active_seconds_total"
"""Counter, seconds. Integral of SM activity (0..1) over time; ``rate()`` is the mean SM-active
ratio over any window. Source GPM SM utilization, or NVML utilization where GPM is absent.
OTel peer: ``hw.gpu.utilization``."""

GPU_SM_OCCUPANCY: Final = "wan_gpu_sm_occupancy_seconds_total"
"""Counter, seconds. Integral of SM occupancy (warps resident / max). GPM only."""

GPU_TENSOR_ACTIVE: Final = "wan_gpu_tensor_active_seconds_total"
"""Counter, seconds. Integral of tensor-pipe activity. GPM only."""

GPU_DRAM_ACTIVE: Final = "wan_gpu_dram_active_seconds_total"
"""Counter, seconds. Integral of DRAM bandwidth utilization. GPM only."""

GPU_MEMORY_USED: Final = "wan_gpu_memory_used_bytes"
"""Gauge, bytes. Device memory used. OTel peer: ``hw.gpu.memory.usage``."""

GPU_MEMORY_RESERVED: Final = "wan_gpu_memory_reserved_bytes"
"""Gauge, bytes. Device memory reserved by the driver."""

GPU_MEMORY_TOTAL: Final = "wan_gpu_memory_total_bytes"
"""Gauge, bytes. Device memory total. OTel peer: ``hw.gpu.memory.limit``."""

GPU_PROCESS_MEMORY: Final = "wan_gpu_process_memory_used_bytes"
"""Gauge, bytes, labels ``pid`` (and ``container``, ``pod`` where found). Per-process memory."""

GPU_POWER: Final = "wan_gpu_power_watts"
"""Gauge, watts. Power draw. OTel peer: ``hw.power``."""

GPU_ENERGY: Final = "wan_gpu_energy_joules_total"
"""Counter, joules. Energy since driver load. OTel peer: ``hw.energy``."""

GPU_TEMPERATURE: Final = "wan_gpu_temperature_celsius"
"""Gauge, degrees Celsius. GPU temperature."""

GPU_SM_CLOCK: Final = "wan_gpu_sm_clock_hertz"
"""Gauge, hertz. SM clock."""

GPU_MEMORY_CLOCK: Final = "wan_gpu_memory_clock_hertz"
"""Gauge, hertz. Memory clock."""

GPU_PCIE_RX: Final = "wan_gpu_pcie_received_bytes_total"
"""Counter, bytes. PCIe bytes received by the GPU (host to device: offload onloads).
OTel peer: ``hw.gpu.io``."""

GPU_PCIE_TX: Final = "wan_gpu_pcie_transmitted_bytes_total"
"""Counter, bytes. PCIe bytes sent by the GPU."""

GPU_CLOCK_EVENT: Final = "wan_gpu_clock_event_active"
"""Gauge, 0 or 1, label ``reason``. Clock event (throttle) reasons active."""

GPU_ECC_ERRORS: Final = "wan_gpu_ecc_errors_total"
"""Counter, label ``type`` (corrected or uncorrected). ECC errors, volatile."""

GPU_INFO: Final = "wan_gpu_info"
"""Gauge 1, labels ``driver_version``, ``cuda_version``. Metadata."""

EXPORTER_UP: Final = "wan_exporter_up"
"""Gauge 0 or 1. Whether NVML is initialised and sampling."""

EXPORTER_NVML_ERRORS: Final = "wan_exporter_nvml_errors_total"
"""Counter, label ``call``. NVML calls that failed."""

EXPORTER_SAMPLE_DURATION: Final = "wan_exporter_sample_duration_seconds"
"""Gauge, seconds. How long the last sample of all GPUs took."""

EXPORTER_SAMPLE_AGE: Final = "wan_exporter_sample_age_seconds"
"""Gauge, seconds. Age of the snapshot served at scrape time."""

LABEL_POD: Final = "pod"
"""Exporter label: Kubernetes pod name. On GPU series, the exporter's own pod (downward-API
env ``POD_NAME``); on per-process series, the process's pod where found."""

LABEL_NAMESPACE: Final = "namespace"
"""Exporter label: Kubernetes namespace (downward-API env ``POD_NAMESPACE``), like LABEL_POD."""

LABEL_PID: Final = "pid"
"""Exporter label on GPU_PROCESS_MEMORY: process id as NVML reports it (host PID namespace)."""

LABEL_CONTAINER: Final = "container"
"""Exporter label on GPU_PROCESS_MEMORY: container id from ``/proc/<pid>/cgroup``, or empty."""

LABEL_REASON: Final = "reason"
"""Exporter label on GPU_CLOCK_EVENT: clock event reason, e.g. ``sw_power_cap``."""

LABEL_ECC_TYPE: Final = "type"
"""Exporter label on GPU_ECC_ERRORS: ``corrected`` or ``uncorrected``."""

LABEL_CALL: Final = "call"
"""Exporter label on EXPORTER_NVML_ERRORS: the NVML function that failed, e.g.
``nvmlDeviceGetPowerUsage``."""

LABEL_DRIVER_VERSION: Final = "driver_version"
"""Exporter label on GPU_INFO: NVIDIA driver version."""

LABEL_CUDA_VERSION: Final = "cuda_version"
"""Exporter label on GPU_INFO: CUDA version the driver supports, e.g. ``13.0``."""

SOURCE_GPM: Final = "gpm"
"""Value of LABEL_SOURCE and SAMPLE_SOURCE: NVML GPU performance monitoring (Hopper+)."""

GPM_MIN_GAP_S: Final = 0.1
"""NVML: two GPM samples of a GPU must be more than this apart ("due to the internal sample
refresh rate"): the sampler's floor, and how the report knows a read that was skipped."""

SOURCE_NVML_UTIL: Final = "nvml_util"
"""Value of LABEL_SOURCE and SAMPLE_SOURCE: ``nvmlDeviceGetUtilizationRates().gpu``, a duty
cycle (any kernel running), where GPM is unsupported."""

EXPORTER_DEFAULT_PORT: Final = 9435
"""TCP port ``wan-otel exporter`` listens on by default (dcgm-exporter uses 9400)."""

# --------------------------------------------------------------------------------------------
# GPU sample records in the local run store (one JSON object a line in ``gpu_samples.jsonl``).
# Counters are cumulative from the sampler's start, like the Prometheus counters above.
# --------------------------------------------------------------------------------------------

SAMPLE_TIME: Final = "t_ns"
"""int, nanoseconds since the Unix epoch: when the sample was read."""

SAMPLE_GPU: Final = "gpu"
"""int. NVML device index."""

SAMPLE_UUID: Final = "uuid"
"""string. GPU UUID (joins to ``wan.gpu.uuid``)."""

SAMPLE_SOURCE: Final = "source"
"""string. ``gpm`` or ``nvml_util`` (see LABEL_SOURCE)."""

SAMPLE_SM_ACTIVE: Final = "sm_active_s"
"""double, seconds, cumulative: the store's twin of ``wan_gpu_sm_active_seconds_total``."""

SAMPLE_SM_OCCUPANCY: Final = "sm_occupancy_s"
"""double, seconds, cumulative: twin of ``wan_gpu_sm_occupancy_seconds_total`` (GPM only)."""

SAMPLE_TENSOR_ACTIVE: Final = "tensor_active_s"
"""double, seconds, cumulative: twin of ``wan_gpu_tensor_active_seconds_total`` (GPM only)."""

SAMPLE_DRAM_ACTIVE: Final = "dram_active_s"
"""double, seconds, cumulative: twin of ``wan_gpu_dram_active_seconds_total`` (GPM only)."""

SAMPLE_PCIE_RX: Final = "pcie_rx_bytes"
"""int, bytes, cumulative: twin of ``wan_gpu_pcie_received_bytes_total``."""

SAMPLE_PCIE_TX: Final = "pcie_tx_bytes"
"""int, bytes, cumulative: twin of ``wan_gpu_pcie_transmitted_bytes_total``."""

SAMPLE_MEMORY_RESERVED: Final = "memory_reserved_bytes"
"""int, bytes. Device memory reserved by the driver at sample time."""

SAMPLE_MEMORY_USED: Final = "memory_used_bytes"
"""int, bytes. Device memory used at sample time."""

SAMPLE_POWER: Final = "power_w"
"""double, watts. Power draw at sample time."""

SAMPLE_ENERGY: Final = "energy_j"
"""double, joules, cumulative energy."""


def prometheus_metric_names() -> set[str]:
    """Every Prometheus series name the contract defines: the exporter's metrics and the
    pipeline's and server's instruments (histograms with ``_bucket``, ``_sum``, ``_count``)."""
    names = {
        value
        for key, value in globals().items()
        if key.isupper() and isinstance(value, str) and value.startswith("wan_")
    }
    for base in (*PROMETHEUS_NAMES.values(), *SERVER_PROMETHEUS_NAMES.values()):
        names |= {base, f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


# --------------------------------------------------------------------------------------------
# Serving (``wan-otel serve``): the queue, the jobs and the HTTP API around the pipeline
# --------------------------------------------------------------------------------------------

SPAN_QUEUE_WAIT: Final = "wan.server.queue_wait"
"""The time a request waited in the server's queue: from its ``POST /v1/videos`` to the start
of its generation. A child of the run's root span, emitted when the run ends with its real
start and end, which precede the root's window (the root covers the generation only, so that
its duration, the report and the generation metrics are the same as ``wan-otel run``'s)."""

SERVER_RUN_KIND: Final = "wan.server.run_kind"
"""string, on root spans of ``wan-otel serve``: ``startup`` (the run that loads the model and
warms it up: initialization spans and one tiny generation) or ``request`` (one API job)."""

SERVER_RUN_KINDS: Final = ("startup", "request")
"""Values of SERVER_RUN_KIND."""

SERVER_STARTUP_RUN_ID: Final = "wan.server.startup_run_id"
"""string, on a request's root span and its link: the run id of the server's start-up run,
whose trace holds the model's initialization (the root span also links to that trace)."""

SERVER_QUEUE_POSITION: Final = "wan.server.queue.position"
"""int, on the queue-wait span: requests ahead of this one when it was queued (0: it was
next), counting the one running."""

HTTP_REQUEST_METHOD: Final = "http.request.method"
"""string. Standard OTel key: the HTTP method; a label of SERVER_REQUESTS."""

HTTP_ROUTE: Final = "http.route"
"""string. Standard OTel key: the matched route template (``/v1/videos/{id}``, never an id);
a label of SERVER_REQUESTS."""

HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
"""int. Standard OTel key: the response status; a label of SERVER_REQUESTS."""

HEADER_RUN_ID: Final = "X-Wan-Run-Id"
"""HTTP response header: the job's run id (its id in the API and its folder in the store)."""

HEADER_TRACE_ID: Final = "X-Trace-Id"
"""HTTP response header: the trace id (32 hex digits) of the job's run: the caller's trace
when the request carried a W3C ``traceparent``, else one the server started."""

METRIC_SERVER_QUEUE_WAIT: Final = "wan.server.queue.wait"
"""Histogram, seconds, label ``model``: time from a request's arrival to the start of its
generation (DURATION_BUCKETS_S). Prometheus: ``wan_server_queue_wait_seconds``."""

METRIC_SERVER_QUEUE_DEPTH: Final = "wan.server.queue.depth"
"""Gauge, requests waiting (not counting the one running), read at each scrape. Prometheus:
``wan_server_queue_depth``."""

METRIC_SERVER_QUEUE_CAPACITY: Final = "wan.server.queue.capacity"
"""Gauge, the most requests that may wait (``--max-queue``); a request beyond it gets 429.
Prometheus: ``wan_server_queue_capacity``."""

METRIC_SERVER_JOBS: Final = "wan.server.jobs"
"""Counter, jobs that reached a final status (label ``status``: completed, failed or
cancelled). Prometheus: ``wan_server_jobs_total``."""

METRIC_SERVER_REQUESTS: Final = "wan.server.requests"
"""Counter, HTTP requests answered (labels ``http_request_method``, ``http_route``,
``http_response_status_code``): 429s are rejections for a full queue, 503s while starting or
shutting down. Prometheus: ``wan_server_requests_total``."""

LABEL_JOB_STATUS: Final = "status"
"""Metric label of METRIC_SERVER_JOBS: ``completed``, ``failed`` or ``cancelled``."""

SERVER_PROMETHEUS_NAMES: Final = {
    METRIC_SERVER_QUEUE_WAIT: "wan_server_queue_wait_seconds",
    METRIC_SERVER_QUEUE_DEPTH: "wan_server_queue_depth",
    METRIC_SERVER_QUEUE_CAPACITY: "wan_server_queue_capacity",
    METRIC_SERVER_JOBS: "wan_server_jobs_total",
    METRIC_SERVER_REQUESTS: "wan_server_requests_total",
}
"""OTel instrument name -> Prometheus name, as PROMETHEUS_NAMES for the pipeline's."""

SERVER_DEFAULT_PORT: Final = 8000
"""TCP port ``wan-otel serve`` listens on by default (the Deployment's ``http`` port)."""
