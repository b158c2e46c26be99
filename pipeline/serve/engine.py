"""The loaded model: built once at start-up, warmed up, then one traced run per job.

Start-up is a run of its own (``<time>-<hex>-startup`` in the store, its own trace): the
``wan.pipeline.initialize`` span with one child per component, then one tiny generation with
an mp4 export, so that a broken ffmpeg or a kernel that fails shows up before the server says
it is ready. Each job then runs on the same instrumented pipeline through ``run.generate``:
the span tree of a job is the one ``wan-otel run`` writes (less initialization), its root
links to the start-up trace, and ``wan-otel report`` reads it the same way.

Image requests use a ``WanImageToVideoPipeline`` on the same components; the instrumentation
moves to whichever of the two pipelines the job needs (one generation runs at a time).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from wan_otel import __version__, semconv
from wan_otel.pipeline import presets
from wan_otel.pipeline.generation import Generation, Listener, new_run_id
from wan_otel.pipeline.guard import Guard
from wan_otel.pipeline.instrument import TRACER_NAME, instrument, uninstrument
from wan_otel.pipeline.memory import memory_for
from wan_otel.pipeline.metrics import PipelineMetrics
from wan_otel.pipeline.run import (
    RunConfig,
    config_attributes,
    generate,
    gpu_samples,
    initialize,
    new_generation,
)
from wan_otel.pipeline.serve.jobs import Job
from wan_otel.pipeline.serve.persist import JobFiles
from wan_otel.pipeline.serve.tracing import MintedTraceIds, queue_wait_hook, startup_link
from wan_otel.pipeline.serve.validation import Limits, limits_for
from wan_otel.pipeline.spans import SpanEmitter
from wan_otel.pipeline.telemetry import Telemetry
from wan_otel.pipeline.timing import timeline_for

WARMUP_PROMPT = "warm-up"
WARMUP_VIDEO = "warmup.mp4"


class GenerationStopped(Exception):
    """Raised between denoising steps to stop a job: cancelled by its client, or stopped by a
    server shutdown. The run's spans end with status ERROR and this as ``error.type``."""


@dataclass(frozen=True)
class EngineConfig:
    """The model a server loads and where its runs go."""

    source: str
    device: torch.device
    dtype: torch.dtype
    offload: str
    store: Path
    model_dir: Path | None = None
    record_prompt: bool = False
    max_sequence_length: int | None = None


class Engine:
    """Owns the pipeline(s); ``load`` once, then ``run`` one job at a time."""

    def __init__(
        self,
        config: EngineConfig,
        telemetry: Telemetry,
        metrics: PipelineMetrics,
        ids: MintedTraceIds,
    ) -> None:
        self.config = config
        self.telemetry = telemetry
        self.metrics = metrics
        self.ids = ids
        self.files = JobFiles(config.store)
        self.tracer = telemetry.tracer_provider.get_tracer(TRACER_NAME, __version__)
        self.defaults = presets.defaults_for(config.source)
        self.limits: Limits | None = None
        self.model_name = presets.MODEL_TI2V_5B
        self.task = presets.TASK_TI2V
        self.startup_run_id: str | None = None
        self._startup: SpanEmitter | None = None
        self._pipes: dict[bool, Any] = {}
        self._instrumented: Any = None

    # -- start-up -----------------------------------------------------------------------------

    def load(self) -> None:
        """Build, instrument and place the model, then one tiny generation; one run."""
        run_id = f"{new_run_id()}-startup"
        config = self._run_config(run_id)
        emitter = SpanEmitter(self.tracer)
        attributes = config_attributes(config)
        attributes[semconv.SERVER_RUN_KIND] = "startup"
        generation = Generation(
            timeline_for(config.device),
            run_id=run_id,
            memory=memory_for(config.device),
            finishers=[emitter],  # not a served generation: no generation metrics
            nvtx=config.device.type == "cuda",
            guard=Guard(self.metrics.instrumentation_error),
            attributes=attributes,
        )
        error: BaseException | None = None
        with gpu_samples(config.device, config.store, run_id):
            try:
                pipe = initialize(config, generation, self.telemetry)
                self._pipes[False] = self._instrumented = pipe
                self.model_name = str(generation.root.attributes[semconv.MODEL_NAME])
                self.task = str(generation.root.attributes[semconv.MODEL_TASK])
                self.limits = limits_for(pipe, config.source, image_refusal=self._image_refusal())
                # The smallest shapes the model takes, with two latent frames and two steps.
                side, frames = 2 * self.limits.spatial_multiple, self.limits.temporal_multiple + 1
                config = replace(config, width=side, height=side, frames=frames)
                generation.root.attributes.update(
                    {
                        semconv.REQUEST_WIDTH: side,
                        semconv.REQUEST_HEIGHT: side,
                        semconv.REQUEST_NUM_FRAMES: frames,
                    }
                )
                generate(pipe, config, generation)
            except BaseException as exc:
                error = exc
            finally:
                generation.finish(error)
                self.telemetry.flush_store()
        if error is not None:
            raise error
        self.startup_run_id, self._startup = run_id, emitter

    def _image_refusal(self) -> str | None:
        if self.task != presets.TASK_TI2V:
            return f"input_reference: this server's model ({self.task}) takes no input image"
        if self.config.offload != "none":
            # The image pipeline shares the components; offload hooks belong to the first one.
            return "input_reference: needs a server started with --offload none"
        if importlib.util.find_spec("ftfy") is None:
            return "input_reference: the server lacks the ftfy package"
        return None

    # -- jobs -----------------------------------------------------------------------------

    def run(self, job: Job, listener: Listener, stop: Callable[[], str | None]) -> None:
        """One job's generation and export; raises what the model raised (or
        ``GenerationStopped``) after its spans are written."""
        assert self._startup is not None, "load() first"
        config = self._run_config(job.id, job)
        config.listeners.append(listener)
        pipe = self._pipe_for(image=config.image is not None)
        emitter = SpanEmitter(
            self.tracer,
            job.parent,
            links=startup_link(self._startup.root_context, str(self.startup_run_id)),
            on_root=queue_wait_hook(self.tracer, job.id, job.created_ns, job.ahead_at_submit),
        )
        error: BaseException | None = None
        with gpu_samples(config.device, config.store, job.id):
            generation = new_generation(config, self.telemetry, self.metrics, emitter)
            generation.root.attributes.update(
                {
                    semconv.SERVER_RUN_KIND: "request",
                    semconv.SERVER_STARTUP_RUN_ID: str(self.startup_run_id),
                }
            )
            try:
                generate(pipe, config, generation, callback_on_step_end=_stopper(stop))
            except BaseException as exc:
                error = exc
            finally:
                # Without a caller's trace the root starts the trace id promised at submit.
                minted = None if job.parent is not None else int(job.trace_id, 16)
                with self.ids.minting(minted):
                    outcome = generation.finish(error)
                self.telemetry.flush_store()
        job.generation_s = round(outcome.duration_s, 6)
        if error is not None:
            raise error
        job.video_bytes = self.files.video(job.id).stat().st_size

    def _run_config(self, run_id: str, job: Job | None = None) -> RunConfig:
        """A job's RunConfig, or without a job the warm-up's (its sizes set once the model
        is built and its limits known)."""
        c, d = self.config, self.defaults
        base: dict[str, Any] = dict(
            source=c.source, run_id=run_id, offload=c.offload, device=c.device, dtype=c.dtype,
            max_sequence_length=c.max_sequence_length or d.max_sequence_length,
            model_dir=c.model_dir, store=c.store, record_prompt=c.record_prompt,
        )  # fmt: skip
        if job is None:
            return RunConfig(
                **base, prompt=WARMUP_PROMPT, negative_prompt=None, height=d.height,
                width=d.width, frames=d.frames, steps=2, guidance=d.guidance, fps=d.fps, seed=0,
                output=c.store / run_id / WARMUP_VIDEO,
            )  # fmt: skip
        request = job.request
        return RunConfig(
            **base, prompt=request.prompt, negative_prompt=request.negative_prompt,
            height=request.height, width=request.width, frames=request.num_frames,
            steps=request.num_inference_steps, guidance=request.guidance_scale, fps=request.fps,
            seed=request.seed, image=job.input_path, output=self.files.video(job.id),
        )  # fmt: skip

    def _pipe_for(self, *, image: bool) -> Any:
        """The text or image pipeline, carrying the instrumentation."""
        pipe = self._pipes.get(image)
        if pipe is None:
            pipe = self._pipes[image] = presets.image_variant(self._pipes[False])
            pipe.set_progress_bar_config(disable=True)
        if self._instrumented is not pipe:
            uninstrument(self._instrumented)
            instrument(
                pipe,
                self.telemetry.tracer_provider,
                self.telemetry.meter_provider,
                record_prompt=self.config.record_prompt,
                model_name=self.model_name,
                model_source=self.config.source,
                model_task=self.task,
                offload_mode=self.config.offload,
            )
            self._instrumented = pipe
        return pipe

    def close(self) -> None:
        if self._instrumented is not None:
            uninstrument(self._instrumented)
            self._instrumented = None


def _stopper(stop: Callable[[], str | None]) -> Callable[..., dict[str, Any]]:
    """The pipeline's ``callback_on_step_end``: raises ``GenerationStopped`` once ``stop()``
    gives a reason (checked after every step, so a stop lands within one step)."""

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        reason = stop()
        if reason is not None:
            raise GenerationStopped(reason)
        return {}

    return callback
