"""``wan-otel compare``: real example runs (the H100 and H200 TI2V-5B runs differ in GPU, two
H200 runs of one configuration) and synthetic ones (the reference run, copied and slowed),
exit codes 0, 1 and 2, and the three formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.report.helpers import run_cli
from wan_otel.examples.reference_l40s import write_reference_run
from wan_otel.report.comparison import _percentile

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "runs"
H100 = "h100-ti2v-5b-random-none-10steps-20261126T231531Z"
H200 = "h200-ti2v-5b-random-none-10steps-20261128T224324Z"
H200_AGAIN = "h200-ti2v-5b-random-1gpu-10steps-20261128T235018Z"


def _compare(*argv: str, store: Path = EXAMPLES) -> tuple[int, str, str]:
    result = run_cli("compare", *argv, "--store", str(store))
    return result.code, result.out, result.err


def test_runs_on_other_gpus_are_refused_by_name() -> None:
    code, out, err = _compare(H100, H200)
    assert code == 2 and out == ""
    assert err == (
        f"wan-otel: runs {H100} and {H200} differ in configuration (GPU NVIDIA H100 80GB HBM3 "
        "-> NVIDIA H200): compare like with like, or give --force\n"
    )


def test_force_compares_them_and_names_the_difference() -> None:
    code, out, _ = _compare(H100, H200, "--force", "--tolerance", "50")
    assert code == 0
    assert "Differ (compared with --force): GPU NVIDIA H100 80GB HBM3 -> NVIDIA H200" in out
    assert "No regression beyond 50%." in out


def test_two_runs_of_one_configuration_within_the_tolerance_pass() -> None:
    code, out, _ = _compare(H200, H200_AGAIN, "--tolerance", "15")
    assert code == 0, out
    assert "Same:  model Wan2.2-TI2V-5B, size 1280x704, frames 121, steps 10" in out
    assert "No regression beyond 15%." in out


def test_a_tight_tolerance_flags_what_grew_beyond_it() -> None:
    """The second H200 run initialized in 2.11 s against 1.89 s (+11.6 %); all else within
    5 %: exit 1, and the JSON names the one regression."""
    code, out, _ = _compare(H200, H200_AGAIN, "--format", "json")
    assert code == 1
    body = json.loads(out)
    assert body["schema"] == "wan-otel.compare/v1" and body["tolerance_pct"] == 5.0
    assert body["regressions"] == ["stage.initialization"]
    rows = {r["key"]: r for r in body["rows"]}
    init = rows["stage.initialization"]
    assert init["regression"] and init["change_pct"] == pytest.approx(11.6, abs=0.1)
    assert rows["stage.preprocess"]["improved"]  # 66.6 ms -> 46.2 ms
    assert rows["sm.run"]["better"] is None and not rows["sm.run"]["regression"]
    assert rows["mfu.denoising"]["better"] == "higher"
    assert rows["energy.total"]["a"] == pytest.approx(23324.5, abs=1)


def _slowed_copy(store: Path, run_id: str, factor: float) -> None:
    """A copy of the reference run whose steps each end later by ``factor`` of their length
    (the loop and the root keep their windows: only the step figures move)."""
    write_reference_run(store, run_id)
    spans = store / run_id / "spans.jsonl"
    payload = json.loads(spans.read_text(encoding="utf-8"))
    for span in payload["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        if span["name"] == "wan.denoise.step":
            start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
            span["endTimeUnixNano"] = str(end + round((end - start) * (factor - 1)))
    spans.write_text(json.dumps(payload) + "\n", encoding="utf-8")


def test_slower_steps_are_regressions_and_the_same_run_is_none(tmp_path: Path) -> None:
    write_reference_run(tmp_path, "before")
    write_reference_run(tmp_path, "same")
    _slowed_copy(tmp_path, "slower", 1.08)
    code, out, _ = _compare("before", "same", store=tmp_path)
    assert code == 0 and "No regression beyond 5%." in out
    code, out, _ = _compare("before", "slower", "--format", "json", store=tmp_path)
    assert code == 1
    body = json.loads(out)
    # the steps' MFU falls with them; the loop's window, and so its MFU, did not move
    assert set(body["regressions"]) == {
        "step.mean", "step.p50", "step.p95", "step.first", "step.stable", "mfu.step",
    }  # fmt: skip
    assert {r["key"]: r for r in body["rows"]}["step.mean"]["change_pct"] == pytest.approx(8.0)
    code, _, _ = _compare("before", "slower", "--tolerance", "10", store=tmp_path)
    assert code == 0


def test_a_run_that_failed_against_one_that_completed_is_a_regression(tmp_path: Path) -> None:
    write_reference_run(tmp_path, "ok")
    write_reference_run(tmp_path, "failed")
    spans = tmp_path / "failed" / "spans.jsonl"
    payload = json.loads(spans.read_text(encoding="utf-8"))
    root = next(
        s for s in payload["resourceSpans"][0]["scopeSpans"][0]["spans"]
        if s["name"] == "wan.pipeline.generate"
    )  # fmt: skip
    root["status"] = {"code": 2, "message": "RuntimeError: CUDA out of memory"}
    spans.write_text(json.dumps(payload) + "\n", encoding="utf-8")
    code, out, _ = _compare("ok", "failed", store=tmp_path)
    assert code == 1
    assert "1 regression(s) beyond 5%: status ok -> error." in out


def test_markdown_and_ascii_formats(tmp_path: Path) -> None:
    write_reference_run(tmp_path, "a")
    write_reference_run(tmp_path, "b")
    code, out, _ = _compare("a", "b", "--format", "markdown", "--ascii", store=tmp_path)
    assert code == 0 and out.isascii()
    assert "| figure | A | B | change | verdict |" in out
    assert "| Step mean | 12.82 s | 12.82 s | +0.0% |  |" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("nope-1", H200), "nope-1"),
        ((H200, H200), f"RUN_A and RUN_B are both {H200!r}: give two runs"),
        ((H200, H200_AGAIN, "--tolerance", "-1"), "-1: must be a percentage from 0 to under 1000"),
        ((H200, H200_AGAIN, "--tolerance", "nan"), "nan: must be a percentage"),
        ((H200,), "the following arguments are required: RUN_B"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: tuple[str, ...], message: str) -> None:
    code, out, err = _compare(*argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


def test_runs_in_a_store_of_copies(tmp_path: Path) -> None:
    """The committed runs copied elsewhere compare the same (nothing reads docs/ paths)."""
    for run_id in (H200, H200_AGAIN):
        shutil.copytree(EXAMPLES / run_id, tmp_path / run_id)
    code, _, _ = _compare(H200, H200_AGAIN, "--tolerance", "15", store=tmp_path)
    assert code == 0


def test_percentiles_interpolate_between_ranks() -> None:
    assert _percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert _percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert _percentile([], 50) is None
