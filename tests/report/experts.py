"""Synthetic two-expert runs (Wan2.2 A14B) written into a store, with known figures.

The layout is the pipeline's one-GPU layout (docs/pipeline.md): the root
``wan.pipeline.generate`` with its stages; initialization with one ``wan.component.initialize``
per component; steps carrying ``wan.denoise.expert`` and their timestep, each with two
transformer forwards; the loop carrying the boundary and the switch. The high-noise expert
(``transformer``) runs the steps whose timestep is at or above ``boundary_ratio`` x 1000, the
low-noise one (``transformer_2``) the others.

With ``offload="model"`` the weights move as diffusers' model offload moves them: all to the
host at the end of initialization; the text encoder onto the GPU in text encoding; in step 0
the text encoder off and the high-noise expert on; at the switch the high-noise expert off and
the low-noise one on; in VAE decode the low-noise expert off and the VAE on. With
``offload="none"`` every component is on the GPU from initialization on and nothing moves.

Each move takes a fixed time (``TO_HOST_MS``, ``TO_DEVICE_MS``) and changes the allocated
memory by the component's weights (``WEIGHTS``); a step's peak is its baseline (allocated
after its transfers) plus its expert's activation; VAE decode adds ``VAE_WORKING_GIB``. The GPU
is busy at ``sm[0]`` from the first high-noise step's start to the last one's end, at
``sm[1]`` over the low-noise steps, and at ``IDLE`` elsewhere, with samples at those edges, so
that each expert's SM % is exactly its fraction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.report.multirank import GIB, MS, T0, S, _payload
from wan_otel import semconv as sc
from wan_otel.store.otlp_json import encode_attributes
from wan_otel.store.run_store import RunStore
from wan_otel.store.summary import OK, RUNNING, RunSummary

TRACE_ID = "a14b0000a14b0000a14b0000a14b0000"
UUID = "GPU-a14b0000-7d0f-4a55-9c3e-000000000001"
VRAM = 140 * GIB
WEIGHTS = {
    "text_encoder": 10 * GIB,
    "transformer": 26 * GIB,
    "transformer_2": 26 * GIB,
    "vae": GIB // 4,
}
INIT_MS = {"text_encoder": 1000, "transformer": 3000, "transformer_2": 3000, "vae": 200}
INIT_TO_HOST_MS = {"text_encoder": 7000, "transformer": 16000, "transformer_2": 16000, "vae": 500}
TO_DEVICE_MS = {"text_encoder": 2000, "transformer": 5000, "transformer_2": 5000, "vae": 100}
TO_HOST_MS = {"text_encoder": 1000, "transformer": 8000, "transformer_2": 8000, "vae": 100}
TEXT_MS, PREPROCESS_MS, DECODE_MS, EXPORT_MS = 500, 100, 3000, 500
VAE_WORKING_GIB = 12
TEXT_WORKING_GIB = 0.5
SAMPLE_INTERVAL_NS = 500 * MS
IDLE = 0.05


@dataclass(frozen=True)
class ExpertPlan:
    """One synthetic two-expert run."""

    run_id: str = "a14b-model"
    offload: str = "model"
    timesteps: tuple[float, ...] = (999.0, 960.0, 900.0, 850.0, 700.0, 500.0, 300.0, 100.0)
    compute_ms: tuple[int, ...] = (2000, 1500, 1500, 1600, 1500, 1500, 1500, 1500)
    """Each step's time outside weight transfers."""
    boundary_ratio: float = 0.875
    guidance: tuple[float, float] = (4.0, 3.0)
    activation_gib: tuple[float, float] = (6.0, 5.0)
    sm: tuple[float, float] = (0.90, 0.70)
    samples: bool = True
    memory: bool = True
    """Allocator figures on the spans (a GPU run); False: a CPU run."""
    killed_after: int | None = None
    """Write only this many steps and no loop, decode or root span (SIGKILL)."""
    loop_switch_step: int | None = None
    """A switch step for the loop to record other than the true one."""

    def expert(self, step: int) -> str:
        high = self.timesteps[step] >= self.boundary_ratio * 1000
        return "transformer" if high else "transformer_2"

    @property
    def switch_step(self) -> int | None:
        return next(
            (s for s in range(len(self.timesteps)) if self.expert(s) == "transformer_2"), None
        )


class _Writer:
    """The run's spans on one timeline, with the allocated memory as the moves leave it."""

    def __init__(self, plan: ExpertPlan) -> None:
        self.plan = plan
        self.spans: list[dict[str, Any]] = []
        self.serial = iter(range(2, 1 << 20))
        self.t = T0
        self.allocated = 0
        self.windows: list[tuple[int, int, float]] = []
        """(start, end, busy fraction) of each run of one expert's steps."""
        self.peaks: list[int] = []
        """Every allocated peak written, in order."""

    def new_id(self) -> str:
        return f"{next(self.serial):016x}"

    def add(
        self,
        span_id: str,
        parent: str | None,
        name: str,
        start: int,
        end: int,
        attrs: dict[str, Any],
        memory: tuple[int, int, int] | None = None,
    ) -> str:
        attributes = {sc.RUN_ID: self.plan.run_id, **attrs}
        if memory is not None and self.plan.memory:
            self.peaks.append(memory[2])
            attributes[sc.MEMORY_ALLOCATED_START] = memory[0]
            attributes[sc.MEMORY_ALLOCATED_END] = memory[1]
            attributes[sc.MEMORY_ALLOCATED_PEAK] = memory[2]
        span: dict[str, Any] = {
            "traceId": TRACE_ID,
            "spanId": span_id,
            "name": name,
            "kind": 1,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
            "attributes": encode_attributes(attributes),
            "status": {"code": 0},
        }
        if parent is not None:
            span["parentSpanId"] = parent
        self.spans.append(span)
        return span_id

    def move(self, parent: str, component: str, direction: str, ms: int) -> None:
        """One whole-component move, from now."""
        before = self.allocated
        self.allocated += WEIGHTS[component] * (1 if direction == "to_device" else -1)
        self.add(
            self.new_id(),
            parent,
            sc.SPAN_WEIGHT_TRANSFER,
            self.t,
            self.t + ms * MS,
            {
                sc.COMPONENT_NAME: component,
                sc.TRANSFER_DIRECTION: direction,
                sc.TRANSFER_BYTES: WEIGHTS[component],
            },
            (before, self.allocated, max(before, self.allocated)),
        )
        self.t += ms * MS


def _moves_in_step(plan: ExpertPlan, step: int) -> list[tuple[str, str]]:
    if plan.offload != "model":
        return []
    if step == 0:
        return [("text_encoder", "to_host"), (plan.expert(0), "to_device")]
    if step == plan.switch_step:
        return [("transformer", "to_host"), ("transformer_2", "to_device")]
    return []


def _step(w: _Writer, loop_id: str, step: int) -> None:
    plan = w.plan
    expert = plan.expert(step)
    which = 0 if expert == "transformer" else 1
    step_id, cond_id = w.new_id(), w.new_id()
    start, start_alloc = w.t, w.allocated
    moves = _moves_in_step(plan, step)
    for component, direction in moves:
        ms = TO_HOST_MS[component] if direction == "to_host" else TO_DEVICE_MS[component]
        w.move(cond_id, component, direction, ms)
    half = plan.compute_ms[step] * MS // 2
    forward = {sc.DENOISE_STEP: step, sc.COMPONENT_NAME: expert, sc.DENOISE_EXPERT: expert}
    w.add(cond_id, step_id, sc.SPAN_TRANSFORMER_FORWARD, start, w.t + half, forward)
    uncond = {**forward, sc.TRANSFORMER_BRANCH: "uncond"}
    w.add(w.new_id(), step_id, sc.SPAN_TRANSFORMER_FORWARD, w.t + half, w.t + 2 * half - MS, uncond)
    w.t += 2 * half
    peak = max(start_alloc, w.allocated + int(plan.activation_gib[which] * GIB))
    attrs = {
        sc.DENOISE_STEP: step,
        sc.DENOISE_TIMESTEP: plan.timesteps[step],
        sc.DENOISE_EXPERT: expert,
    }
    w.add(
        step_id, loop_id, sc.SPAN_DENOISE_STEP, start, w.t, attrs, (start_alloc, w.allocated, peak)
    )


def _initialize(w: _Writer, root_id: str) -> None:
    init_id, start = w.new_id(), w.t
    for component in ("text_encoder", "transformer", "transformer_2", "vae"):
        before = w.allocated
        w.allocated += WEIGHTS[component]
        w.add(
            w.new_id(),
            init_id,
            sc.SPAN_COMPONENT_INITIALIZE,
            w.t,
            w.t + INIT_MS[component] * MS,
            {sc.COMPONENT_NAME: component},
            (before, w.allocated, w.allocated),
        )
        w.t += INIT_MS[component] * MS
    loaded = w.allocated
    if w.plan.offload == "model":
        for component in ("text_encoder", "transformer", "transformer_2", "vae"):
            w.move(init_id, component, "to_host", INIT_TO_HOST_MS[component])
    w.add(init_id, root_id, sc.SPAN_INITIALIZE, start, w.t, {}, (0, w.allocated, loaded))


def _prelude(w: _Writer, root_id: str) -> None:
    text_id, start, before = w.new_id(), w.t, w.allocated
    if w.plan.offload == "model":
        w.move(text_id, "text_encoder", "to_device", TO_DEVICE_MS["text_encoder"])
    peak = w.allocated + int(TEXT_WORKING_GIB * GIB)
    w.t += TEXT_MS * MS
    attrs = {sc.COMPONENT_NAME: "text_encoder"}
    w.add(text_id, root_id, sc.SPAN_TEXT_ENCODE, start, w.t, attrs, (before, w.allocated, peak))
    memory = (w.allocated, w.allocated, w.allocated)
    w.add(w.new_id(), root_id, sc.SPAN_PREPROCESS, w.t, w.t + PREPROCESS_MS * MS, {}, memory)
    w.t += PREPROCESS_MS * MS


def _loop(w: _Writer, root_id: str) -> None:
    plan = w.plan
    loop_id, start, before, written = w.new_id(), w.t, w.allocated, len(w.peaks)
    steps = len(plan.timesteps) if plan.killed_after is None else plan.killed_after
    edges = []
    for step in range(steps):
        step_start = w.t
        _step(w, loop_id, step)
        edges.append((step_start, w.t, plan.sm[0 if plan.expert(step) == "transformer" else 1]))
    # One busy window per run of one expert's steps.
    for lo, hi, busy in edges:
        if w.windows and w.windows[-1][2] == busy and w.windows[-1][1] == lo:
            w.windows[-1] = (w.windows[-1][0], hi, busy)
        else:
            w.windows.append((lo, hi, busy))
    attrs: dict[str, Any] = {
        sc.DENOISE_NUM_STEPS: steps,
        sc.DENOISE_BOUNDARY_TIMESTEP: plan.boundary_ratio * 1000,
    }
    switch = plan.loop_switch_step if plan.loop_switch_step is not None else plan.switch_step
    if switch is not None:
        attrs[sc.DENOISE_SWITCH_STEP] = switch
        attrs[sc.DENOISE_SWITCH_TIMESTEP] = plan.timesteps[switch]
    if plan.killed_after is None:
        peak = max(w.peaks[written:], default=before)
        w.add(loop_id, root_id, sc.SPAN_DENOISE, start, w.t, attrs, (before, w.allocated, peak))


def _finish(w: _Writer, root_id: str) -> None:
    decode_id, start, before = w.new_id(), w.t, w.allocated
    if w.plan.offload == "model":
        w.move(decode_id, "transformer_2", "to_host", TO_HOST_MS["transformer_2"])
        w.move(decode_id, "vae", "to_device", TO_DEVICE_MS["vae"])
    peak = max(before, w.allocated + VAE_WORKING_GIB * GIB)
    w.t += DECODE_MS * MS
    attrs = {sc.COMPONENT_NAME: "vae"}
    w.add(decode_id, root_id, sc.SPAN_VAE_DECODE, start, w.t, attrs, (before, w.allocated, peak))
    memory = (w.allocated, w.allocated, w.allocated)
    w.add(w.new_id(), root_id, sc.SPAN_EXPORT, w.t, w.t + EXPORT_MS * MS, {}, memory)
    w.t += EXPORT_MS * MS


def root_attributes(plan: ExpertPlan) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.MODEL_NAME: "Wan2.2-T2V-A14B",
        sc.MODEL_TASK: "t2v",
        sc.MODEL_SOURCE: "t2v-a14b-random",
        sc.MODEL_ARCHITECTURE: "DiT",
        sc.MODEL_BOUNDARY_RATIO: plan.boundary_ratio,
        sc.REQUEST_WIDTH: 1280,
        sc.REQUEST_HEIGHT: 720,
        sc.REQUEST_NUM_FRAMES: 81,
        sc.REQUEST_FPS: 16,
        sc.REQUEST_NUM_STEPS: len(plan.timesteps),
        sc.REQUEST_GUIDANCE: plan.guidance[0],
        sc.REQUEST_GUIDANCE_2: plan.guidance[1],
        sc.OFFLOAD_MODE: plan.offload,
        sc.DTYPE_TRANSFORMER: "bfloat16",
        sc.DEVICE: "cuda:0" if plan.memory else "cpu",
    }
    if plan.memory:
        attrs.update(
            {
                sc.GPU_NAME: "NVIDIA H200",
                sc.GPU_UUID: UUID,
                sc.GPU_MEMORY_CAPACITY: VRAM,
                sc.HOST_NAME: "node-a",
            }
        )
    attrs.update({sc.weight_bytes_key(c): b for c, b in WEIGHTS.items()})
    return attrs


def _samples(w: _Writer, end: int) -> str:
    """Busy at each window's fraction inside it and ``IDLE`` elsewhere, sampled every
    interval and at every window edge."""
    first = T0 - SAMPLE_INTERVAL_NS
    edges = {t for lo, hi, _ in w.windows for t in (lo, hi)}
    times = set(range(first, end + 2 * SAMPLE_INTERVAL_NS, SAMPLE_INTERVAL_NS)) | edges
    lines = []
    for t in sorted(times):
        busy = IDLE * (t - first)
        for lo, hi, fraction in w.windows:
            busy += (fraction - IDLE) * max(0, min(t, hi) - lo)
        sample = {
            sc.SAMPLE_TIME: t,
            sc.SAMPLE_GPU: 0,
            sc.SAMPLE_UUID: UUID,
            sc.SAMPLE_SOURCE: sc.SOURCE_GPM,
            sc.SAMPLE_SM_ACTIVE: round(busy / S, 9),
        }
        lines.append(json.dumps(sample, separators=(",", ":")))
    return "\n".join(lines) + "\n"


def write_expert_run(store: Path, plan: ExpertPlan) -> Path:
    """Write the run of ``plan`` into ``store``; returns its folder."""
    folder = RunStore(store).ensure_run(plan.run_id)
    w = _Writer(plan)
    root_id = f"{1:016x}"
    _initialize(w, root_id)
    _prelude(w, root_id)
    _loop(w, root_id)
    killed = plan.killed_after is not None
    if not killed:
        _finish(w, root_id)
        memory = (0, w.allocated, max(w.peaks, default=0))
        w.add(root_id, None, sc.SPAN_GENERATE, T0, w.t, root_attributes(plan), memory)
    folder.spans().write_text(_payload(w.spans), encoding="utf-8")
    if plan.samples and plan.memory:
        folder.samples().write_text(_samples(w, w.t), encoding="utf-8")
    summary = RunSummary(
        run_id=plan.run_id,
        status=RUNNING if killed else OK,
        start_ns=T0,
        total_s=None if killed else (w.t - T0) / S,
        attributes=root_attributes(plan),
    )
    folder.write_summary(summary)
    return folder.path
