"""``wan-otel report``: one run's performance analysis from the store or from backends."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

from wan_otel.errors import WanOtelError
from wan_otel.report.build import build_report
from wan_otel.report.render_html import render_html
from wan_otel.report.render_json import render_json
from wan_otel.report.render_markdown import render_markdown
from wan_otel.report.render_perfetto import render_perfetto
from wan_otel.report.render_text import render_text
from wan_otel.report.sources import (
    PROMETHEUS_ENV,
    TRACES_API_ENV,
    TRACES_ENV,
    Sources,
    gather,
    parse_duration,
)
from wan_otel.store.run_store import STORE_ENV


def _positive(unit: str) -> Callable[[str], float]:
    """A flag's parser for a positive, finite number of ``unit`` (argparse: one line, exit 2)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text}: must be a positive number of {unit}")
        return value

    return parse


_seconds = _positive("seconds")
"""``--timeout``."""
peak_tflops = _positive("TFLOP/s")
"""``--peak-tflops``."""


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"local run store (default ${STORE_ENV} or ./wan-otel-runs)",
    )


def add_peak_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--peak-tflops",
        type=peak_tflops,
        default=None,
        metavar="TFLOPS",
        help="the GPU's dense BF16 peak for MFU, where the report's table has none or "
        "another is wanted (989.4 for an H100 SXM or H200)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", required=True, help="the run to analyse")
    add_store_argument(parser)
    parser.add_argument(
        "--traces",
        default=None,
        help="spans from a Collector file-exporter file (path) or a trace backend "
        f"(http URL) instead of the store (env {TRACES_ENV})",
    )
    parser.add_argument(
        "--traces-api",
        choices=("tempo", "jaeger"),
        default=None,
        help=f"API of the --traces URL (default tempo; env {TRACES_API_ENV})",
    )
    parser.add_argument(
        "--service",
        default=None,
        help="service name to search in Jaeger (default $OTEL_SERVICE_NAME or wan-otel)",
    )
    parser.add_argument(
        "--since", default="7d", help="how far back to search the trace backend (default 7d)"
    )
    parser.add_argument(
        "--prometheus",
        default=None,
        help=f"GPU samples from this Prometheus instead of the store (env {PROMETHEUS_ENV})",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="RUN_ID",
        help="a one-GPU run of the same generation (read from the same sources): the parallel "
        "efficiency of this multi-GPU run against it",
    )
    parser.add_argument("--timeout", type=_seconds, default=30.0, help="per-request timeout, s")
    add_peak_argument(parser)
    parser.add_argument(
        "--format", choices=("text", "json", "markdown", "html", "perfetto"), default="text"
    )
    add_output_argument(parser)
    parser.add_argument(
        "--ascii", action="store_true", help="plain ASCII text or Markdown (no symbols)"
    )


def main(args: argparse.Namespace) -> int:
    sources = Sources.from_env(
        store=args.store,
        traces=args.traces,
        traces_api=args.traces_api,
        service=args.service,
        prometheus=args.prometheus,
        since_s=parse_duration(args.since),
        timeout_s=args.timeout,
    )
    if args.output is not None:
        check_output(args.output)
    if args.baseline is not None and args.baseline == args.run_id:
        raise WanOtelError(f"--baseline {args.baseline} is the run itself: give a one-GPU run")
    run = gather(args.run_id, sources).run
    baseline = None
    if args.baseline is not None:
        baseline = gather(args.baseline, sources, with_samples=False).run
    report = build_report(run, baseline, peak_tflops=args.peak_tflops)
    if args.format == "json":
        out = render_json(report)
    elif args.format == "html":
        out = render_html(report, run)
    elif args.format == "perfetto":
        out = render_perfetto(report, run)
    elif args.format == "markdown":
        out = render_markdown(report, ascii_only=args.ascii)
    else:
        out = render_text(report, ascii_only=args.ascii)
    if args.output is None:
        sys.stdout.write(out)
    else:
        write_output(args.output, out)
    return 0


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="write to FILE instead of standard output",
    )


def check_output(path: Path) -> None:
    """``--output`` names a file in an existing folder (checked before any work)."""
    if path.is_dir():
        raise WanOtelError(f"--output {path}: is a folder; name a file")
    if not path.parent.is_dir():
        raise WanOtelError(f"--output {path}: folder {path.parent} does not exist")


def write_output(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise WanOtelError(f"--output {path}: cannot write ({exc.strerror})") from None
