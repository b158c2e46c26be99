"""wan_otel.pipeline: the Wan2.2 diffusers pipeline, instrumented, and the apps that run it.

Two sides, two folders:

- ``instrumentation/``: the library a user imports into their own server. ``instrument(pipe)``
  / ``uninstrument(pipe)`` observe anyone's stock diffusers Wan pipeline with the
  OpenTelemetry API (hooks, observer, timing, memory, span stream, metrics).
- ``runner/`` (``wan-otel run``) and ``serve/`` (``wan-otel serve``): what we run. They build
  a pipeline from a preset or a checkpoint, wire the SDK, and write each run to the store
  through one run scope.

The library never imports the apps (a test walks the imports).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wan_otel.pipeline.instrumentation.instrument import (
        instrument,
        is_instrumented,
        uninstrument,
        use_generation,
    )

__all__ = ["instrument", "is_instrumented", "uninstrument", "use_generation"]


def __getattr__(name: str) -> Any:
    """The re-exports load torch and diffusers on first use, not on import: the agent's entry
    point (``instrumentation.instrumentor``) lives under this package and must stay cheap."""
    if name in __all__:
        from wan_otel.pipeline.instrumentation import instrument as module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
