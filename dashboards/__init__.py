"""wan-otel's Grafana dashboards, generated from code: ``python -m dashboards.build``.

``serving``, ``gpu`` and ``run`` each build one dashboard with grafana-foundation-sdk;
``panels`` holds the shared builders, ``gpu_panels`` the per-GPU panels (each defined once,
for every dashboard that shows it); ``build`` writes (or ``--check``s) the JSON files beside
this module. Metric and label names come from ``wan_otel.semconv``.
"""
