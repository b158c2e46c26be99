"""The reference L40S run: every right figure reproduced, every listed defect corrected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.report.helpers import run_cli
from wan_otel.report import build_report, render_json, render_text
from wan_otel.report.model import Report
from wan_otel.store import RunStore

GOLDEN = Path(__file__).parent / "golden" / "reference-l40s"
UPDATE = os.environ.get("WAN_OTEL_UPDATE_GOLDEN") == "1"


@pytest.fixture
def report(reference_store: Path, reference_run_id: str) -> Report:
    return build_report(RunStore(reference_store).read(reference_run_id))


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("fmt", "extra", "golden"),
    [
        ("text", (), "report.txt"),
        ("text", ("--ascii",), "report.ascii.txt"),
        ("json", (), "report.json"),
        ("markdown", (), "report.md"),
    ],
)
def test_cli_output_matches_golden(
    reference_store: Path, reference_run_id: str, fmt: str, extra: tuple[str, ...], golden: str
) -> None:
    result = run_cli(
        "report",
        "--run-id",
        reference_run_id,
        "--store",
        str(reference_store),
        "--format",
        fmt,
        *extra,
    )
    assert result.code == 0, result.err
    assert result.err == ""
    _golden(golden, result.out)


def test_figures_the_reference_got_right(report: Report) -> None:
    s = report.summary
    assert s.total_s == pytest.approx(593.45)
    assert s.step_s_mean == pytest.approx(384.59 / 30)  # 12.82 s/step
    assert round(s.step_s_mean, 2) == 12.82
    assert round(s.steps_per_s or 0, 2) == 0.08
    assert s.step_s_first == pytest.approx(12.74)
    assert round(s.step_s_stable or 0, 2) == 12.82
    # Throughput excludes initialization: 161 frames / (T5 + DiT + VAE).
    assert s.throughput_window_s == pytest.approx(36.44 + 384.6001 + 45.86, abs=1e-3)
    assert round(s.frames_per_s or 0, 2) == 0.34
    assert round(s.mpx_per_s or 0, 2) == 0.31
    assert s.peak_memory_gb == pytest.approx(31.27, abs=1e-6)
    assert round(s.peak_memory_pct or 0, 1) == 70.4
    stages = {line.key: line for line in report.stages}
    assert stages["denoising"].duration_s == pytest.approx(384.60, abs=1e-3)
    assert stages["text_encoding"].duration_s == pytest.approx(36.44)
    assert stages["vae_decode"].duration_s == pytest.approx(45.86)
    assert report.memory.weights_gb["transformer"] == pytest.approx(18.70, abs=1e-6)
    assert report.memory.vae_peak_gb == pytest.approx(23.54, abs=1e-6)
    steps = [row for row in report.trace if row.name.startswith("Step ")]
    assert [round(row.sm_pct or -1, 1) for row in steps[:3]] == [94.9, 100.0, 100.0]


def test_defects_of_the_reference_are_corrected(report: Report) -> None:
    s = report.summary
    # Avg GPU activity was 0.0 %: ours is time-weighted over the run from the samples.
    assert round(s.avg_sm_pct or 0, 1) == 74.2
    assert s.load_sm_s == pytest.approx(593.45 * 0.742, rel=1e-6)
    # Load was 0.0 on every row: ours is duration x SM % / 100.
    for row in report.trace:
        if row.sm_pct is not None:
            assert row.load == pytest.approx(row.duration_s * row.sm_pct / 100)
    assert sum(row.load or 0 for row in report.trace if row.name.startswith("Step ")) > 370
    # DiT activation peak was 0.00 GB: ours is step peak minus memory at step start.
    assert report.memory.dit_activation_peak_gb == pytest.approx(31.11 - 21.34, abs=1e-6)
    # S26_Loading showed SM 100 % for a 0.00 s window: the 30 no-op transfers fold into one
    # row with no SM figure.
    (transfers,) = [row for row in report.trace if "transfer" in row.name.lower()]
    assert transfers.name == "30 no-op transfers" and transfers.sm_pct is None
    # Stages summed to 557 s of 593 s: an explicit unattributed line closes the breakdown.
    other = next(line for line in report.stages if line.key == "other")
    assert other.duration_s == pytest.approx(36.4089, abs=1e-3)
    assert sum(line.share_pct or 0 for line in report.stages) == pytest.approx(100.0)
    # Two totals (587.94 vs 593.45): one root span, one total.
    totals = [row for row in report.trace if row.name == "Total (root span)"]
    assert len(totals) == 1 and totals[0].duration_s == pytest.approx(s.total_s)
    # "ViT-Optimized" title: ours comes from the run's own attributes.
    assert "DiT" in report.title and "ViT" not in report.title


def test_text_is_utf8_without_mojibake_and_ascii_mode_is_plain(report: Report) -> None:
    text = render_text(report)
    assert "âœ" not in text and "ðŸ" not in text  # UTF-8 read as cp1252
    assert "Mem Δ" in text
    text.encode("utf-8")
    plain = render_text(report, ascii_only=True)
    assert plain.isascii()
    assert "Mem delta" in plain and "+/-" in plain


def test_json_schema_keys(report: Report) -> None:
    body = json.loads(render_json(report))
    assert {
        "run_id",
        "system",
        "config",
        "summary",
        "stages",
        "memory",
        "recommendations",
        "trace",
    } <= set(body)
    assert {
        "total_s",
        "step_s_mean",
        "steps_per_s",
        "frames_per_s",
        "mpx_per_s",
        "peak_memory_gb",
        "vram_gb",
        "avg_sm_pct",
    } <= set(body["summary"])
    for row in body["trace"]:
        assert {
            "name",
            "duration_s",
            "sm_pct",
            "load",
            "mem_start_gb",
            "mem_end_gb",
            "peak_mem_gb",
            "mem_delta_gb",
            "comment",
        } <= set(row)


def test_recommendations_are_quantified(report: Report) -> None:
    rules = {rec.rule: rec.text for rec in report.recommendations}
    # Offload moved 0 B in 10 ms: nothing to say (test_rough_edges covers the offload rule).
    assert set(rules) == {"idle_gpu", "unattributed", "initialization", "compute_bound"}
    assert "36.41 s" in rules["unattributed"] and "30.40 s" in rules["unattributed"]
    assert "90.14 s" in rules["initialization"]
    assert "38.46 s" in rules["compute_bound"]  # 10 % of 384.60 s
    assert "warmup" not in rules  # 12.74 s first step vs 12.82 s: nothing to say
    assert "memory_headroom" not in rules  # 70.4 % of VRAM
