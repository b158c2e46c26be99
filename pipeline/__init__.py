"""wan_otel.pipeline: the instrumented Wan2.2 diffusers pipeline and the ``run`` command.

``instrument(pipe)`` / ``uninstrument(pipe)`` observe anyone's stock diffusers Wan pipeline
with the OpenTelemetry API; ``wan-otel run`` (``cli.py``, ``run.py``) builds a pipeline from a
preset or a checkpoint, wires the SDK and writes the run to the local store.
"""

from wan_otel.pipeline.instrument import instrument, is_instrumented, uninstrument, use_generation

__all__ = ["instrument", "is_instrumented", "uninstrument", "use_generation"]
