"""The instrumentation state of one pipeline instance: its hooks, wrappers and calls.

``PipelineObserver`` owns everything ``instrument()`` attached to one pipeline and receives
the events (forward boundaries, weight moves, decode, scheduler steps). Events count only on
the thread running the observed call (or the thread that bound a generation with
``use_generation``); a concurrent or re-entrant call runs unobserved rather than mixing its
records into another run. All our code runs through the guard: it never reaches the model.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from opentelemetry import context as otel_context
from opentelemetry.trace import Tracer

from wan_otel import semconv
from wan_otel.pipeline.instrumentation import attributes as describe
from wan_otel.pipeline.instrumentation import collectives
from wan_otel.pipeline.instrumentation.call_stages import CallObserver
from wan_otel.pipeline.instrumentation.generation import AttributeValue, Generation, OpenRecord
from wan_otel.pipeline.instrumentation.generation_metrics import PipelineMetrics
from wan_otel.pipeline.instrumentation.guard import Guard
from wan_otel.pipeline.instrumentation.hooks import (
    Attachment,
    ForwardObserver,
    attach,
    detach,
    ensure_outermost,
    reset_depth,
)
from wan_otel.pipeline.instrumentation.memory import memory_for
from wan_otel.pipeline.instrumentation.offload import OffloadObserver, detect_offload_mode
from wan_otel.pipeline.instrumentation.settings import Settings
from wan_otel.pipeline.instrumentation.span_stream import SpanStream
from wan_otel.pipeline.instrumentation.timing import timeline_for
from wan_otel.pipeline.instrumentation.wrappers import MethodPatch, patch_method

HOOKED = ("text_encoder", "transformer", "transformer_2")
"""Forward-based components that get the diffusers ModelHook."""

MODULE_COMPONENTS = ("text_encoder", "image_encoder", "transformer", "transformer_2", "vae")
"""Components whose weight moves are observed."""

TEXT_ENCODER = "text_encoder"


class PipelineObserver:
    """Hooks and wrappers on one pipeline; the sink of their events."""

    def __init__(
        self, pipe: Any, tracer: Tracer, metrics: PipelineMetrics, settings: Settings
    ) -> None:
        self.pipe = pipe
        self.tracer = tracer
        self.metrics = metrics
        self.settings = settings
        self.guard = Guard(metrics.instrumentation_error)
        self._attachments: dict[str, Attachment] = {}
        self._patches: dict[str, MethodPatch] = {}
        self.offload = OffloadObserver(self, self.guard)
        self._bound: Generation | None = None
        self._bound_thread: int | None = None
        self._call: CallObserver | None = None
        self._call_thread: int | None = None
        self._signature: inspect.Signature | None = None
        self._model_key: tuple[Any, ...] | None = None
        self._model_attrs: dict[str, Any] = {}
        self._call_lock = threading.Lock()

    # -- attaching --------------------------------------------------------------------------

    def components(self) -> dict[str, torch.nn.Module]:
        found = {}
        for name in MODULE_COMPONENTS:
            module = getattr(self.pipe, name, None)
            if isinstance(module, torch.nn.Module):
                found[name] = module
        return found

    def sync(self) -> None:
        """Attach to the pipeline's current components (new ones, swapped ones), and keep our
        forward hooks outermost."""
        for name in HOOKED:
            module = getattr(self.pipe, name, None)
            current = self._attachments.get(name)
            if current is not None and current.module is not module:
                detach(current)
                del self._attachments[name]
                current = None
            if not isinstance(module, torch.nn.Module):
                continue
            if current is None:
                self._attachments[name] = attach(module, ForwardObserver(name, self, self.guard))
            else:
                ensure_outermost(current)
        self._patch("vae", "decode", self._wrap_decode)
        self._patch("scheduler", "step", self._wrap_scheduler_step)
        self.offload.sync(self.components())

    def _patch(
        self, component: str, method: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]
    ) -> None:
        key = f"{component}.{method}"
        obj = getattr(self.pipe, component, None)
        patch = self._patches.get(key)
        if patch is not None and patch.obj is obj:
            return
        if patch is not None:
            patch.restore()
            del self._patches[key]
        if obj is not None and callable(getattr(obj, method, None)):
            self._patches[key] = patch_method(obj, method, make)

    def detach_all(self) -> None:
        for attachment in self._attachments.values():
            detach(attachment)
        self._attachments.clear()
        for patch in self._patches.values():
            patch.restore()
        self._patches.clear()
        self.offload.restore()

    # -- calls ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def bind(self, generation: Generation) -> Iterator[None]:
        """Within the block, this thread's calls and weight moves record into ``generation``."""
        previous = self._bound, self._bound_thread
        self._bound, self._bound_thread = generation, threading.get_ident()
        try:
            yield
        finally:
            self._bound, self._bound_thread = previous

    def observe_call(
        self, original: Callable[..., Any], pipe: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not self._call_lock.acquire(blocking=False):  # re-entrant or concurrent call:
            return original(pipe, *args, **kwargs)  # run it unobserved
        try:
            started = self.guard.call(self._begin_call, original, args, kwargs)
            if started is None:
                return original(pipe, *args, **kwargs)
            generation, standalone = started
            try:
                with collectives.bind(self):
                    result = original(pipe, *args, **kwargs)
            except BaseException as exc:
                self.guard.call(self._end_call, exc)
                if standalone:
                    generation.finish(exc)
                raise
            self.guard.call(self._end_call, None)
            if standalone:
                generation.finish()
            return result
        finally:
            self._call_lock.release()

    def _begin_call(
        self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Generation, bool]:
        self.sync()
        for attachment in self._attachments.values():
            reset_depth(attachment)
        thread = threading.get_ident()
        if self._bound is not None and self._bound_thread == thread and not self._bound.finished:
            generation, standalone = self._bound, False
        else:
            generation, standalone = self._new_generation(), True
        # This call's request and the pipeline's model: ours to write (an application adds
        # only what it alone knows; a generation of our own also gets the system's).
        root = generation.root.attributes
        root.update(self._request_attributes(original, args, kwargs))
        root.update(self.model_attributes())
        root.update(describe.genai_attributes(root))
        self._call = CallObserver(generation, boundary=describe.boundary_timestep(self.pipe))
        self._call_thread = thread
        return generation, standalone

    def _end_call(self, error: BaseException | None) -> None:
        call, self._call, self._call_thread = self._call, None, None
        for attachment in self._attachments.values():
            reset_depth(attachment)
        if call is not None:
            call.finish(error)

    def _new_generation(self) -> Generation:
        device = torch.device(self.pipe._execution_device)
        nvtx = self.settings.nvtx
        if nvtx is None:
            nvtx = device.type == "cuda" and torch.cuda.is_available()
        self.metrics.started()
        return Generation(
            timeline_for(device),
            run_id=self.settings.run_id(),
            memory=memory_for(device) if self.settings.memory else None,
            stream=SpanStream(self.tracer, otel_context.get_current()),
            finishers=[self.metrics],
            nvtx=nvtx,
            guard=self.guard,
            attributes=describe.system_attributes(device),
        )

    def _request_attributes(
        self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        if self._signature is None:
            self._signature = inspect.signature(original)
        bound = self._signature.bind_partial(self.pipe, *args, **kwargs)
        bound.apply_defaults()
        return describe.request_attributes(bound.arguments, self.settings.record_prompt)

    def model_attributes(self) -> dict[str, Any]:
        """Model, offload mode, dtypes and weight bytes of the pipeline now. Reading them walks
        every parameter (about 10 ms for a 5B model): ``instrument`` reads them, and a call
        reads them again only when a component, its offload hooks or its first weight's dtype
        changed. Call it after ``sync``: it keys on the hooks fingerprints ``sync`` took."""
        components, hooks = self.components(), self.offload.fingerprints
        key = (
            *(
                (name, hooks.get(name), describe.weights_probe(module))
                for name, module in components.items()
            ),
            len(getattr(self.pipe, "_all_hooks", None) or ()),
        )
        if self._model_key != key:
            self._model_key, self._model_attrs = key, self._read_model_attributes(components)
        return dict(self._model_attrs)

    def _read_model_attributes(self, components: dict[str, torch.nn.Module]) -> dict[str, Any]:
        pipe, settings = self.pipe, self.settings
        return describe.model_attributes(
            pipe,
            components,
            name=settings.model_name,
            task=settings.model_task,
            source=settings.model_source,
            offload=settings.offload_mode or detect_offload_mode(pipe, components),
        )

    # -- event sinks ------------------------------------------------------------------------

    def _active_call(self) -> CallObserver | None:
        call = self._call
        if call is not None and self._call_thread == threading.get_ident():
            return call
        return None

    def active_generation(self) -> Generation | None:
        call = self._active_call()
        if call is not None:
            return call.gen
        if self._bound is not None and self._bound_thread == threading.get_ident():
            return None if self._bound.finished else self._bound
        return None

    def forward_start(self, component: str, branch: str | None) -> None:
        call = self._active_call()
        if call is None:
            return
        if component == TEXT_ENCODER:
            call.text_encoder_start()
        else:
            call.denoiser_start(component, branch)

    def forward_end(self, component: str) -> None:
        call = self._active_call()
        if call is None:
            return
        if component == TEXT_ENCODER:
            call.text_encoder_end()
        else:
            call.denoiser_end(component)

    def transfer_start(
        self, component: str, direction: str, nbytes: int, stream: Any, merge: bool
    ) -> OpenRecord | None:
        generation = self.active_generation()
        if generation is None:
            return None
        attrs: dict[str, AttributeValue] = {
            semconv.COMPONENT_NAME: component,
            semconv.TRANSFER_DIRECTION: direction,
            semconv.TRANSFER_BYTES: nbytes,
        }
        record = generation.open(
            semconv.SPAN_WEIGHT_TRANSFER,
            attrs,
            merge_key=(component, direction) if merge else None,
            stream=stream,
        )
        return OpenRecord(generation, record)

    def collective_start(self, op: str, nbytes: int) -> OpenRecord | None:
        """A collective of the active call (merged per forward and op: hundreds a step)."""
        call = self._active_call()
        if call is None:
            return None
        attrs: dict[str, AttributeValue] = {
            semconv.COLLECTIVE_OP: op,
            semconv.COLLECTIVE_BYTES: nbytes,
        }
        record = call.gen.open(
            semconv.SPAN_COLLECTIVE,
            attrs,
            merge_key=("collective", op),
            notify=False,
            memory=False,
            nvtx=False,
        )
        return OpenRecord(call.gen, record)

    # -- wrappers of non-forward entry points ----------------------------------------------

    def _wrap_decode(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def decode(*args: Any, **kwargs: Any) -> Any:
            call = self._active_call()
            if call is None:
                return original(*args, **kwargs)
            return self.guard.around(
                call.decode_start,
                lambda _, error: call.decode_end(error),
                lambda: original(*args, **kwargs),
            )

        return decode

    def _wrap_scheduler_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            call = self._active_call()
            if call is not None:
                timestep = args[1] if len(args) > 1 else kwargs.get("timestep")
                self.guard.call(call.scheduler_step_end, timestep)
            return result

        return step
