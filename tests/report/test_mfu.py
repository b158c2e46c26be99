"""MFU: the GPU peak table, the figures of the committed runs, the --peak-tflops flag, and
what is n/a (an unknown GPU, a float32 transformer, an unknown model)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.report.helpers import run_cli
from wan_otel.report import build_report
from wan_otel.report.compute import compute_figures
from wan_otel.report.gpu_peaks import gpu_family, gpu_peak
from wan_otel.report.model import Report
from wan_otel.report.spans import build_tree
from wan_otel.store import RunStore

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "runs"
H200_NONE = "h200-ti2v-5b-random-none-10steps-20261128T224324Z"


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", None),  # other clocks and power: not guessed
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA H200 NVL", None),
        ("NVIDIA H20", "H20"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", None),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4080", None),
        (None, None),
    ],
)
def test_gpu_names_map_to_their_family(name: str | None, family: str | None) -> None:
    assert gpu_family(name) == family


def test_peaks_are_dense_figures_with_sources() -> None:
    h200 = gpu_peak("NVIDIA H200")
    assert h200 is not None and (h200.bf16_tflops, h200.tf32_tflops) == (989.4, 494.7)
    l40s = gpu_peak("NVIDIA L40S")
    assert l40s is not None and l40s.bf16_tflops == 362.05 and "datasheet" in l40s.source


def _report(run_id: str, *flags: str) -> dict[str, object]:
    result = run_cli("report", "--run-id", run_id, "--store", str(EXAMPLES), "--format", "json",
                     *flags)  # fmt: skip
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def test_h200_mfu_is_flops_over_time_and_peak() -> None:
    body = _report(H200_NONE)
    compute, summary = body["compute"], body["summary"]
    stages = {s["key"]: s for s in body["stages"]}  # type: ignore[attr-defined]
    step_flops = 2 * 520_654_782_726_144
    assert compute["step_flops"] == summary["step_flops"] == step_flops  # type: ignore[index]
    expected = 100 * 10 * step_flops / (stages["denoising"]["duration_s"] * 989.4e12)
    assert summary["mfu_pct"] == pytest.approx(expected, abs=1e-3)  # type: ignore[index]
    assert 40 < summary["mfu_pct"] < 46  # type: ignore[index,operator]
    assert compute["step_s_at_peak"] == pytest.approx(step_flops / 989.4e12, abs=1e-4)  # type: ignore[index]
    assert compute["forwards"] == 20 and compute["tokens"] == 27_280  # type: ignore[index]
    assert compute["vae_precision"] == "TF32" and compute["vae_peak_tflops"] == 494.7  # type: ignore[index]


def test_peak_flag_sets_the_peak() -> None:
    base = _report(H200_NONE)
    flagged = _report(H200_NONE, "--peak-tflops", "800")
    compute = flagged["compute"]
    assert compute["peak_tflops"] == 800 and compute["peak_source"] == "--peak-tflops 800"  # type: ignore[index]
    ratio = flagged["summary"]["mfu_pct"] / base["summary"]["mfu_pct"]  # type: ignore[index]
    assert ratio == pytest.approx(989.4 / 800, rel=1e-4)


def test_bad_peak_flag_is_one_line() -> None:
    result = run_cli("report", "--run-id", H200_NONE, "--store", str(EXAMPLES),
                     "--peak-tflops=zero")  # fmt: skip
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and "'zero' is not a number of TFLOP/s" in result.err


def test_two_gpu_run_divides_by_both_peaks() -> None:
    body = _report("h200-ti2v-5b-random-ulysses2-10steps-20261128T235018Z")
    compute = body["compute"]
    assert compute["world_size"] == 2  # type: ignore[index]
    assert compute["step_s_at_peak"] == pytest.approx(2 * 520.65e12 / (2 * 989.4e12), rel=1e-3)  # type: ignore[index]


def _tree_and_report(run_id: str) -> tuple[object, Report]:
    run = RunStore(EXAMPLES).read(run_id)
    return build_tree(run.run_id, run.spans, []), build_report(run)


def test_unknown_gpu_float32_transformer_and_unknown_model_give_no_mfu() -> None:
    tree, report = _tree_and_report(H200_NONE)
    unknown = dataclasses.replace(report.system, gpu_name="NVIDIA B300")
    figures, steps = compute_figures(tree, report.config, unknown)  # type: ignore[arg-type]
    assert figures.mfu_pct is None and figures.step_flops == 2 * 520_654_782_726_144
    assert (
        figures.note
        == "no dense peak known for GPU NVIDIA B300: MFU n/a (give it with --peak-tflops)"
    )
    assert all(s.mfu_pct is None and s.flops for s in steps)
    fp32 = dataclasses.replace(report.config, dtypes={"transformer": "float32"})
    figures, _ = compute_figures(tree, fp32, report.system)  # type: ignore[arg-type]
    assert figures.mfu_pct is None and "float32 transformer" in (figures.note or "")
    other = dataclasses.replace(report.config, model="Wan2.1-T2V-14B")
    figures, _ = compute_figures(tree, other, report.system)  # type: ignore[arg-type]
    assert figures.step_flops is None
    assert figures.note == "no model configuration known for Wan2.1-T2V-14B: FLOPs and MFU n/a"


def test_a14b_steps_count_their_forwards() -> None:
    _, report = _tree_and_report("h200-t2v-a14b-random-none-4steps-20261128T233037Z")
    assert report.compute is not None and report.compute.forwards == 8
    assert [s.forwards for s in report.costs.steps] == [2, 2, 2, 2]
    assert 50 < (report.compute.step_mfu_pct or 0) < 55
