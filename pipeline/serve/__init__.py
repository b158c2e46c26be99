"""``wan-otel serve``: Wan2.2 generations over HTTP in the shape of OpenAI's video API, each
request one traced run in the store (``docs/serve.md``).

Modules, one job each: ``validation`` (request bodies), ``jobs`` (the bounded queue and job
states), ``persist`` (job records on disk), ``engine`` (the loaded model and one run per job),
``worker`` (the one thread that runs jobs), ``tracing`` (trace context, queue-wait span),
``server_metrics`` (server instruments), ``service`` and ``api`` (operations and HTTP), ``server``
(wiring and graceful stop), ``cli``.
"""

from wan_otel.pipeline.serve.engine import EngineConfig
from wan_otel.pipeline.serve.server import ServeConfig, Server, ShutdownReport

__all__ = ["EngineConfig", "ServeConfig", "Server", "ShutdownReport"]
