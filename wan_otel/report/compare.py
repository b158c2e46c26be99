"""``wan-otel compare RUN_A RUN_B``: run B against run A, a performance gate for CI.

Both runs are read as ``wan-otel report`` reads one (the store, or the trace backend and
Prometheus its environment names) and reported; ``comparison`` puts them side by side. Exit 0:
no regression beyond ``--tolerance``; 1: at least one; 2: bad input (an unknown run, a bad flag,
runs of different configurations without ``--force``).
"""

from __future__ import annotations

import argparse
import math
import sys

from wan_otel.errors import ExitStatus, WanOtelError
from wan_otel.report.build import build_report
from wan_otel.report.cli import (
    add_output_argument,
    add_peak_argument,
    add_store_argument,
    check_output,
    write_output,
)
from wan_otel.report.comparison import compare
from wan_otel.report.render_compare import render_json, render_markdown, render_text
from wan_otel.report.render_compare_html import render_compare_html
from wan_otel.report.sources import Sources, gather

DEFAULT_TOLERANCE_PCT = 5.0
REGRESSED = ExitStatus.REGRESSION
"""Exit 1: a regression (the gate failed); an unexpected failure exits 1 with a traceback."""


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    if not math.isfinite(value) or not 0 <= value < 1000:
        raise argparse.ArgumentTypeError(f"{text}: must be a percentage from 0 to under 1000")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="the reference run (before)")
    parser.add_argument("run_b", metavar="RUN_B", help="the run to check (after)")
    add_store_argument(parser)
    parser.add_argument(
        "--tolerance",
        type=_tolerance,
        default=DEFAULT_TOLERANCE_PCT,
        metavar="PCT",
        help=f"how much worse B may be than A, in percent (default {DEFAULT_TOLERANCE_PCT:g})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare runs of different configurations (model, size, frames, steps, guidance, "
        "GPU, offload, parallelism, precision) instead of refusing",
    )
    add_peak_argument(parser)
    parser.add_argument("--format", choices=("text", "json", "markdown", "html"), default="text")
    parser.add_argument("--ascii", action="store_true", help="plain ASCII text or Markdown")
    add_output_argument(parser)


def main(args: argparse.Namespace) -> int:
    if args.run_a == args.run_b:
        raise WanOtelError(f"RUN_A and RUN_B are both {args.run_a!r}: give two runs")
    if args.output is not None:
        check_output(args.output)
    sources = Sources.from_env(store=args.store)
    run_a, run_b = gather(args.run_a, sources).run, gather(args.run_b, sources).run
    a = build_report(run_a, peak_tflops=args.peak_tflops)
    b = build_report(run_b, peak_tflops=args.peak_tflops)
    result = compare(a, b, args.tolerance, forced=args.force)
    if result.differences and not args.force:
        raise WanOtelError(
            f"runs {args.run_a} and {args.run_b} differ in configuration "
            f"({'; '.join(result.differences)}): compare like with like, or give --force"
        )
    if args.format == "json":
        out = render_json(result)
    elif args.format == "markdown":
        out = render_markdown(result, ascii_only=args.ascii)
    elif args.format == "html":
        out = render_compare_html(result, (a, run_a), (b, run_b))
    else:
        out = render_text(result, ascii_only=args.ascii)
    if args.output is not None:
        write_output(args.output, out)
    else:
        sys.stdout.write(out)
    failed = result.regressions or result.status_regressed
    return REGRESSED if failed else ExitStatus.OK
