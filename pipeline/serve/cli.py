"""``wan-otel serve``: flags, signals, and one line per life event on stderr.

Runs until SIGTERM or SIGINT, then stops gracefully (``server.py``): exit 0. A model that
fails to load exits 1 (Kubernetes restarts the pod); bad flags, a busy port or a store used by
another server are one line and exit 2. The API key comes from ``--api-key`` or
``$WAN_OTEL_API_KEY`` (the variable keeps it out of ``ps``); it is never printed.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from wan_otel import semconv
from wan_otel.errors import ExitStatus, WanOtelError
from wan_otel.pipeline.runner.model_flags import add_model_arguments, check_port, model_from_args
from wan_otel.pipeline.serve.auth import API_KEY_ENV
from wan_otel.pipeline.serve.connections import ConnectionLimits
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
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' on /v1/ routes (default: ${API_KEY_ENV}, "
        "else no key); probes and /metrics stay open",
    )
    parser.add_argument(
        "--retention-hours",
        type=float,
        default=168.0,
        metavar="H",
        help="how long a finished job and its video are kept (expires_at), then pruned; "
        "0 keeps them for ever (default 168: a week)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=ConnectionLimits.max_connections,
        metavar="N",
        help="open connections served at once; more get a 503 (default "
        f"{ConnectionLimits.max_connections})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=ConnectionLimits.idle_timeout_s,
        metavar="S",
        help="close a connection with no request under way after S s "
        f"(default {ConnectionLimits.idle_timeout_s:g})",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=ConnectionLimits.read_timeout_s,
        metavar="S",
        help="a request's head, and then its body, must arrive within S s each; else 408 "
        f"(default {ConnectionLimits.read_timeout_s:g})",
    )


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """Resolve defaults and check the flags; bad input raises ``WanOtelError``."""
    model = model_from_args(args)
    if args.max_queue < 1:
        raise WanOtelError(f"--max-queue {args.max_queue}: must be 1 or more")
    if not math.isfinite(args.grace_seconds) or not 0 <= args.grace_seconds <= 3600:
        raise WanOtelError(f"--grace-seconds {args.grace_seconds}: must be 0 to 3600")
    check_port("--port", args.port)
    hours = args.retention_hours
    if not math.isfinite(hours) or not 0 <= hours <= 100 * 365 * 24:
        raise WanOtelError(
            f"--retention-hours {hours}: must be 0 (keep for ever) to {100 * 365 * 24} (100 years)"
        )
    timeouts = (("--idle-timeout", args.idle_timeout), ("--read-timeout", args.read_timeout))
    for flag, value in timeouts:
        if not math.isfinite(value) or not 0.1 <= value <= 3600:
            raise WanOtelError(f"{flag} {value}: must be 0.1 to 3600 seconds")
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    if api_key is not None and not api_key.strip():
        source = "--api-key" if args.api_key is not None else f"${API_KEY_ENV}"
        raise WanOtelError(f"{source} is empty; give a key or leave it unset")
    limits = ConnectionLimits(
        max_connections=_max_connections(args.max_connections),
        idle_timeout_s=args.idle_timeout,
        read_timeout_s=args.read_timeout,
    )
    store = RunStore(args.store or default_store_root())
    store.check_writable()
    engine = EngineConfig(model=model, store=store.root, record_prompt=args.record_prompt)
    return ServeConfig(
        engine=engine,
        host=args.host,
        port=args.port,
        max_queue=args.max_queue,
        grace_s=args.grace_seconds,
        api_key=api_key.strip() if api_key is not None else None,
        retention_s=hours * 3600 if hours > 0 else None,
        connections=limits,
    )


FILES_RESERVED = 256
"""File descriptors kept for the model, the store and telemetry, beside connections."""


def _max_connections(wanted: int) -> int:
    """Check ``--max-connections`` and raise the open-file limit to fit it."""
    if not 1 <= wanted <= 1_000_000:
        raise WanOtelError(f"--max-connections {wanted}: must be 1 to 1000000")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FILES_RESERVED
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise WanOtelError(
                f"--max-connections {wanted}: the open-file limit is {hard}; "
                f"give at most {hard - FILES_RESERVED}"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return wanted


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
        if config.api_key is not None:
            _say("an API key is required on /v1/ routes")
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
        running = server.queue.running() is not None
        _say(
            f"stopping: no new jobs; the running one has {config.grace_s:g} s to finish"
            if running
            else "stopping: no new jobs; none is running"
        )
        report = server.shutdown()
        _say(
            f"stopped: {failed + report.failed_queued} queued job(s) failed"
            + (f"; running job {report.stopped_running}" if report.stopped_running else "")
            + (f"; {report.dropped_spans} span(s) not delivered" if report.dropped_spans else "")
        )
        if report.worker_stuck:
            # Everything is on disk and flushed, but the worker (or the loader) is inside torch.
            # Interpreter teardown would destroy native thread pools under it (SIGABRT,
            # "terminate called without an active exception"): leave without teardown.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(ExitStatus.OK)
        return ExitStatus.OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
