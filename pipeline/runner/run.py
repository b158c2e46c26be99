"""The ``wan-otel run`` application: one generation, from building the pipeline to the mp4.

The run owns its generation's root span, so initialization (component by component), the
pipeline call (instrumented through ``use_generation``) and the export are one trace and one
run in the store; its lifecycle is the run scope's (``run_scope.py``). A model error ends the
spans with status ERROR and re-raises; the run is in the store all the same.

``initialize`` and ``generate`` are public so that a server can build the pipeline once and
then run many generations on it, each with the same span tree as ``wan-otel run``'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from wan_otel import __version__, semconv
from wan_otel.pipeline.instrumentation.attributes import system_attributes
from wan_otel.pipeline.instrumentation.generation import Generation, Listener, Outcome
from wan_otel.pipeline.instrumentation.generation_metrics import PipelineMetrics
from wan_otel.pipeline.instrumentation.guard import Guard
from wan_otel.pipeline.instrumentation.instrument import (
    TRACER_NAME,
    instrument,
    uninstrument,
    use_generation,
)
from wan_otel.pipeline.instrumentation.span_stream import SpanStream
from wan_otel.pipeline.runner import presets
from wan_otel.pipeline.runner.interrupt import SignalGuard
from wan_otel.pipeline.runner.model_flags import ModelChoice
from wan_otel.pipeline.runner.parallel import (
    WEIGHT_SEED,
    ParallelPlan,
    enable_context_parallel,
)
from wan_otel.pipeline.runner.rank_exchange import ParallelMetrics, exchange_figures, join
from wan_otel.pipeline.runner.run_scope import RunPlan, run_scope
from wan_otel.pipeline.runner.telemetry import Telemetry
from wan_otel.pipeline.runner.trace_ids import MintedTraceIds
from wan_otel.store.run_store import RunStore

ONE_GPU = ParallelPlan()


@dataclass
class RunRequest:
    """Everything ``wan-otel run`` was asked for, defaults resolved."""

    model: ModelChoice
    run_id: str
    prompt: str
    negative_prompt: str | None
    height: int
    width: int
    frames: int
    steps: int
    guidance: float
    fps: int
    seed: int | None
    max_sequence_length: int
    guidance_2: float | None = None
    """Two-expert models: the low-noise expert's guidance scale."""
    image: Path | None = None
    output: Path | None = None
    store: RunStore | None = None
    record_prompt: bool = False

    def summary_attributes(self) -> dict[str, Any]:
        """What the run was asked for, in root-attribute keys (its summary at the start)."""
        return {
            semconv.MODEL_NAME: presets.model_name(self.model.source, self.model.model_dir),
            semconv.MODEL_SOURCE: self.model.source,
            semconv.OFFLOAD_MODE: self.model.offload,
            semconv.REQUEST_WIDTH: self.width,
            semconv.REQUEST_HEIGHT: self.height,
            semconv.REQUEST_NUM_FRAMES: self.frames,
            semconv.REQUEST_NUM_STEPS: self.steps,
            semconv.REQUEST_GUIDANCE: float(self.guidance),
            **(
                {semconv.REQUEST_GUIDANCE_2: self.guidance_2} if self.guidance_2 is not None else {}
            ),
            semconv.REQUEST_FPS: self.fps,
        }


def run(
    request: RunRequest,
    telemetry: Telemetry,
    *,
    listeners: Sequence[Listener] = (),
    signals: SignalGuard | None = None,
    parallel: ParallelPlan = ONE_GPU,
    ids: MintedTraceIds | None = None,
) -> Outcome:
    """One generation (this rank's part of it in a multi-GPU run). Returns its outcome;
    re-raises a model error after recording it."""
    metrics = PipelineMetrics(telemetry.meter_provider)
    joined = join(request.run_id, request.store, parallel, ids)
    lead = parallel.rank == 0
    request = replace(request, run_id=joined.run_id, output=request.output if lead else None)
    plan = RunPlan(
        request.run_id,
        request.model.device,
        request.store,
        create=not parallel.parallel,  # made by rank 0 in join
        attributes={semconv.REQUEST_FPS: request.fps, **parallel.attributes()},
        request=request.summary_attributes(),
        writes_summary=lead,
        writer=parallel.writer,
        records_samples=parallel.records_gpu_samples,
        root_name=semconv.SPAN_GENERATE if lead else semconv.SPAN_RANK,
    )
    stream = SpanStream(
        telemetry.tracer_provider.get_tracer(TRACER_NAME, __version__),
        joined.context,
        attributes=_rank_attributes(parallel, request.model.device),
        root_scope=joined.root_scope,
    )
    pipe: Any = None
    generation: Generation | None = None
    try:
        with run_scope(
            plan,
            stream,
            guard=Guard(metrics.instrumentation_error),
            flush=telemetry.flush_store,
            metrics=metrics if lead else None,  # one count per generation, not per rank
            listeners=listeners if lead else (),
            signals=signals,
        ) as generation:
            pipe, _ = initialize(
                request.model,
                generation,
                telemetry,
                record_prompt=request.record_prompt,
                image=request.image is not None,
                parallel=parallel,
            )
            generate(pipe, request, generation)
            exchange_figures(generation, parallel, ParallelMetrics(telemetry.meter_provider))
    finally:
        if pipe is not None:
            uninstrument(pipe)
    assert generation is not None and generation.outcome is not None
    return generation.outcome


def _rank_attributes(parallel: ParallelPlan, device: torch.device) -> dict[str, Any]:
    """On every span of a rank: its place in the run and its GPU (a killed rank's spans are
    all that says which GPU it had)."""
    attributes: dict[str, Any] = dict(parallel.attributes())
    uuid = system_attributes(device).get(semconv.GPU_UUID) if parallel.parallel else None
    if uuid is not None:
        attributes[semconv.GPU_UUID] = uuid
    return attributes


def generate(
    pipe: Any,
    request: RunRequest,
    generation: Generation,
    callback_on_step_end: Callable[..., Any] | None = None,
) -> None:
    """One call of an instrumented ``pipe`` recorded into ``generation``, then the export
    when ``request.output`` is set. ``callback_on_step_end`` goes to the pipeline as is (an
    application may stop a run between steps by raising from it)."""
    arguments = _call_arguments(request)
    if callback_on_step_end is not None:
        arguments["callback_on_step_end"] = callback_on_step_end
    with use_generation(pipe, generation):
        result = pipe(**arguments)
    if request.output is not None:
        _export(request, generation, result.frames)


def initialize(
    model: ModelChoice,
    generation: Generation,
    telemetry: Telemetry,
    *,
    record_prompt: bool = False,
    image: bool = False,
    parallel: ParallelPlan = ONE_GPU,
) -> tuple[Any, presets.Built]:
    """Build (component spans), instrument, place on the device, under ``initialize``.
    ``image``: the image-to-video pipeline on the same components. ``parallel``: the same
    weights on every rank (one seed), then context parallelism on the transformers."""
    with generation.span(semconv.SPAN_INITIALIZE):

        def scope(name: str) -> contextlib.AbstractContextManager[Any]:
            return generation.span(
                semconv.SPAN_COMPONENT_INITIALIZE, {semconv.COMPONENT_NAME: name}
            )

        if model.model_dir is not None:
            built = presets.load_checkpoint(
                model.model_dir, dtype=model.dtype, image=image, scope=scope
            )
        else:
            if parallel.parallel:
                torch.manual_seed(WEIGHT_SEED)  # random weights: the same on every rank
            # Build where the weights will live; offload modes start from the device too and
            # move to the host when enabled (random init on a CPU is far slower).
            built = presets.build_preset(
                model.source, device=model.device, dtype=model.dtype, image=image, scope=scope
            )
        pipe = built.pipe
        pipe.set_progress_bar_config(disable=True)  # ours shows stage and step
        instrument(
            pipe,
            telemetry.tracer_provider,
            telemetry.meter_provider,
            run_id=generation.run_id,
            record_prompt=record_prompt,
            model_name=built.model_name,
            model_source=model.source,
            model_task=built.task,
            offload_mode=model.offload,
        )
        with use_generation(pipe, generation):
            presets.place(pipe, model.offload, model.device)
        transformers = [getattr(pipe, n, None) for n in ("transformer", "transformer_2")]
        enable_context_parallel([t for t in transformers if t is not None], parallel)
    return pipe, built


def _call_arguments(request: RunRequest) -> dict[str, Any]:
    arguments: dict[str, Any] = dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        height=request.height,
        width=request.width,
        num_frames=request.frames,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        max_sequence_length=request.max_sequence_length,
        # Decoded frames stay a tensor: the host copy happens in the export span.
        output_type="pt",
    )
    if request.guidance_2 is not None:
        arguments["guidance_scale_2"] = request.guidance_2
    if request.seed is not None:
        arguments["generator"] = torch.Generator(device="cpu").manual_seed(request.seed)
    if request.image is not None:
        arguments["image"] = _load_image(request.image, request.width, request.height)
    return arguments


def _load_image(path: Path, width: int, height: int) -> Any:
    from diffusers.utils.loading_utils import load_image

    return load_image(str(path)).convert("RGB").resize((width, height))


def _export(request: RunRequest, generation: Generation, frames: Any) -> None:
    from diffusers.utils.export_utils import export_to_video

    assert request.output is not None
    with generation.span(semconv.SPAN_EXPORT, {semconv.OUTPUT_FORMAT: "mp4"}) as record:
        # output_type="pt": [batch, frames, channels, height, width] in 0..1 on the device;
        # the host copy is export work. export_to_video takes HxWxC float frames.
        array = frames[0].permute(0, 2, 3, 1).float().cpu().numpy()
        request.output.parent.mkdir(parents=True, exist_ok=True)
        export_to_video(list(array), str(request.output), fps=request.fps)
        record.attributes[semconv.OUTPUT_BYTES] = request.output.stat().st_size
