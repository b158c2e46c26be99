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

import contextlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from wan_otel import __version__, semconv
from wan_otel.pipeline.instrumentation.generation import Generation, Listener
from wan_otel.pipeline.instrumentation.generation_metrics import PipelineMetrics
from wan_otel.pipeline.instrumentation.guard import Guard
from wan_otel.pipeline.instrumentation.instrument import TRACER_NAME, instrument, uninstrument
from wan_otel.pipeline.instrumentation.span_stream import SpanStream
from wan_otel.pipeline.runner import presets
from wan_otel.pipeline.runner.model_flags import ModelChoice
from wan_otel.pipeline.runner.model_specs import TASK_TI2V
from wan_otel.pipeline.runner.run import RunRequest, generate, initialize
from wan_otel.pipeline.runner.run_scope import RunPlan, run_scope
from wan_otel.pipeline.runner.telemetry import Telemetry
from wan_otel.pipeline.runner.trace_ids import MintedTraceIds
from wan_otel.pipeline.serve.jobs import Job
from wan_otel.pipeline.serve.persist import JobFiles
from wan_otel.pipeline.serve.tracing import queue_wait_hook, startup_link
from wan_otel.pipeline.serve.validation import Limits, ModelNames, limits_for
from wan_otel.store.run_store import RunStore, new_run_id

WARMUP_PROMPT = "warm-up"
WARMUP_VIDEO = "warmup.mp4"
WARMUP_IMAGE = "warmup.png"


class GenerationStopped(Exception):
    """Raised between denoising steps to stop a job: cancelled by its client, or stopped by a
    server shutdown. The run's spans end with status ERROR and this as ``error.type``."""


@dataclass(frozen=True)
class EngineConfig:
    """The model a server loads and where its runs go."""

    model: ModelChoice
    store: Path
    record_prompt: bool = False

    @property
    def source(self) -> str:
        return self.model.source

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def offload(self) -> str:
        return self.model.offload


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
        self.store = RunStore(config.store)
        self.tracer = telemetry.tracer_provider.get_tracer(TRACER_NAME, __version__)
        self.spec = presets.spec_for(config.source, config.model.model_dir)
        self.defaults = self.spec.defaults
        self.limits: Limits | None = None
        self.model_name = self.spec.name
        self.task = self.spec.task
        self.names = self._names()
        self.startup_run_id: str | None = None
        self._startup: SpanStream | None = None
        self._pipes: dict[bool, Any] = {}
        self._instrumented: Any = None

    # -- start-up -----------------------------------------------------------------------------

    def load(self) -> None:
        """Build, instrument and place the model, then one tiny generation; one run."""
        run_id = f"{new_run_id()}-startup"
        stream = SpanStream(self.tracer)
        plan = RunPlan(
            run_id,
            self.config.device,
            self.store,
            attributes={semconv.SERVER_RUN_KIND: "startup"},
        )
        with self._scope(plan, stream, metrics=None) as generation:  # not a served generation
            pipe, built = initialize(
                self.config.model,
                generation,
                self.telemetry,
                record_prompt=self.config.record_prompt,
            )
            self._pipes[self.spec.needs_image] = self._instrumented = pipe
            self.model_name, self.task = built.model_name, built.task
            self.names = self._names()
            self.limits = limits_for(
                pipe,
                self.config.source,
                image_refusal=self._image_refusal(),
                two_experts=self.spec.two_experts,
            )
            # The smallest shapes the model takes, with two latent frames and two steps.
            side, frames = 2 * self.limits.spatial_multiple, self.limits.temporal_multiple + 1
            warmup = replace(self._request(run_id), width=side, height=side, frames=frames)
            generation.root.attributes[semconv.REQUEST_FPS] = warmup.fps
            generate(pipe, warmup, generation)
        self.startup_run_id, self._startup = run_id, stream

    def _scope(
        self,
        plan: RunPlan,
        stream: SpanStream,
        metrics: PipelineMetrics | None,
        listeners: Sequence[Listener] = (),
    ) -> contextlib.AbstractContextManager[Generation]:
        return run_scope(
            plan,
            stream,
            guard=Guard(self.metrics.instrumentation_error),
            flush=self.telemetry.flush_store,
            metrics=metrics,
            listeners=listeners,
        )

    def _names(self) -> ModelNames:
        """The served model's name, then the preset's or the checkpoint folder's."""
        model_dir = self.config.model.model_dir
        alias = model_dir.resolve().name if model_dir is not None else self.config.source
        return ModelNames(self.model_name, (alias,))

    def _image_refusal(self) -> str | None:
        if self.spec.needs_image:
            return None  # an I2V model: every request brings its first frame
        if self.task != TASK_TI2V:
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
        request = self._request(job.id, job)
        pipe = self._pipe_for(image=request.image is not None)
        # Without a caller's trace the root starts the trace id promised at submit.
        minted = None if job.parent is not None else int(job.trace_id, 16)
        stream = SpanStream(
            self.tracer,
            job.parent,
            links=startup_link(self._startup.root_context, str(self.startup_run_id)),
            on_root=queue_wait_hook(self.tracer, job.id, job.created_ns, job.ahead_at_submit),
            root_scope=lambda: self.ids.minting(minted),
        )
        plan = RunPlan(
            job.id,
            self.config.device,
            self.store,
            create=False,  # made when the job was queued
            attributes={
                semconv.REQUEST_FPS: request.fps,
                semconv.SERVER_RUN_KIND: "request",
                semconv.SERVER_STARTUP_RUN_ID: str(self.startup_run_id),
            },
            request=request.summary_attributes(),
        )
        generation: Generation | None = None
        try:
            with self._scope(plan, stream, self.metrics, [listener]) as generation:
                generate(pipe, request, generation, callback_on_step_end=_stopper(stop))
        finally:
            if generation is not None and generation.outcome is not None:
                job.generation_s = round(generation.outcome.duration_s, 6)
        job.video_bytes = self.files.video(job.id).stat().st_size

    def _request(self, run_id: str, job: Job | None = None) -> RunRequest:
        """A job's request, or without a job the warm-up's (its sizes set once the model is
        built and its limits known)."""
        c, d = self.config, self.defaults
        base: dict[str, Any] = dict(
            model=c.model, run_id=run_id, store=self.store, record_prompt=c.record_prompt,
            max_sequence_length=c.model.max_sequence_length or d.max_sequence_length,
            guidance_2=d.guidance_2 if job is None else job.request.guidance_scale_2,
        )  # fmt: skip
        if job is None:
            return RunRequest(
                **base, prompt=WARMUP_PROMPT, negative_prompt=None, height=d.height,
                width=d.width, frames=d.frames, steps=2, guidance=d.guidance, fps=d.fps, seed=0,
                output=self.store.folder(run_id).file(WARMUP_VIDEO),
                image=self._warmup_image(run_id) if self.spec.needs_image else None,
            )  # fmt: skip
        request = job.request
        return RunRequest(
            **base, prompt=request.prompt, negative_prompt=request.negative_prompt,
            height=request.height, width=request.width, frames=request.num_frames,
            steps=request.num_inference_steps, guidance=request.guidance_scale, fps=request.fps,
            seed=request.seed, image=job.input_path, output=self.files.video(job.id),
        )  # fmt: skip

    def _warmup_image(self, run_id: str) -> Path:
        """A grey first frame for an I2V model's warm-up (it generates from one)."""
        from PIL import Image

        path = self.store.folder(run_id).file(WARMUP_IMAGE)
        Image.new("RGB", (64, 64), (128, 128, 128)).save(path)
        return path

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
