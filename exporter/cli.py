"""``wan-otel exporter``: the GPU metrics sidecar. Builds the backend, sampler, collector and
HTTP server, then runs until SIGTERM or SIGINT (and exits within a second of it).

Never imports torch or diffusers; NVML is imported only when ``--backend nvml`` runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from wan_otel import semconv
from wan_otel.errors import ExitStatus, WanOtelError
from wan_otel.exporter.backend import GpuBackend
from wan_otel.exporter.collector import SnapshotCollector
from wan_otel.exporter.procinfo import ProcessResolver
from wan_otel.exporter.sampler import Sampler, check_interval
from wan_otel.exporter.server import ExporterServer, make_app

log = logging.getLogger(__name__)


def _interval(text: str) -> float:
    try:
        return check_interval(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="0.0.0.0", help="address to listen on (default: all, for scrapes)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=semconv.EXPORTER_DEFAULT_PORT,
        help=f"TCP port (default {semconv.EXPORTER_DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=0.5,
        metavar="SECONDS",
        help="seconds between GPU samples, at least 0.1 for GPM (default 0.5)",
    )
    parser.add_argument("--backend", choices=("nvml", "fake"), default="nvml")
    parser.add_argument(
        "--fake-profile",
        default="0.5",
        metavar="SPEC",
        help="fake backend: per-GPU duty cycles, comma-separated BUSY[/PERIOD_S] (default 0.5)",
    )
    parser.add_argument(
        "--fake-gpus", type=int, default=None, metavar="N", help="fake backend: GPU count"
    )
    parser.add_argument(
        "--no-processes", action="store_true", help="do not export per-process GPU memory"
    )


def build_backend(args: argparse.Namespace) -> GpuBackend:
    if args.backend == "fake":
        from wan_otel.exporter.fake import FakeBackend, parse_profiles

        try:
            return FakeBackend(parse_profiles(args.fake_profile, args.fake_gpus))
        except ValueError as exc:
            raise WanOtelError(str(exc)) from None
    from wan_otel.exporter.nvml import NvmlBackend

    return NvmlBackend()


def main(args: argparse.Namespace) -> int:
    backend = build_backend(args)
    pod, namespace = os.environ.get("POD_NAME", ""), os.environ.get("POD_NAMESPACE", "")
    sampler = Sampler(
        backend,
        args.interval,
        processes=not args.no_processes,
        resolver=ProcessResolver(own_pod=pod, own_namespace=namespace),
    )
    registry = CollectorRegistry()
    registry.register(
        SnapshotCollector(sampler, hostname=socket.gethostname(), pod=pod, namespace=namespace)
    )
    ProcessCollector(registry=registry)  # the exporter's own CPU and RSS
    try:
        server = ExporterServer(make_app(registry, sampler.ready), args.host, args.port)
    except OSError as exc:
        raise WanOtelError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        sampler.start()
        print(
            f"wan-otel exporter: serving http://{args.host}:{server.port}/metrics "
            f"({args.backend}, every {args.interval} s)",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        sampler.close(timeout_s=0.4)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ExitStatus.OK
