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


def test_one_stage_table_in_run_order() -> None:
    stages = semconv.STAGES
    assert [s.order for s in stages] == list(range(1, len(stages) + 1))
    assert tuple(s.span for s in stages) == semconv.STAGE_SPANS
    # diffusers encodes the prompt, then prepares latents and timesteps, then denoises.
    assert [s.key for s in stages] == [
        "initialization", "text_encoding", "preprocess", "denoising", "vae_decode", "export",
    ]  # fmt: skip
    # The `stage` label values of wan_stage_duration_seconds since the first release: a new
    # spelling would start new Prometheus series and break dashboards over old data.
    assert [s.metric_label for s in stages] == [
        "pipeline.initialize", "text_encoder.encode", "pipeline.preprocess", "denoise.loop",
        "vae.decode", "pipeline.export",
    ]  # fmt: skip
    assert all(s.metric_label == s.span.removeprefix("wan.") for s in stages)
    assert len({s.label for s in stages}) == len({s.key for s in stages}) == len(stages)


def test_stage_lookups() -> None:
    denoise = semconv.stage_for_span(semconv.SPAN_DENOISE)
    assert denoise is not None and denoise.key == "denoising" and denoise.label == "Denoising"
    assert semconv.stage_for_span(semconv.SPAN_DENOISE_STEP) is None
