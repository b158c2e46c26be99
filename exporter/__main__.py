"""``python -m wan_otel.exporter``: the same as ``wan-otel exporter``."""

from __future__ import annotations

import sys

from wan_otel.cli import main

if __name__ == "__main__":
    sys.exit(main(["exporter", *sys.argv[1:]]))
