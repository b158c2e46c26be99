"""Known baselines: the committed runs match their own figures, a run of the same
configuration is measured against them, the README anchors match by GPU, model, size, GPU
count and step count, and nothing matches another configuration."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.report.helpers import run_cli
from wan_otel.report import build_report
from wan_otel.report.baselines import GENERATION_S, KNOWN, STEP_S, known_baseline
from wan_otel.report.model import Report
from wan_otel.report.render_text import render_text
from wan_otel.store import RunStore

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "runs"
COMMITTED = [k for k in KNOWN if k.source.startswith("committed run docs/examples/runs/")]


def _report(run_id: str) -> Report:
    return build_report(RunStore(EXAMPLES).read(run_id))


def _lookup(report: Report) -> object:
    return known_baseline(report.config, report.system, report.summary, report.stages)


@pytest.mark.parametrize("figure", COMMITTED, ids=lambda k: k.name)
def test_committed_runs_match_their_own_figure(figure: object) -> None:
    name = figure.name  # type: ignore[attr-defined]
    report = _report(name)
    known = report.known_baseline
    assert known is not None and known.name == name and known.figure == STEP_S
    assert known.measured == pytest.approx(figure.value, abs=5e-5)  # type: ignore[attr-defined]
    assert abs(known.delta_pct) < 0.01


def test_every_committed_run_folder_exists() -> None:
    assert {k.name for k in COMMITTED} <= {p.name for p in EXAMPLES.iterdir()}


def test_a_second_h200_run_is_measured_against_the_first() -> None:
    report = _report("h200-ti2v-5b-random-1gpu-10steps-20261128T235018Z")
    known = report.known_baseline
    assert known is not None
    assert known.name == "h200-ti2v-5b-random-none-10steps-20261128T224324Z"
    assert known.delta_pct == pytest.approx(100 * (2.4246 / 2.3711 - 1), abs=0.01)
    assert known.matched_on == (
        "H200 SXM, Wan2.2-TI2V-5B, 1280x704, 121 frames, 1 GPU(s), offload none"
    )
    text = render_text(report)
    assert "Known Baseline:      2.42 s/step after the first: +2.3% against 2.37 s" in text


def test_reference_l40s_run_matches_itself(reference_store: Path, reference_run_id: str) -> None:
    report = build_report(RunStore(reference_store).read(reference_run_id))
    known = report.known_baseline
    assert known is not None and known.name == "reference-l40s"
    assert round(known.measured, 2) == 12.82 and abs(known.delta_pct) < 0.01
    result = run_cli("report", "--run-id", reference_run_id, "--store", str(reference_store),
                     "--format", "json")  # fmt: skip
    body = json.loads(result.out)
    assert body["known_baseline"]["name"] == "reference-l40s"


def _as(report: Report, gpu: str, steps: int, total_s: float, init_s: float) -> Report:
    """The A14B run's report as if it ran ``steps`` steps on ``gpu`` in ``total_s``."""
    stages = [
        dataclasses.replace(s, duration_s=init_s) if s.key == "initialization" else s
        for s in report.stages
    ]
    return dataclasses.replace(
        report,
        system=dataclasses.replace(report.system, gpu_name=gpu),
        config=dataclasses.replace(report.config, num_steps=steps),
        summary=dataclasses.replace(report.summary, total_s=total_s),
        stages=stages,
    )


def test_readme_anchor_matches_by_gpu_model_size_and_steps() -> None:
    a14b = _report("h200-t2v-a14b-random-none-4steps-20261128T233037Z")
    h100 = _as(a14b, "NVIDIA H100 80GB HBM3", 40, 1100.0, 60.0)
    known = _lookup(h100)
    assert known is not None
    assert known.figure == GENERATION_S  # type: ignore[attr-defined]
    assert known.expected == 1041.5 and known.measured == pytest.approx(1040.0)  # type: ignore[attr-defined]
    assert known.name == "Wan2.2 README: Wan2.2-T2V-A14B, H100 SXM, 1 GPU(s)"  # type: ignore[attr-defined]
    a100 = _as(a14b, "NVIDIA A100-SXM4-80GB", 40, 3000.0, 0.0)
    assert known_baseline(a100.config, a100.system, a100.summary, a100.stages).expected == 2735.7  # type: ignore[union-attr]
    # 4 steps is not the README's 40: its total says nothing about this run
    assert _lookup(_as(a14b, "NVIDIA H100 80GB HBM3", 4, 110.0, 2.0)) is None


def test_nothing_matches_another_configuration() -> None:
    report = _report("h200-ti2v-5b-random-none-10steps-20261128T224324Z")
    other_gpu = dataclasses.replace(report.system, gpu_name="NVIDIA L4")
    assert known_baseline(report.config, other_gpu, report.summary, report.stages) is None
    smaller = dataclasses.replace(report.config, width=832, height=480)
    assert known_baseline(smaller, report.system, report.summary, report.stages) is None
    fp16 = dataclasses.replace(report.config, dtypes={"transformer": "float16"})
    assert known_baseline(fp16, report.system, report.summary, report.stages) is None
    failed = dataclasses.replace(report.summary, status="error")
    assert known_baseline(report.config, report.system, failed, report.stages) is None


def test_a_run_of_one_step_has_no_step_figure_to_compare() -> None:
    report = _report("h200-ti2v-5b-random-none-10steps-20261128T224324Z")
    one = dataclasses.replace(report.summary, steps_done=1)
    assert known_baseline(report.config, report.system, one, report.stages) is None
