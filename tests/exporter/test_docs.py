"""docs/exporter.md lists every metric the exporter's section of the naming contract defines."""

from __future__ import annotations

from pathlib import Path

from wan_otel import semconv

DOC = Path(__file__).resolve().parents[2] / "docs" / "exporter.md"


def test_every_exporter_metric_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    names = [
        v
        for k, v in vars(semconv).items()
        if isinstance(v, str) and v.startswith(("wan_gpu_", "wan_exporter_")) and k.isupper()
    ]
    assert len(names) >= 20
    assert [n for n in names if f"`{n}`" not in text] == []
