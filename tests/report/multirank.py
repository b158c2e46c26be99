"""Synthetic multi-GPU runs (and a one-GPU baseline) written into a store, with known figures.

The layout is the pipeline's (docs/telemetry.md): rank 0's root ``wan.pipeline.generate`` with
its stages; each other rank's ``wan.parallel.rank`` span under that root, in the same trace,
with its own stages; steps with ``wan.parallel.comm_s`` / ``compute_s``; under each of the two
transformer forwards of a step one ``wan.parallel.collective`` span per op (4 all-to-alls, 1
all-gather) with each collective's duration. Rank 0 writes ``spans.jsonl``, rank k
``spans.rank{k}.jsonl``; one sampler writes every GPU's samples.

The figures follow from a few numbers. In step ``s`` the straggler ``plan.stragglers[s]``
reaches each collective last: its collectives take the bare transfer time, every other rank's
take that plus its own ``plan.wait_us[rank]`` (waiting). A rank's compute is the base compute
plus what it did not wait (the collectives' count x (the step's largest wait - its own)), so
that every rank's step lasts as long: compute + communication. Step 0 adds a warm-up to every
rank's compute. Each GPU is busy at its ``plan.sm`` fraction from its first step to the end of
its VAE decode and idles at ``IDLE`` otherwise, sampled at the edges of that window, so that
its SM % over its denoising stage is exactly its fraction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from socket import gethostname
from typing import Any

from wan_otel import semconv as sc
from wan_otel.store.otlp_json import STATUS_ERROR, encode_attributes
from wan_otel.store.run_store import RunStore
from wan_otel.store.summary import ERROR, INTERRUPTED, OK, RUNNING, RunSummary

US = 1_000
MS = 1_000_000
S = 1_000_000_000
GIB = 1 << 30
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
TRACE_ID = "7a11e40e2e2e4c1c8d3b7f5e9a0c1d2e"
A2A_PER_FORWARD = 4
FORWARDS = 2
COLLECTIVES_PER_STEP = FORWARDS * (A2A_PER_FORWARD + 1)
SAMPLE_INTERVAL_NS = 100 * MS
IDLE = 0.05
"""Busy fraction of every GPU outside its denoising and VAE decode."""
ERROR_MESSAGE = "RuntimeError: CUDA error: an illegal memory access was encountered"
PEER_ERROR = "RuntimeError: [gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer"
MODEL: dict[str, Any] = {
    sc.MODEL_NAME: "Wan2.2-TI2V-5B",
    sc.MODEL_TASK: "ti2v",
    sc.MODEL_SOURCE: "ti2v-5b-random",
    sc.MODEL_ARCHITECTURE: "DiT",
    sc.REQUEST_WIDTH: 1280,
    sc.REQUEST_HEIGHT: 704,
    sc.REQUEST_NUM_FRAMES: 121,
    sc.REQUEST_NUM_STEPS: 4,
    sc.REQUEST_GUIDANCE: 5.0,
    sc.OFFLOAD_MODE: "none",
    sc.DTYPE_TRANSFORMER: "bfloat16",
}


@dataclass(frozen=True)
class Plan:
    """One synthetic run: its ranks, steps, stragglers and how it ends."""

    run_id: str = "parallel-2"
    world: int = 2
    stragglers: tuple[int, ...] = (1, 1, 1, 0)
    """The straggler of each step; their count is the step count."""
    wait_us: tuple[int, ...] = (1000, 1000)
    """Per rank: how much longer each of its collectives takes when it is not the straggler."""
    sm: tuple[float, ...] = (0.92, 0.95)
    """Per rank: its GPU's constant busy fraction."""
    base_compute_ns: int = 500 * MS
    warmup_ns: int = 200 * MS
    a2a_ns: int = 4 * MS
    gather_ns: int = 2 * MS
    a2a_bytes: int = 64 << 20
    reported_wait_s: dict[int, float] = field(default_factory=dict)
    """A rank's ``wan.parallel.wait_s`` other than the true one (to disagree with the report)."""
    fail: str | None = None
    """None; ``raise`` (``fail_rank`` raises in step ``fail_step``, the others get SIGTERM);
    ``kill`` (``fail_rank`` is SIGKILLed there: no rank span, no loop span)."""
    fail_rank: int = 1
    fail_step: int = 2
    gpu_names: dict[int, str] = field(default_factory=dict)
    peers_raise: bool = False
    """With ``fail``: the other ranks' next all-to-all raises (``PEER_ERROR``) instead of
    torchrun's SIGTERM stopping them."""
    dead_pid: int | None = None
    """The pid ``run.json`` names when rank 0 was killed (a process that is gone)."""
    two_experts: bool = False
    """A two-expert model (Wan2.2 A14B): the first half of the steps run the high-noise
    expert, the rest the low-noise one, on every rank."""

    def expert(self, step: int) -> str:
        return "transformer" if step < self.steps // 2 else "transformer_2"

    @property
    def steps(self) -> int:
        return len(self.stragglers)

    def extra_ns(self, rank: int, step: int) -> int:
        return 0 if self.stragglers[step] == rank else self.wait_us[rank] * US

    def compute_ns(self, rank: int, step: int) -> int:
        top = max(self.extra_ns(r, step) for r in range(self.world))
        warm = self.warmup_ns if step == 0 else 0
        extra = COLLECTIVES_PER_STEP * (top - self.extra_ns(rank, step))
        return self.base_compute_ns + warm + extra

    def comm_ns(self, rank: int, step: int) -> int:
        return FORWARDS * (
            A2A_PER_FORWARD * (self.a2a_ns + self.extra_ns(rank, step))
            + self.gather_ns
            + self.extra_ns(rank, step)
        )

    def wait_ns(self, rank: int, step: int) -> int:
        """The true wait: this rank's collectives above the fastest rank's (the straggler's)."""
        return COLLECTIVES_PER_STEP * self.extra_ns(rank, step)

    def uuid(self, rank: int) -> str:
        return f"GPU-{0xA0 + rank:08x}-7d0f-4a55-9c3e-{rank:012x}"

    def steps_written(self, rank: int) -> int:
        return self.steps if self.fail is None else self.fail_step


class _Spans:
    """Spans of one rank, as OTLP JSON objects."""

    def __init__(self, plan: Plan, rank: int, common: dict[str, Any]) -> None:
        self.plan, self.rank, self.common = plan, rank, common
        self.spans: list[dict[str, Any]] = []

    def add(
        self,
        span_id: str,
        parent: str | None,
        name: str,
        start: int,
        end: int,
        attrs: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> str:
        status: dict[str, Any] = {"code": 0}
        if error is not None:
            status = {"code": STATUS_ERROR, "message": error}
        span: dict[str, Any] = {
            "traceId": TRACE_ID,
            "spanId": span_id,
            "name": name,
            "kind": 1,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
            "attributes": encode_attributes({**self.common, **(attrs or {})}),
            "status": status,
        }
        if parent is not None:
            span["parentSpanId"] = parent
        self.spans.append(span)
        return span_id


def _id(rank: int, serial: int) -> str:
    return f"{rank + 1:04x}{serial:012x}"


def _system(plan: Plan, rank: int) -> dict[str, Any]:
    return {
        sc.DEVICE: f"cuda:{rank}",
        sc.GPU_NAME: plan.gpu_names.get(rank, "NVIDIA H200"),
        sc.GPU_UUID: plan.uuid(rank),
        sc.GPU_MEMORY_CAPACITY: 140 * GIB,
        sc.HOST_NAME: "node-a",
    }


def _rank_spans(plan: Plan, rank: int, root_id: str) -> tuple[list[dict[str, Any]], int]:
    """One rank's spans (its rank span or root last) and the end of its run."""
    common = {
        sc.RUN_ID: plan.run_id,
        sc.RANK: rank,
        sc.WORLD_SIZE: plan.world,
        sc.PARALLEL_ULYSSES: plan.world,
        sc.PARALLEL_RING: 1,
    }
    out = _Spans(plan, rank, common)
    serial = iter(range(2, 1 << 20))
    own = root_id if rank == 0 else _id(rank, 1)
    start = T0 + rank * MS
    t = start
    for name, length in (
        (sc.SPAN_INITIALIZE, 1 * S),
        (sc.SPAN_TEXT_ENCODE, 200 * MS),
        (sc.SPAN_PREPROCESS, 50 * MS),
    ):
        out.add(_id(rank, next(serial)), own, name, t, t + length)
        t += length
    loop_id, loop_start = _id(rank, next(serial)), t
    failing = plan.fail is not None and rank == plan.fail_rank
    for step in range(plan.steps_written(rank)):
        t = _step(out, plan, rank, step, loop_id, t, serial)
    memory = {
        sc.MEMORY_ALLOCATED_START: 18 * GIB,
        sc.MEMORY_ALLOCATED_END: 18 * GIB,
        sc.MEMORY_ALLOCATED_PEAK: (20 + rank) * GIB,
    }
    if plan.fail is None:
        t += 16 * MS
        out.add(loop_id, own, sc.SPAN_DENOISE, loop_start, t, {sc.DENOISE_NUM_STEPS: plan.steps})
        out.add(_id(rank, next(serial)), own, sc.SPAN_VAE_DECODE, t, t + 500 * MS)
        t += 500 * MS
        if rank == 0:
            out.add(_id(rank, next(serial)), own, sc.SPAN_EXPORT, t, t + 100 * MS)
            t += 100 * MS
        t += 10 * MS
        end_attrs: dict[str, Any] = {}
        error = None
    elif failing and plan.fail == "kill":
        return out.spans, t  # SIGKILL: neither its loop nor its rank span ever ended
    else:
        error = ERROR_MESSAGE if failing else "RunInterrupted: stopped by SIGTERM"
        if plan.peers_raise and not failing:
            error = PEER_ERROR
            t = _broken_step(out, plan, rank, loop_id, t, serial)
        t += 5 * MS
        out.add(loop_id, own, sc.SPAN_DENOISE, loop_start, t, error=error)
        t += 1 * MS
        end_attrs = {}
        if not failing and not plan.peers_raise:
            end_attrs = {
                sc.RUN_INTERRUPT_SIGNAL: "SIGTERM",
                sc.RUN_INTERRUPT_STAGE: sc.SPAN_DENOISE,
                sc.RUN_INTERRUPT_STEP: plan.fail_step,
            }
        end_attrs[sc.ERROR_TYPE] = error.split(":")[0]
    end_attrs.update(_system(plan, rank))
    end_attrs.update(memory)
    end_attrs.update(_parallel_figures(plan, rank))
    if rank == 0:
        end_attrs.update(MODEL)
        if plan.two_experts:
            end_attrs[sc.MODEL_BOUNDARY_RATIO] = 0.875
        out.add(root_id, None, sc.SPAN_GENERATE, T0, t, end_attrs, error)
    else:
        out.add(own, root_id, sc.SPAN_RANK, start, t, end_attrs, error)
    return out.spans, t


def _broken_step(out: _Spans, plan: Plan, rank: int, loop_id: str, t: int, serial: Any) -> int:
    """Step ``fail_step`` of a peer of the failed rank: its first all-to-all raises."""
    step_id, forward_id = _id(rank, next(serial)), _id(rank, next(serial))
    end = t + 300 * MS
    attrs = {sc.DENOISE_STEP: plan.fail_step, sc.ERROR_TYPE: "RuntimeError"}
    collective = {**attrs, sc.COLLECTIVE_OP: "all_to_all"}
    out.add(
        _id(rank, next(serial)), forward_id, sc.SPAN_COLLECTIVE, t + MS, end, collective, PEER_ERROR
    )
    out.add(forward_id, step_id, sc.SPAN_TRANSFORMER_FORWARD, t, end, attrs, PEER_ERROR)
    out.add(step_id, loop_id, sc.SPAN_DENOISE_STEP, t, end, attrs, PEER_ERROR)
    return end


def _parallel_figures(plan: Plan, rank: int) -> dict[str, Any]:
    """What the pipeline puts on a rank's root after the exchange (nothing once one failed)."""
    if plan.fail is not None:
        return {}
    true = sum(plan.wait_ns(rank, s) for s in range(plan.steps)) / S
    attrs: dict[str, Any] = {sc.PARALLEL_WAIT_S: plan.reported_wait_s.get(rank, true)}
    if rank == 0:
        attrs[sc.PARALLEL_STRAGGLERS] = plan.stragglers
    return attrs


def _step(out: _Spans, plan: Plan, rank: int, step: int, loop_id: str, t: int, serial: Any) -> int:
    compute, comm = plan.compute_ns(rank, step), plan.comm_ns(rank, step)
    step_id = _id(rank, next(serial))
    forward_ns = (compute + comm - 1 * MS) // FORWARDS
    expert = {sc.DENOISE_EXPERT: plan.expert(step)} if plan.two_experts else {}
    extra = plan.extra_ns(rank, step)
    for forward in range(FORWARDS):
        f_start = t + forward * forward_ns
        f_id = out.add(
            _id(rank, next(serial)),
            step_id,
            sc.SPAN_TRANSFORMER_FORWARD,
            f_start,
            f_start + forward_ns,
            {sc.DENOISE_STEP: step, sc.TRANSFORMER_BRANCH: ("cond", "uncond")[forward], **expert},
        )
        c_start = f_start + 1 * MS
        for op, count, each in (
            ("all_to_all", A2A_PER_FORWARD, plan.a2a_ns + extra),
            ("all_gather", 1, plan.gather_ns + extra),
        ):
            out.add(
                _id(rank, next(serial)),
                f_id,
                sc.SPAN_COLLECTIVE,
                c_start,
                c_start + count * each,
                {
                    sc.DENOISE_STEP: step,
                    sc.COLLECTIVE_OP: op,
                    sc.COLLECTIVE_COUNT: count,
                    sc.COLLECTIVE_BYTES: count * plan.a2a_bytes,
                    sc.COLLECTIVE_DURATIONS: tuple([each / S] * count),
                },
            )
            c_start += count * each
    end = t + compute + comm
    out.add(
        step_id,
        loop_id,
        sc.SPAN_DENOISE_STEP,
        t,
        end,
        {
            **expert,
            sc.DENOISE_STEP: step,
            sc.STEP_COMM_S: comm / S,
            sc.STEP_COMPUTE_S: compute / S,
            sc.MEMORY_ALLOCATED_START: 18 * GIB,
            sc.MEMORY_ALLOCATED_END: 18 * GIB,
            sc.MEMORY_ALLOCATED_PEAK: (20 + rank) * GIB,
        },
    )
    return end


def _payload(spans: list[dict[str, Any]]) -> str:
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": encode_attributes({"service.name": "wan-otel"})},
                "scopeSpans": [{"scope": {"name": "wan_otel.pipeline"}, "spans": spans}],
            }
        ]
    }
    return json.dumps(body, separators=(",", ":")) + "\n"


def _busy_window(spans: list[dict[str, Any]]) -> tuple[int, int]:
    """From the first step's start to the end of the last step or VAE decode: when the rank's
    GPU works."""
    work = [s for s in spans if s["name"] in (sc.SPAN_DENOISE_STEP, sc.SPAN_VAE_DECODE)]
    loops = [s for s in spans if s["name"] == sc.SPAN_DENOISE]
    ends = [int(s["endTimeUnixNano"]) for s in work + loops]
    return min(int(s["startTimeUnixNano"]) for s in work), max(ends)


def _samples(plan: Plan, end: int, windows: list[tuple[int, int]]) -> str:
    """Every GPU idles at ``IDLE`` and works at its ``plan.sm`` fraction inside its window;
    samples every interval and at the window's edges, so that every mean over a window inside
    it is exactly the fraction."""
    lines = []
    first = T0 - SAMPLE_INTERVAL_NS
    for rank in range(plan.world):
        lo, hi = windows[rank]
        times = set(range(first, end + 2 * SAMPLE_INTERVAL_NS, SAMPLE_INTERVAL_NS)) | {lo, hi}
        for t in sorted(times):
            inside = max(0, min(t, hi) - lo)
            busy = (IDLE * (t - first) + (plan.sm[rank] - IDLE) * inside) / S
            sample = {
                sc.SAMPLE_TIME: t,
                sc.SAMPLE_GPU: rank,
                sc.SAMPLE_UUID: plan.uuid(rank),
                sc.SAMPLE_SOURCE: sc.SOURCE_GPM,
                sc.SAMPLE_SM_ACTIVE: round(busy, 9),
            }
            lines.append(json.dumps(sample, separators=(",", ":")))
    return "\n".join(lines) + "\n"


def write_parallel_run(store: Path, plan: Plan) -> Path:
    """Write the run of ``plan`` into ``store``; returns its folder."""
    folder = RunStore(store).ensure_run(plan.run_id)
    root_id = _id(0, 1)
    ends, windows = [], []
    for rank in range(plan.world):
        spans, end = _rank_spans(plan, rank, root_id)
        ends.append(end)
        windows.append(_busy_window(spans))
        writer = None if rank == 0 else f"rank{rank}"
        folder.spans(writer).write_text(_payload(spans), encoding="utf-8")
    folder.samples().write_text(_samples(plan, max(ends), windows), encoding="utf-8")
    status = OK if plan.fail is None else (ERROR if plan.fail_rank == 0 else INTERRUPTED)
    summary = RunSummary(
        run_id=plan.run_id,
        status=status,
        start_ns=T0,
        total_s=(ends[0] - T0) / S,
        world_size=plan.world,
        attributes={**MODEL, **_system(plan, 0), sc.WORLD_SIZE: plan.world},
    )
    if plan.fail == "kill" and plan.fail_rank == 0:
        # Rank 0 never recorded its end: run.json still says running, for a process now gone.
        summary = replace(
            summary, status=RUNNING, total_s=None, pid=plan.dead_pid, host=gethostname()
        )
    folder.write_summary(summary)
    return folder.path


BASELINE_STEPS_NS = (1_100 * MS, 1_000 * MS, 1_000 * MS, 1_000 * MS)
BASELINE_LOOP_NS = sum(BASELINE_STEPS_NS) + 16 * MS


def write_baseline_run(
    store: Path,
    run_id: str = "single",
    model: dict[str, Any] | None = None,
    steps_ns: tuple[int, ...] = BASELINE_STEPS_NS,
) -> Path:
    """A one-GPU run of the same generation (``model`` overrides its request attributes):
    steps of 1.1 s then 1.0 s, no rank attributes, no samples."""
    folder = RunStore(store).ensure_run(run_id)
    out = _Spans(Plan(), 0, {sc.RUN_ID: run_id})
    root_id = _id(0, 1)
    t = T0
    out.add(_id(0, 2), root_id, sc.SPAN_INITIALIZE, t, t + S)
    t += S
    loop_id, loop_start = _id(0, 3), t
    for step, length in enumerate(steps_ns):
        attrs = {sc.DENOISE_STEP: step}
        out.add(_id(0, 10 + step), loop_id, sc.SPAN_DENOISE_STEP, t, t + length, attrs)
        t += length
    t += 16 * MS
    out.add(loop_id, root_id, sc.SPAN_DENOISE, loop_start, t)
    attrs = {**MODEL, **(model or {}), **_system(Plan(), 0)}
    out.add(root_id, None, sc.SPAN_GENERATE, T0, t + 10 * MS, attrs)
    folder.spans().write_text(_payload(out.spans), encoding="utf-8")
    return folder.path
