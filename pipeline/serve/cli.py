"""``wan-otel serve``: flags, signals, and one line per life event on stderr.

Runs until SIGTERM or SIGINT, then stops gracefully (``server.py``): exit 0. A model that
fails to load exits 1 (Kubernetes restarts the pod); bad flags, a busy port or a store used by
another server are one line and exit 2.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from wan_otel import semconv
from wan_otel.errors import ExitStatus, WanOtelError
from wan_otel.pipeline.runner.model_flags import add_model_arguments, check_port, model_from_args
from wan_otel.pipeline.serve.engine import EngineConfig
from wan_otel.pipeline.serve.server import ServeConfig, Server
from wan_otel.store.run_store import RunStore, default_store_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument(
        "--port",
        type=int,
        default=semconv.SERVER_DEFAULT_PORT,
        help=f"TCP port (default {semconv.SERVER_DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=16,
        metavar="N",
        help="requests that may wait behind the running one; more get 429 (default 16)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        help="run store: spans, jobs and videos (default: $WAN_OTEL_STORE or ./wan-otel-runs)",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=45.0,
        metavar="S",
        help="on SIGTERM, how long the running job may take to finish before it is stopped "
        "(default 45: within Kubernetes' 60 s termination grace, with time to flush telemetry)",
    )


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """Resolve defaults and check the flags; bad input raises ``WanOtelError``."""
    model = model_from_args(args)
    if args.max_queue < 1:
        raise WanOtelError(f"--max-queue {args.max_queue}: must be 1 or more")
    if not math.isfinite(args.grace_seconds) or not 0 <= args.grace_seconds <= 3600:
        raise WanOtelError(f"--grace-seconds {args.grace_seconds}: must be 0 to 3600")
    check_port("--port", args.port)
    store = RunStore(args.store or default_store_root())
    store.check_writable()
    engine = EngineConfig(model=model, store=store.root, record_prompt=args.record_prompt)
    return ServeConfig(
        engine=engine,
        host=args.host,
        port=args.port,
        max_queue=args.max_queue,
        grace_s=args.grace_seconds,
    )


def _say(line: str) -> None:
    print(f"wan-otel serve: {line}", file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server = Server(config)
    try:
        server.start()
        store = config.engine.store
        _say(f"listening on http://{config.host}:{server.port} (store {store}); loading the model")
        if server.recovered:
            _say(f"{len(server.recovered)} job(s) lost by the previous server marked failed")
        announced = False
        while not stop.wait(0.2):
            if server.load_error is not None:
                error = server.load_error
                _say(f"the model failed to load: {type(error).__name__}: {error}")
                server.shutdown()
                return ExitStatus.ERROR
            if not announced and server.loaded_s is not None:
                announced = True
                _say(
                    f"ready: {server.engine.model_name} loaded and warmed up in "
                    f"{server.loaded_s:.1f} s (start-up run {server.engine.startup_run_id})"
                )
        failed = server.stop_accepting()  # refused before it is said
        _say(f"stopping: no new jobs; the running one has {config.grace_s:g} s to finish")
        report = server.shutdown()
        _say(
            f"stopped: {failed + report.failed_queued} queued job(s) failed"
            + (f"; running job {report.stopped_running}" if report.stopped_running else "")
            + (f"; {report.dropped_spans} span(s) not delivered" if report.dropped_spans else "")
        )
        return ExitStatus.OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
