"""The instrumentation library: OTel spans and metrics for a stock diffusers Wan pipeline.

``instrument`` / ``uninstrument`` (``instrument.py``) attach to one pipeline instance:
``observer`` receives the events of ``hooks`` (forwards), ``wrappers`` (``__call__``,
``vae.decode``, ``scheduler.step``) and ``offload`` (weight moves); ``call_stages`` turns one
call's events into stage, step and forward records of a ``generation``; ``timing`` (CUDA
events) and ``memory`` (allocator figures) give their windows; ``span_stream`` writes them as
spans while the run goes; ``generation_metrics`` records the histograms. Depends on the
OpenTelemetry API, torch and diffusers; never on the SDK or on wan-otel's apps.
"""
