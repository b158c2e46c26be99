"""``wan-otel exporter``: the GPU metrics sidecar. Checks every flag, builds the backend,
sampler, collector and HTTP server, then runs until SIGTERM or SIGINT (and exits within a second
of it). A bad flag, a busy port or an address that cannot be bound is one line and exit 2.

Never imports torch or diffusers; NVML is imported only when ``--backend nvml`` runs.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from wan_otel import semconv
from wan_otel.errors import ExitStatus, WanOtelError
from wan_otel.exporter.backend import GpuBackend
from wan_otel.exporter.collector import SnapshotCollector
from wan_otel.exporter.exposition import Exposition, Throttled
from wan_otel.exporter.gauges import DEFAULT_GAUGE_INTERVAL_S, MAX_GAUGE_INTERVAL_S
from wan_otel.exporter.procinfo import ProcessResolver
from wan_otel.exporter.sampler import MAX_INTERVAL_S, MIN_INTERVAL_S, Sampler, check_interval
from wan_otel.exporter.server import ExporterServer, ServerLimits, make_app

log = logging.getLogger(__name__)


MAX_FAKE_GPUS = 256
MAX_TIMEOUT_S = 3600.0
MAX_ENERGY_INTERVAL_S = 300.0
DEFAULT_ENERGY_INTERVAL_S = 5.0
"""The energy counter costs 2.4-2.9 ms of CPU a read (H100/H200): read every 5 s, carried
between readings by power (``energy_schedule``)."""


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _port(text: str) -> int:
    port = _integer(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535 (0 picks a free one)")
    return port


def _interval(text: str) -> float:
    try:
        return check_interval(_number(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timeout(text: str) -> float:
    seconds = _number(text)
    if math.isnan(seconds) or not 0 < seconds <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"timeout {text} s is outside (0, {MAX_TIMEOUT_S:g}] seconds"
        )
    return seconds


def _schedule(what: str, high: float, every_sample: str) -> Callable[[str], float]:
    """A parser for how often something is read: 0 (every sample) to ``high`` seconds."""

    def parse(text: str) -> float:
        seconds = _number(text)
        if math.isnan(seconds) or not 0 <= seconds <= high:
            raise argparse.ArgumentTypeError(
                f"{what} {text} s is outside 0..{high:g} seconds (0 {every_sample})"
            )
        return seconds

    return parse


def _count(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        n = _integer(text)
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"{what} {n} is outside {low}..{high}")
        return n

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    limits = ServerLimits()
    parser.add_argument(
        "--host", default="0.0.0.0", help="address to listen on (default: all, for scrapes)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=semconv.EXPORTER_DEFAULT_PORT,
        help=f"TCP port (default {semconv.EXPORTER_DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=0.5,
        metavar="SECONDS",
        help=f"seconds between GPU samples, {MIN_INTERVAL_S:g} (GPM's floor) to "
        f"{MAX_INTERVAL_S:g} (default 0.5)",
    )
    parser.add_argument(
        "--energy-interval",
        type=_schedule("energy interval", MAX_ENERGY_INTERVAL_S, "reads the counter every sample"),
        default=DEFAULT_ENERGY_INTERVAL_S,
        metavar="SECONDS",
        help="read the GPU energy counter (2-3 ms of CPU a call) at most this often and carry "
        "it between readings by the power readings; 0 reads it every sample "
        f"(default {DEFAULT_ENERGY_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--gauge-interval",
        type=_schedule("gauge interval", MAX_GAUGE_INTERVAL_S, "reads them every sample"),
        default=DEFAULT_GAUGE_INTERVAL_S,
        metavar="SECONDS",
        help="read the state gauges (temperature, clocks, clock events, ECC, per-process "
        "memory: seven NVML calls a GPU) at most this often; activity, power and memory are "
        f"read every sample; 0 reads them every sample (default {DEFAULT_GAUGE_INTERVAL_S:g})",
    )
    parser.add_argument("--backend", choices=("nvml", "fake"), default="nvml")
    parser.add_argument(
        "--fake-profile",
        default=None,
        metavar="SPEC",
        help="fake backend: per-GPU duty cycles, comma-separated BUSY[/PERIOD_S] (default 0.5)",
    )
    parser.add_argument(
        "--fake-gpus",
        type=_count(1, MAX_FAKE_GPUS, "GPU count"),
        default=None,
        metavar="N",
        help=f"fake backend: GPU count, 1..{MAX_FAKE_GPUS} (default: one per profile)",
    )
    parser.add_argument(
        "--no-processes", action="store_true", help="do not export per-process GPU memory"
    )
    http = parser.add_argument_group("HTTP limits")
    http.add_argument(
        "--max-connections",
        type=_count(1, 65536, "connection limit"),
        default=limits.max_connections,
        metavar="N",
        help="open connections at most; one more is answered 503 "
        f"(default {limits.max_connections})",
    )
    for flag, default, meaning in (
        ("--header-timeout", limits.header_timeout_s, "for a request head to arrive"),
        ("--idle-timeout", limits.idle_timeout_s, "a kept-alive connection may wait idle"),
        ("--write-timeout", limits.write_timeout_s, "for a client to take its response"),
    ):
        http.add_argument(
            flag,
            type=_timeout,
            default=default,
            metavar="SECONDS",
            help=f"seconds {meaning} (default {default:g}; at most {MAX_TIMEOUT_S:g})",
        )


def check_arguments(args: argparse.Namespace) -> None:
    """What argparse cannot check flag by flag: the fake-only flags need the fake backend."""
    if args.backend != "fake":
        for flag in ("fake_profile", "fake_gpus"):
            if getattr(args, flag) is not None:
                name = "--" + flag.replace("_", "-")
                raise WanOtelError(f"{name} needs --backend fake (the backend is {args.backend})")


def build_backend(args: argparse.Namespace) -> GpuBackend:
    if args.backend == "fake":
        from wan_otel.exporter.fake import FakeBackend, parse_profiles

        try:
            spec = "0.5" if args.fake_profile is None else args.fake_profile
            return FakeBackend(
                parse_profiles(spec, args.fake_gpus),
                energy_interval_s=args.energy_interval,
                gauge_interval_s=args.gauge_interval,
            )
        except ValueError as exc:
            raise WanOtelError(str(exc)) from None
    from wan_otel.exporter.nvml import NvmlBackend

    return NvmlBackend(energy_interval_s=args.energy_interval, gauge_interval_s=args.gauge_interval)


def main(args: argparse.Namespace) -> int:
    check_arguments(args)
    backend = build_backend(args)
    pod, namespace = os.environ.get("POD_NAME", ""), os.environ.get("POD_NAMESPACE", "")
    registry = CollectorRegistry()
    exposition = Exposition(registry)
    sampler = Sampler(
        backend,
        args.interval,
        processes=not args.no_processes,
        resolver=ProcessResolver(own_pod=pod, own_namespace=namespace),
        # Each sample is encoded once, here on the sampler's thread, not on a scrape's path.
        on_sample=lambda _snapshot: exposition.prepare(),
    )
    registry.register(
        SnapshotCollector(sampler, hostname=socket.gethostname(), pod=pod, namespace=namespace)
    )
    # The exporter's own CPU and RSS, read from /proc at most once a second, not per scrape.
    registry.register(Throttled(ProcessCollector(registry=None), max_age_s=1.0))
    limits = ServerLimits(
        max_connections=args.max_connections,
        header_timeout_s=args.header_timeout,
        idle_timeout_s=args.idle_timeout,
        write_timeout_s=args.write_timeout,
    )
    try:
        server = ExporterServer(
            make_app(exposition, sampler.ready), args.host, args.port, limits=limits
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WanOtelError(f"cannot listen on {args.host}:{args.port}: {reason}") from None

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
