"""wan_otel.exporter: the NVML/GPM GPU sidecar exporter (never imports torch or diffusers)."""
