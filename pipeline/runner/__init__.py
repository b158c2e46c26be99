"""``wan-otel run`` and what the apps share: presets and checkpoints (``presets``), the model
flags (``model_flags``), the SDK wiring (``telemetry``), one run's lifecycle (``run_scope``,
``interrupt``), the generation itself (``run``), the progress bar and the command (``cli``)."""
