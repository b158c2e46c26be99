"""``wan-otel serve``: Wan2.2 generations over HTTP in the shape of OpenAI's video API (as
vLLM-Omni serves it), each request one traced run in the store (``docs/serve.md``).

Modules, one job each: ``body`` (request bodies: JSON and forms, bounded), ``validation``
(fields to a request), ``images`` (first frames in, thumbnails out), ``jobs`` (a job and its
record), ``job_queue`` (the bounded queue, the index of stored jobs), ``persist`` (job files
on disk), ``engine`` (the loaded model and one run per job), ``worker`` (the one thread that
runs jobs), ``waiters`` (the event loop's waits for jobs to end), ``tracing`` (trace context,
HTTP spans, queue-wait span), ``server_metrics`` (server instruments), ``service`` and ``api``
(operations and routes), ``auth`` (the API key), ``connections`` (timeouts and the
connection bound), ``asgi`` (the middleware's types), ``http_server`` (socket and uvicorn),
``server`` (wiring and graceful stop), ``cli``.
"""

from wan_otel.pipeline.serve.engine import EngineConfig
from wan_otel.pipeline.serve.server import ServeConfig, Server, ShutdownReport

__all__ = ["EngineConfig", "ServeConfig", "Server", "ShutdownReport"]
