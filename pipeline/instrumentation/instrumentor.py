"""``WanPipelineInstrumentor``: the OpenTelemetry instrumentor of diffusers' Wan pipelines, the
one the zero-code agent (``opentelemetry-instrument``) loads through the
``opentelemetry_instrumentor`` entry point ``wan_pipeline``.

    from wan_otel.pipeline.instrumentation.instrumentor import WanPipelineInstrumentor

    WanPipelineInstrumentor().instrument(tracer_provider=tp, meter_provider=mp, record_prompt=False)
    pipe = WanPipeline.from_pretrained(...)   # created before or after: both are observed
    pipe(prompt, ...)                         # one wan.pipeline.generate trace per call
    WanPipelineInstrumentor().uninstrument()  # every pipeline it instrumented, and the classes

Class level: ``instrument()`` puts a wrapper on ``__call__`` of ``WanPipeline`` and
``WanImageToVideoPipeline`` (diffusers runs Wan2.2 TI2V-5B and the A14B two-expert models in
these two classes). At the first call of each instance after that, the wrapper instruments it
with the per-instance ``instrument(pipe, ...)`` and the providers and options given here (the
global providers by default: the ones the agent configured); later calls go through the
per-instance instrumentation as if the user had called ``instrument(pipe)``. Pipelines the user
instrumented themselves are left as they are, and so is a pipeline the user uninstrumented
while this instrumentor is on. ``uninstrument()`` removes the instrumentation from every
pipeline it instrumented and restores the classes' ``__call__``; both are idempotent
(``BaseInstrumentor`` is a singleton).

The agent loads instrumentors when the process starts, before the application imports
anything: a class is wrapped when diffusers' module defining it is imported (an import hook;
at once if it is imported already), and the per-instance instrumentation is imported at the
first call, so that ``instrument()`` imports no diffusers pipeline itself. Depends on the
OpenTelemetry API and ``opentelemetry-instrumentation`` (the base class, and its ``wrapt``),
never on the SDK.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Collection
from types import ModuleType
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from wan_otel.pipeline.instrumentation.guard import Guard

if TYPE_CHECKING:
    from wan_otel.pipeline.instrumentation.observer import PipelineObserver

_log = logging.getLogger(__name__)

INSTRUMENTS = ("diffusers >= 0.35",)
"""The diffusers releases we instrument: Wan2.2 (TI2V-5B, A14B) arrived in 0.35."""

PIPELINE_CLASSES = (
    ("diffusers.pipelines.wan.pipeline_wan", "WanPipeline"),
    ("diffusers.pipelines.wan.pipeline_wan_i2v", "WanImageToVideoPipeline"),
)
"""diffusers' classes whose instances are instrumented (T2V and TI2V, I2V; one or two
experts), by the module that defines each."""

OPTIONS = (
    "run_id",
    "record_prompt",
    "model_name",
    "model_source",
    "model_task",
    "offload_mode",
    "memory",
    "nvtx",
)
"""Keyword options passed on to ``instrument(pipe, ...)`` (see its docstring)."""


class WanPipelineInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments every Wan pipeline called after ``instrument()``; see the module docstring."""

    def __init__(self) -> None:
        # BaseInstrumentor is a singleton: __init__ runs at every WanPipelineInstrumentor();
        # the state is made once.
        if getattr(self, "_state_lock", None) is not None:
            return
        self._state_lock = threading.Lock()
        self._epoch = 0  # one per instrument(): import hooks of an earlier one do nothing
        self._on = False
        self._patches: dict[type, tuple[Any, Callable[..., Any]]] = {}
        self._arguments: dict[str, Any] = {}
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self._ours: weakref.WeakKeyDictionary[Any, PipelineObserver] = weakref.WeakKeyDictionary()
        self._guard = Guard()

    def instrumentation_dependencies(self) -> Collection[str]:
        return INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - {"tracer_provider", "meter_provider", *OPTIONS})
        if unknown:
            raise TypeError(
                f"WanPipelineInstrumentor.instrument() got unknown options {unknown}; "
                f"expected tracer_provider, meter_provider, {', '.join(OPTIONS)}"
            )
        # The agent skips BaseInstrumentor's own check (it looks for an 'instruments' extra
        # we do not declare): refuse an unsupported diffusers here, as the agent would.
        conflict = get_dependency_conflicts(INSTRUMENTS)
        if conflict is not None:
            _log.error("%s", conflict)
            return
        with self._state_lock:
            self._epoch += 1
            self._on = True
            self._arguments = dict(kwargs)
            self._seen = weakref.WeakSet()
            epoch = self._epoch
        for module_name, class_name in PIPELINE_CLASSES:
            hook = functools.partial(self._patch_class, epoch, class_name)
            wrapt.register_post_import_hook(hook, module_name)

    def _uninstrument(self, **kwargs: Any) -> None:
        with self._state_lock:
            self._epoch += 1
            self._on = False
            ours = list(self._ours.items())
            if ours:
                from wan_otel.pipeline.instrumentation.instrument import observer_of, uninstrument

                for pipe, observer in ours:
                    if observer_of(pipe) is observer:  # not re-instrumented by the user since
                        uninstrument(pipe)
            self._ours = weakref.WeakKeyDictionary()
            self._seen = weakref.WeakSet()
            self._arguments = {}
            for cls, (original, wrapper) in self._patches.items():
                # Someone wrapped __call__ after us: leave theirs; ours, now unregistered,
                # passes every call through.
                if vars(cls).get("__call__") is wrapper:
                    setattr(cls, "__call__", original)  # noqa: B010 (a dunder: on the class)
            self._patches = {}

    # -- the class-level wrapper ------------------------------------------------------------

    def _patch_class(self, epoch: int, class_name: str, module: ModuleType) -> None:
        """The import hook: wrap the class's ``__call__`` (inside an import: never raises)."""
        self._guard.call(self._patch_class_now, epoch, getattr(module, class_name, None))

    def _patch_class_now(self, epoch: int, cls: Any) -> None:
        with self._state_lock:
            if epoch != self._epoch or not isinstance(cls, type) or cls in self._patches:
                return
            original = vars(cls)["__call__"]
            wrapper = self._wrap(cls, original)
            setattr(cls, "__call__", wrapper)  # noqa: B010 (a dunder: must sit on the class)
            self._patches[cls] = (original, wrapper)

    def _wrap(self, cls: type, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def __call__(pipe: Any, *args: Any, **kwargs: Any) -> Any:
            if self._patches.get(cls, (None, None))[1] is __call__:
                observer = self._guard.call(self._adopt, pipe)
                if observer is not None:
                    # This first call: observed here. Later ones reach the per-instance
                    # wrapper, which observes them and passes through here.
                    return observer.observe_call(original, pipe, args, kwargs)
            return original(pipe, *args, **kwargs)

        return __call__

    def _adopt(self, pipe: Any) -> PipelineObserver | None:
        """Instrument ``pipe`` if it is met for the first time since ``instrument()`` and
        nobody instrumented it; its observer then, else None."""
        from wan_otel.pipeline.instrumentation.instrument import (
            instrument,
            is_instrumented,
            observer_of,
        )

        with self._state_lock:
            if not self._on or pipe in self._seen:
                return None
            self._seen.add(pipe)
            if is_instrumented(pipe):  # instrumented by the user: theirs to keep
                return None
            arguments = dict(self._arguments)
            instrument(
                pipe,
                arguments.pop("tracer_provider", None),
                arguments.pop("meter_provider", None),
                **arguments,
            )
            observer = observer_of(pipe)
            if observer is not None:
                self._ours[pipe] = observer
            return observer
