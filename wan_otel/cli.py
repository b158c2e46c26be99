"""The ``wan-otel`` command: dispatch to subcommands and turn expected errors into exit codes.

Each subcommand lives in a module with ``add_arguments(parser)`` and ``main(args) -> int``;
modules are imported only when their command runs, so ``wan-otel report`` never imports torch
or NVML, and the core does not import the exporter or pipeline packages (layering).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn, Protocol, cast

from wan_otel import __version__
from wan_otel.errors import ExitStatus, WanOtelError


class CommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def main(self, args: argparse.Namespace) -> int: ...


COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "wan_otel.pipeline.runner.cli",
        "run a Wan2.2 generation with spans, metrics and GPU samples",
    ),
    "report": (
        "wan_otel.report.cli",
        "performance report of one run (local store, or a trace backend and Prometheus)",
    ),
    "compare": ("wan_otel.report.compare", "two runs side by side; exit 1 on a regression"),
    "runs": ("wan_otel.store.cli", "list the runs in the local store, newest first"),
    "exporter": ("wan_otel.exporter.cli", "serve NVML/GPM GPU metrics for Prometheus"),
    "serve": (
        "wan_otel.pipeline.serve.cli",
        "serve Wan2.2 generations over HTTP (OpenAI video API shape), each request a traced run",
    ),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad flag said in one line (and exit 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitStatus.BAD_INPUT, f"{self.prog}: {message} (see --help)\n")


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="wan-otel",
        description="Observability for Wan2.2 video diffusion.",
        epilog=f"commands:\n{lines}\n\n`wan-otel COMMAND --help` for a command's flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wan-otel {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv or ["--help"])
        return ExitStatus.BAD_INPUT
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}")
    module_name, help_ = COMMANDS[name]
    parser = OneLineParser(prog=f"wan-otel {name}", description=help_)
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    try:
        module = cast(CommandModule, importlib.import_module(module_name))
    except ImportError as exc:
        if (exc.name or "").startswith("wan_otel"):
            raise
        extra = {"run": "pipeline", "serve": "pipeline", "exporter": "exporter"}.get(name, "")
        print(
            f"wan-otel: `{name}` needs more packages ({exc.name} is missing): "
            f"pip install 'wan-otel[{extra}]'",
            file=sys.stderr,
        )
        return ExitStatus.BAD_INPUT
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    args.argv = rest  # the command's own flags, as given (a launcher passes them on)
    logging.basicConfig(level=logging.WARNING, format="wan-otel: %(levelname)s %(message)s")
    try:
        return module.main(args)
    except WanOtelError as exc:
        if args.traceback:
            raise
        print(f"wan-otel: {exc}", file=sys.stderr)
        return ExitStatus.BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`wan-otel runs | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
