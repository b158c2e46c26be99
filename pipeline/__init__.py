"""wan_otel.pipeline: the instrumented Wan2.2 diffusers pipeline and the ``run`` command."""
