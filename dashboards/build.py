"""Writes the dashboards' JSON beside this module, or checks that the checked-in files match.

    python -m dashboards.build            # regenerate dashboards/*.json
    python -m dashboards.build --check    # exit 1 and name the files that differ

The JSON is grafana-foundation-sdk's output (classic dashboard model) read back once into the
SDK's typed model, so the files are in the model's canonical form (a fixed point of reading and
writing them, which the tests check); panel ids are numbered in order and keys sorted, so a
diff shows exactly what the code changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel

from dashboards import gpu, run, serving

HERE = Path(__file__).resolve().parent
BUILDERS: dict[str, Callable[[], Dashboard]] = {
    f"{serving.UID}.json": serving.build,
    f"{gpu.UID}.json": gpu.build,
    f"{run.UID}.json": run.build,
}
"""File name (the dashboard uid) -> builder."""


def render(builder: Callable[[], Dashboard]) -> str:
    """The dashboard as JSON text: ids numbered, keys sorted, newline at the end."""
    model = builder().build()
    next_id = 1
    for panel in model.panels or []:
        panel.id_val = next_id
        next_id += 1
        for inner in getattr(panel, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1
    plugins.register_default_plugins()  # typed panel options and queries when read back
    canonical = DashboardModel.from_json(json.loads(JSONEncoder().encode(model)))
    return JSONEncoder(sort_keys=True, indent=2).encode(canonical) + "\n"


def rendered() -> dict[str, str]:
    return {name: render(builder) for name, builder in BUILDERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = HERE / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        print(f"stale dashboards (run python -m dashboards.build): {', '.join(stale)}")
        return 1
    for name in stale:
        print(f"wrote dashboards/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
