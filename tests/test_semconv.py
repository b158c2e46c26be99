"""The naming contract: docs in step, names follow the rules."""

from __future__ import annotations

import re
from pathlib import Path

from wan_otel import semconv
from wan_otel.semconv_doc import render

ROOT = Path(__file__).resolve().parents[1]


def test_docs_telemetry_md_is_generated_from_semconv() -> None:
    expected = render()
    actual = (ROOT / "docs" / "telemetry.md").read_text(encoding="utf-8")
    assert actual == expected, "run: python -m wan_otel.semconv_doc > docs/telemetry.md"


def _constants(prefix: str) -> dict[str, str]:
    return {k: v for k, v in vars(semconv).items() if k.startswith(prefix) and isinstance(v, str)}


def test_span_names_are_wan_component_operation() -> None:
    for name in _constants("SPAN_").values():
        assert re.fullmatch(r"wan\.[a-z_]+\.[a-z_]+", name), name


def test_prometheus_names_follow_the_rules() -> None:
    names = [
        v
        for k, v in vars(semconv).items()
        if isinstance(v, str) and v.startswith("wan_") and k.isupper()
    ]
    assert names
    for name in names:
        assert re.fullmatch(r"wan_[a-z0-9_]+", name), name
        assert "percent" not in name
        if name.endswith("_total"):
            assert not name.endswith("_ratio_total")


def test_attribute_keys_are_namespaced() -> None:
    keys = [v for k, v in vars(semconv).items() if isinstance(v, str) and v.startswith("wan.")]
    for key in keys:
        assert re.fullmatch(r"wan\.[a-z0-9_.]+", key), key
    assert semconv.weight_bytes_key("transformer") == "wan.weights.transformer.bytes"
