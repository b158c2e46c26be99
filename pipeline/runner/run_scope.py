"""One run's lifecycle, written once for every entry point (``wan-otel run``, a server's
start-up and each of its jobs): its folder in the store, its GPU samples, its generation, and
its end with or without an error.

    with run_scope(plan, stream, metrics=..., flush=...) as generation:
        ...  # build, call the instrumented pipeline under use_generation, export

On the way out, whatever happened: the generation finishes (its remaining spans end, with the
error if there was one), the store is flushed, the GPU sampler stops, and the error goes on up.
A run stopped by a signal (``interrupt.RunInterrupted``) says on its root which signal, in
which stage and at which step.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.attributes import system_attributes
from wan_otel.pipeline.instrumentation.generation import AttributeValue, Generation, Listener
from wan_otel.pipeline.instrumentation.generation_metrics import PipelineMetrics
from wan_otel.pipeline.instrumentation.guard import Guard
from wan_otel.pipeline.instrumentation.memory import memory_for
from wan_otel.pipeline.instrumentation.span_stream import SpanStream
from wan_otel.pipeline.instrumentation.timing import timeline_for
from wan_otel.pipeline.runner.interrupt import RunInterrupted, SignalGuard
from wan_otel.store.run_store import RunFolder, RunStore
from wan_otel.store.summary import started_summary

_log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 0.1


@dataclass(frozen=True)
class RunPlan:
    """Where a run goes and what only its application knows about it."""

    run_id: str
    device: torch.device
    store: RunStore | None
    create: bool = True
    """False: the run's folder exists already (a served job's, made when it was queued)."""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    """Root attributes only the application knows (fps of the export, a server's run kind);
    the instrumentation writes the request and the model's."""
    request: Mapping[str, Any] = field(default_factory=dict)
    """What the run was asked for, in root-attribute keys: the summary written at its start
    (a run killed before its root span ends is still described)."""
    writes_summary: bool = True
    """False for the processes of a run that are not its first (other ranks)."""
    writer: str | None = None
    """This process's name on its files in the run folder (``rank1``...); None: the run's."""
    records_samples: bool = True
    """Whether this process samples the GPUs (one process a node in a multi-GPU run)."""
    root_name: str = semconv.SPAN_GENERATE
    """``wan.parallel.rank`` for the ranks of a multi-GPU run after the first."""


@contextlib.contextmanager
def run_scope(
    plan: RunPlan,
    stream: SpanStream,
    *,
    guard: Guard,
    flush: Callable[[], None],
    metrics: PipelineMetrics | None = None,
    listeners: Sequence[Listener] = (),
    signals: SignalGuard | None = None,
) -> Iterator[Generation]:
    """The run's generation, open for the block (see the module docstring)."""
    folder = _folder(plan)
    samples = folder.samples(plan.writer) if folder is not None and plan.records_samples else None
    sampling = GpuSampling()
    with gpu_samples(plan.device, samples, sampling):
        if metrics is not None:
            metrics.started()
        generation = Generation(
            timeline_for(plan.device),
            run_id=plan.run_id,
            memory=memory_for(plan.device),
            stream=stream,
            finishers=[metrics] if metrics is not None else [],
            nvtx=plan.device.type == "cuda",
            listeners=listeners,
            guard=guard,
            attributes={**system_attributes(plan.device), **plan.attributes},
            root_name=plan.root_name,
        )
        if folder is not None and plan.writes_summary:
            attributes = {**generation.root.attributes, **plan.request}
            folder.write_summary(started_summary(plan.run_id, time.time_ns(), attributes))
        error: BaseException | None = None
        if signals is not None:
            signals.arm()
        try:
            yield generation
        except BaseException as exc:
            error = exc
            if signals is not None:
                signals.disarm()
            if isinstance(exc, RunInterrupted):
                generation.root.attributes.update(_interrupt_attributes(generation, exc))
            raise
        finally:
            if signals is not None:
                signals.disarm()
            generation.finish(error)
            if metrics is not None:
                guard.call(_record_energy, metrics, generation, sampling)
            flush()


def _folder(plan: RunPlan) -> RunFolder | None:
    if plan.store is None:
        return None
    if not plan.create:
        return plan.store.join_run(plan.run_id)
    return plan.store.create_run(plan.run_id)


def _interrupt_attributes(generation: Generation, exc: RunInterrupted) -> dict[str, Any]:
    """Which signal, and the stage and step it stopped: the records it failed, or left
    without an end (it came inside our own bookkeeping; ``finish`` fails them too)."""
    attrs: dict[str, Any] = {semconv.RUN_INTERRUPT_SIGNAL: exc.signal_name}
    failed = [r for r in generation.records if r.error_type == type(exc).__name__ or r.end is None]
    stages = [r for r in failed if r.parent is generation.root]
    steps = [r for r in failed if r.name == semconv.SPAN_DENOISE_STEP]
    if stages:
        attrs[semconv.RUN_INTERRUPT_STAGE] = stages[-1].name
    step: object = None
    if steps:
        step = steps[-1].attributes.get(semconv.DENOISE_STEP)
    elif stages and stages[-1].name == semconv.SPAN_DENOISE:
        # Between two steps (the callback, the loop's own work): the step it kept from
        # starting, the one after the last that ran.
        ran = [
            r.attributes.get(semconv.DENOISE_STEP)
            for r in stages[-1].children
            if r.name == semconv.SPAN_DENOISE_STEP
        ]
        step = max((i for i in ran if isinstance(i, int)), default=-1) + 1
        total = generation.root.attributes.get(semconv.REQUEST_NUM_STEPS)
        if isinstance(total, int) and step >= total:  # after the last step: none kept
            step = None
    if isinstance(step, int):
        attrs[semconv.RUN_INTERRUPT_STEP] = step
    return attrs


@dataclass
class GpuSampling:
    """The in-process sampler of a run, once started (None on a CPU or without NVML)."""

    recorder: Any = None

    def energy_j(self, uuid: object) -> float | None:
        if self.recorder is None or not isinstance(uuid, str):
            return None
        used: float | None = self.recorder.energy_used_j(uuid)
        return used


MIN_ENERGY_WINDOW_S = 1.0
"""Shorter generations record no energy: the counter updates about every 0.1 s."""


def _record_energy(metrics: PipelineMetrics, generation: Generation, sampling: GpuSampling) -> None:
    """The generation's GPU energy into the energy histogram (this process's GPU)."""
    outcome = generation.outcome
    energy = sampling.energy_j(generation.root.attributes.get(semconv.GPU_UUID))
    if outcome is None or energy is None or outcome.duration_s < MIN_ENERGY_WINDOW_S:
        return
    metrics.energy(energy, generation.root)


@contextlib.contextmanager
def gpu_samples(
    device: torch.device, path: Path | None, sampling: GpuSampling | None = None
) -> Iterator[None]:
    """The in-process GPU sampler writing ``path``, on a GPU; any failure is one warning.
    ``sampling`` keeps the recorder for what it measured (the run's energy)."""
    if device.type != "cuda" or path is None:
        yield
        return
    recorder = None
    try:
        from wan_otel.exporter.recorder import GpuSampleRecorder

        recorder = GpuSampleRecorder(path, interval_s=SAMPLE_INTERVAL_S)
        if not recorder.start():
            recorder = None
        elif sampling is not None:
            sampling.recorder = recorder
    except Exception as exc:  # ImportError included: the exporter extra may be missing
        _log.warning("GPU samples will not be recorded: %s", exc)
        recorder = None
    try:
        yield
    finally:
        if recorder is not None:
            try:
                recorder.stop()
            except Exception as exc:
                _log.warning("GPU sampler did not stop cleanly: %s", exc)
