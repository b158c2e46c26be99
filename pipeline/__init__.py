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

from wan_otel.pipeline.instrumentation.instrument import (
    instrument,
    is_instrumented,
    uninstrument,
    use_generation,
)

__all__ = ["instrument", "is_instrumented", "uninstrument", "use_generation"]
