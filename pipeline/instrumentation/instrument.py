"""``instrument(pipe)`` / ``uninstrument(pipe)``: OTel spans and metrics for a stock diffusers
Wan pipeline (``WanPipeline``, ``WanImageToVideoPipeline``), as anyone builds it.

Depends on the OpenTelemetry *API* only: pass your ``TracerProvider`` / ``MeterProvider``
(the global ones otherwise); wiring the SDK and exporters is the application's job
(``wan_otel.pipeline.runner.telemetry`` does it for ``wan-otel run``). Nothing in diffusers is
subclassed or patched at class level except the pipeline class's ``__call__``, which passes
uninstrumented instances straight through; everything else attaches to the instances
(``hooks.py``, ``wrappers.py``, ``offload.py``) and is removed by ``uninstrument``.

Each call of an instrumented pipeline is one generation: a ``wan.pipeline.generate`` root
span (nested under the caller's active span, if any) with stage, step and forward children,
emitted when the call returns. ``use_generation`` lets an application own the root instead,
so that initialization and export belong to the same run (what ``wan-otel run`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from wan_otel import __version__
from wan_otel.pipeline.instrumentation import collectives
from wan_otel.pipeline.instrumentation.generation import Generation
from wan_otel.pipeline.instrumentation.generation_metrics import PipelineMetrics
from wan_otel.pipeline.instrumentation.observer import PipelineObserver
from wan_otel.pipeline.instrumentation.settings import Settings
from wan_otel.pipeline.instrumentation.wrappers import (
    STATE_ATTR,
    install_call_wrapper,
    remove_call_wrapper,
)
from wan_otel.store.run_store import check_run_id, new_run_id

TRACER_NAME = "wan_otel.pipeline"


def instrument(
    pipe: Any,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    run_id: str | Callable[[], str] | None = None,
    *,
    record_prompt: bool = False,
    model_name: str | None = None,
    model_source: str | None = None,
    model_task: str | None = None,
    offload_mode: str | None = None,
    memory: bool = True,
    nvtx: bool | None = None,
) -> None:
    """Observe every call of ``pipe``. Idempotent: a second call changes nothing.

    ``run_id``: the ``wan.run.id`` of each generation: a fixed string, a function returning
    one per call, or None for a fresh time-based id per call. ``record_prompt``: record the
    prompt text (by default only its length and SHA-256). ``model_*``: override what is
    derived from the pipeline. ``offload_mode``: override the detected mode. ``memory``: keep
    allocator figures per span on CUDA (resets torch's peak-memory counters at span
    boundaries). ``nvtx``: NVTX ranges named like the spans (default: on CUDA).
    """
    if is_instrumented(pipe):
        return
    provider = tracer_provider or trace.get_tracer_provider()
    settings = Settings(
        run_id=_run_id_factory(run_id),
        record_prompt=record_prompt,
        model_name=model_name,
        model_source=model_source,
        model_task=model_task,
        offload_mode=offload_mode,
        memory=memory,
        nvtx=nvtx,
    )
    observer = PipelineObserver(
        pipe,
        provider.get_tracer(TRACER_NAME, __version__),
        PipelineMetrics(meter_provider),
        settings,
    )
    # object.__setattr__: DiffusionPipeline.__setattr__ would try to register it in the config.
    object.__setattr__(pipe, STATE_ATTR, observer)
    collectives.install()
    try:
        observer.sync()
        # Read before the first call, not at its start, where the GPU would wait for it.
        observer.guard.call(observer.model_attributes)
        install_call_wrapper(pipe, _dispatch)
    except BaseException:
        uninstrument(pipe)
        raise


def uninstrument(pipe: Any) -> None:
    """Remove every hook and wrapper ``instrument`` attached; calls then make no spans."""
    observer = vars(pipe).pop(STATE_ATTR, None)
    if not isinstance(observer, PipelineObserver):
        return
    observer.detach_all()
    remove_call_wrapper(pipe)
    collectives.uninstall()


def is_instrumented(pipe: Any) -> bool:
    return isinstance(vars(pipe).get(STATE_ATTR), PipelineObserver)


def observer_of(pipe: Any) -> PipelineObserver | None:
    """The instrumentation state (for tests and the run command), or None."""
    observer = vars(pipe).get(STATE_ATTR)
    return observer if isinstance(observer, PipelineObserver) else None


@contextmanager
def use_generation(pipe: Any, generation: Generation) -> Iterator[None]:
    """Within the block, calls of ``pipe`` on this thread (and weight moves outside calls)
    record into ``generation`` under its innermost open record, instead of making their own
    root span. The caller finishes the generation."""
    observer = observer_of(pipe)
    if observer is None:
        yield
        return
    with observer.bind(generation):
        yield


def _dispatch(
    pipe: Any, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    observer = observer_of(pipe)
    if observer is None:
        return original(pipe, *args, **kwargs)
    return observer.observe_call(original, pipe, args, kwargs)


def _run_id_factory(run_id: str | Callable[[], str] | None) -> Callable[[], str]:
    if run_id is None:
        return new_run_id
    if callable(run_id):
        return run_id
    fixed = check_run_id(run_id)
    return lambda: fixed
