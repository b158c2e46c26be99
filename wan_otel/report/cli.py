"""``wan-otel report``: one run's performance analysis from the local run store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wan_otel.report.build import build_report
from wan_otel.report.render_json import render_json
from wan_otel.report.render_markdown import render_markdown
from wan_otel.report.render_text import render_text
from wan_otel.store.run_store import STORE_ENV, RunStore, default_store_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", required=True, help="the run to analyse")
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"run store folder (default ${STORE_ENV} or ./wan-otel-runs)",
    )
    parser.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    parser.add_argument("--ascii", action="store_true", help="plain ASCII text (no symbols)")


def main(args: argparse.Namespace) -> int:
    store = RunStore(args.store or default_store_root())
    report = build_report(store.read(args.run_id))
    if args.format == "json":
        out = render_json(report)
    elif args.format == "markdown":
        out = render_markdown(report)
    else:
        out = render_text(report, ascii_only=args.ascii)
    sys.stdout.write(out)
    return 0
