"""Production backends the report reads: Collector files, Tempo, Jaeger and Prometheus."""
