"""The ``wan-otel run`` application: one generation, from building the pipeline to the mp4.

The run owns its generation's root span, so initialization (component by component), the
pipeline call (instrumented through ``use_generation``) and the export are one trace and one
run in the store. On a GPU the in-process GPU sampler writes the run's ``gpu_samples.jsonl``
beside its spans. A model error ends the spans with status ERROR and re-raises; the run is in
the store all the same.

The pieces are public so that a server can build the pipeline once (``initialize`` under its
start-up generation) and then run many generations on it (``new_generation`` + ``generate``),
each with the same instrumentation and the same span tree as ``wan-otel run``'s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wan_otel import __version__, semconv
from wan_otel.pipeline import presets
from wan_otel.pipeline.attributes import dtype_name, system_attributes
from wan_otel.pipeline.generation import Generation, Listener, Outcome
from wan_otel.pipeline.guard import Guard
from wan_otel.pipeline.instrument import TRACER_NAME, instrument, uninstrument, use_generation
from wan_otel.pipeline.memory import memory_for
from wan_otel.pipeline.metrics import PipelineMetrics
from wan_otel.pipeline.spans import SpanEmitter
from wan_otel.pipeline.telemetry import Telemetry
from wan_otel.pipeline.timing import timeline_for
from wan_otel.store.run_store import SAMPLES_FILE, check_run_id

_log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 0.1


@dataclass
class RunConfig:
    """Everything ``wan-otel run`` was asked for, defaults resolved."""

    source: str  # a preset name or presets.SOURCE_CHECKPOINT
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
    offload: str
    device: torch.device
    dtype: torch.dtype
    max_sequence_length: int
    model_dir: Path | None = None
    image: Path | None = None
    output: Path | None = None
    store: Path | None = None
    record_prompt: bool = False
    listeners: list[Listener] = field(default_factory=list)


def run(config: RunConfig, telemetry: Telemetry) -> Outcome:
    """One generation. Returns its outcome; re-raises a model error after recording it."""
    check_run_id(config.run_id)
    pipe: Any = None
    error: BaseException | None = None
    # The sampler starts first so that its samples cover the root span's whole window.
    with gpu_samples(config.device, config.store, config.run_id):
        generation = new_generation(config, telemetry, PipelineMetrics(telemetry.meter_provider))
        try:
            pipe = initialize(config, generation, telemetry)
            generate(pipe, config, generation)
        except BaseException as exc:
            error = exc
        finally:
            outcome = generation.finish(error)
            if pipe is not None:
                uninstrument(pipe)
            telemetry.flush_store()
    if error is not None:
        raise error
    return outcome


def new_generation(
    config: RunConfig,
    telemetry: Telemetry,
    metrics: PipelineMetrics,
    emitter: SpanEmitter | None = None,
) -> Generation:
    """The generation (root record) of one run, counted as active in ``metrics`` until it
    finishes. ``emitter``: how its spans are written (default: a root with no parent)."""
    if emitter is None:
        emitter = SpanEmitter(telemetry.tracer_provider.get_tracer(TRACER_NAME, __version__))
    metrics.started()
    return Generation(
        timeline_for(config.device),
        run_id=config.run_id,
        memory=memory_for(config.device),
        finishers=[emitter, metrics],
        nvtx=config.device.type == "cuda",
        listeners=config.listeners,
        guard=Guard(metrics.instrumentation_error),
        attributes=config_attributes(config),
    )


def generate(
    pipe: Any,
    config: RunConfig,
    generation: Generation,
    callback_on_step_end: Callable[..., Any] | None = None,
) -> None:
    """One call of an instrumented ``pipe`` recorded into ``generation``, then the export
    when ``config.output`` is set. ``callback_on_step_end`` goes to the pipeline as is (an
    application may stop a run between steps by raising from it)."""
    arguments = _call_arguments(config)
    if callback_on_step_end is not None:
        arguments["callback_on_step_end"] = callback_on_step_end
    with use_generation(pipe, generation):
        result = pipe(**arguments)
    if config.output is not None:
        _export(config, generation, result.frames)


def config_attributes(config: RunConfig) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        semconv.MODEL_SOURCE: config.source,
        semconv.MODEL_TASK: presets.TASK_TI2V,
        semconv.MODEL_ARCHITECTURE: "DiT",
        semconv.REQUEST_HEIGHT: config.height,
        semconv.REQUEST_WIDTH: config.width,
        semconv.REQUEST_NUM_FRAMES: config.frames,
        semconv.REQUEST_FPS: config.fps,
        semconv.REQUEST_NUM_STEPS: config.steps,
        semconv.REQUEST_GUIDANCE: float(config.guidance),
        semconv.REQUEST_HAS_IMAGE: config.image is not None,
        semconv.OFFLOAD_MODE: config.offload,
        semconv.DTYPE_TRANSFORMER: dtype_name(config.dtype),
        semconv.DTYPE_TEXT_ENCODER: dtype_name(config.dtype),
        semconv.DTYPE_VAE: dtype_name(torch.float32),
    }
    if config.seed is not None:
        attrs[semconv.REQUEST_SEED] = config.seed
    attrs.update(system_attributes(config.device))
    return attrs


def initialize(config: RunConfig, generation: Generation, telemetry: Telemetry) -> Any:
    """Build (component spans), instrument, place on the device, under ``initialize``."""
    with generation.span(semconv.SPAN_INITIALIZE):

        def scope(name: str) -> contextlib.AbstractContextManager[Any]:
            return generation.span(
                semconv.SPAN_COMPONENT_INITIALIZE, {semconv.COMPONENT_NAME: name}
            )

        has_image = config.image is not None
        if config.model_dir is not None:
            built = presets.load_checkpoint(
                config.model_dir, dtype=config.dtype, image=has_image, scope=scope
            )
        else:
            # Build where the weights will live; offload modes start from the device too and
            # move to the host when enabled (random init on a CPU is far slower).
            built = presets.build_preset(
                config.source, device=config.device, dtype=config.dtype, image=has_image,
                scope=scope,
            )  # fmt: skip
        generation.root.attributes[semconv.MODEL_NAME] = built.model_name
        generation.root.attributes[semconv.MODEL_TASK] = built.task
        pipe = built.pipe
        pipe.set_progress_bar_config(disable=True)  # ours shows stage and step
        instrument(
            pipe,
            telemetry.tracer_provider,
            telemetry.meter_provider,
            run_id=config.run_id,
            record_prompt=config.record_prompt,
            model_name=built.model_name,
            model_source=config.source,
            model_task=built.task,
            offload_mode=config.offload,
        )
        with use_generation(pipe, generation):
            presets.place(pipe, config.offload, config.device)
    return pipe


def _call_arguments(config: RunConfig) -> dict[str, Any]:
    arguments: dict[str, Any] = dict(
        prompt=config.prompt,
        negative_prompt=config.negative_prompt,
        height=config.height,
        width=config.width,
        num_frames=config.frames,
        num_inference_steps=config.steps,
        guidance_scale=config.guidance,
        max_sequence_length=config.max_sequence_length,
        # Decoded frames stay a tensor: the host copy happens in the export span.
        output_type="pt",
    )
    if config.seed is not None:
        arguments["generator"] = torch.Generator(device="cpu").manual_seed(config.seed)
    if config.image is not None:
        arguments["image"] = _load_image(config.image, config.width, config.height)
    return arguments


def _load_image(path: Path, width: int, height: int) -> Any:
    from diffusers.utils.loading_utils import load_image

    return load_image(str(path)).convert("RGB").resize((width, height))


def _export(config: RunConfig, generation: Generation, frames: Any) -> None:
    from diffusers.utils.export_utils import export_to_video

    assert config.output is not None
    with generation.span(semconv.SPAN_EXPORT, {semconv.OUTPUT_FORMAT: "mp4"}) as record:
        # output_type="pt": [batch, frames, channels, height, width] in 0..1 on the device;
        # the host copy is export work. export_to_video takes HxWxC float frames.
        array = frames[0].permute(0, 2, 3, 1).float().cpu().numpy()
        config.output.parent.mkdir(parents=True, exist_ok=True)
        export_to_video(list(array), str(config.output), fps=config.fps)
        record.attributes[semconv.OUTPUT_BYTES] = config.output.stat().st_size


@contextlib.contextmanager
def _gpu_samples(config: RunConfig) -> Iterator[None]:
    """``gpu_samples`` for one run's config."""
    with gpu_samples(config.device, config.store, config.run_id):
        yield


@contextlib.contextmanager
def gpu_samples(device: torch.device, store: Path | None, run_id: str) -> Iterator[None]:
    """The in-process GPU sampler, on a GPU with a store; any failure is one warning."""
    if device.type != "cuda" or store is None:
        yield
        return
    recorder = None
    try:
        from wan_otel.exporter.recorder import GpuSampleRecorder

        path = store / run_id / SAMPLES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        recorder = GpuSampleRecorder(path, interval_s=SAMPLE_INTERVAL_S)
        if not recorder.start():
            recorder = None
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
