"""wan-otel: OpenTelemetry spans, GPU metrics and performance reports for Wan2.2 video diffusion."""

__version__ = "0.1.0"
