"""Bad input: one clear line, exit 2, no traceback; partial data reported with what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.report.helpers import run_cli
from wan_otel import semconv as sc
from wan_otel.examples.reference_l40s import reference_spans_payload, write_reference_run
from wan_otel.store.run_store import SAMPLES, SPANS, file_name

SPANS_FILE, SAMPLES_FILE = file_name(SPANS), file_name(SAMPLES)


def _report(store: Path, run_id: str, *extra: str) -> tuple[int, str, str]:
    result = run_cli("report", "--run-id", run_id, "--store", str(store), *extra)
    return result.code, result.out, result.err


def test_unknown_run_id_names_the_nearest(reference_store: Path) -> None:
    write_reference_run(reference_store, "reference-h100")
    code, out, err = _report(reference_store, "reference-l4Os")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("wan-otel: no run 'reference-l4Os'")
    assert "nearest: reference-l40s, reference-h100" in err
    assert "Traceback" not in err


def test_missing_store_and_invalid_id(tmp_path: Path) -> None:
    code, _, err = _report(tmp_path / "nowhere", "x1")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    code, _, err = _report(tmp_path, "../etc")
    assert code == 2 and "invalid run id" in err


def test_bad_flag_exits_2(reference_store: Path) -> None:
    code, _, err = _report(reference_store, "reference-l40s", "--format", "yaml")
    assert code == 2 and "invalid choice" in err


def test_torn_last_line_and_corrupt_line_are_skipped_with_a_note(reference_store: Path) -> None:
    folder = reference_store / "reference-l40s"
    with (folder / SPANS_FILE).open("a") as spans:
        spans.write('{"resourceSpans": [{"scopeSpa')  # writer killed mid-line
    samples = (folder / SAMPLES_FILE).read_text().splitlines()
    samples[5] = "garbage"
    (folder / SAMPLES_FILE).write_text("\n".join(samples) + "\n")
    code, out, err = _report(reference_store, "reference-l40s")
    assert code == 0, err
    assert "Total Latency:       593.45 s" in out
    assert f"{SPANS_FILE}: last line 2 is torn (incomplete write); skipped" in out
    assert f"{SAMPLES_FILE}: line 6 is not valid JSON; skipped" in out


def test_run_killed_before_its_root_span_ended(tmp_path: Path) -> None:
    payload = reference_spans_payload()
    spans = payload["resourceSpans"][0]["scopeSpans"][0]["spans"]
    # Keep initialization .. step 9: the process died in step 10.
    cut = next(
        i
        for i, s in enumerate(spans)
        if s["name"] == sc.SPAN_DENOISE_STEP
        and {"key": sc.DENOISE_STEP, "value": {"intValue": "10"}} in s["attributes"]
    )
    kept = [s for s in spans[:cut] if s["name"] != sc.SPAN_DENOISE]
    payload["resourceSpans"][0]["scopeSpans"][0]["spans"] = kept
    folder = tmp_path / "killed"
    folder.mkdir()
    text = json.dumps(payload).replace('"reference-l40s"', '"killed"')
    (folder / SPANS_FILE).write_text(text + "\n")
    code, out, err = _report(tmp_path, "killed", "--format", "json")
    assert code == 0, err
    body = json.loads(out)
    assert body["summary"]["status"] == "incomplete"
    assert body["summary"]["steps_done"] == 10
    assert body["summary"]["frames_per_s"] is None  # no VAE decode: no throughput claimed
    assert body["summary"]["avg_sm_pct"] is None
    assert any("no root span" in note for note in body["notes"])
    assert body["summary"]["sm_note"].startswith("no GPU samples were recorded for this run")
    for row in body["trace"]:
        assert row["sm_pct"] is None and row["load"] is None


def test_failed_run_shows_the_error(tmp_path: Path) -> None:
    payload = reference_spans_payload()
    spans = payload["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for span in spans:
        if span["name"] in (sc.SPAN_VAE_DECODE, sc.SPAN_GENERATE):
            span["status"] = {"code": "STATUS_CODE_ERROR", "message": "CUDA out of memory"}
            span["attributes"].append(
                {"key": sc.ERROR_TYPE, "value": {"stringValue": "OutOfMemoryError"}}
            )
    folder = tmp_path / "failed"
    folder.mkdir()
    (folder / SPANS_FILE).write_text(json.dumps(payload).replace('"reference-l40s"', '"failed"'))
    code, out, err = _report(tmp_path, "failed")
    assert code == 0, err
    assert "status error" in out
    assert "[Error]\n" + "-" * 80 + "\nOutOfMemoryError: CUDA out of memory\n" in out
    assert "ERROR OutOfMemoryError: CUDA out of memory" in out  # the VAE row
    assert out.count("CUDA out of memory") == 2
    assert "SM % and Load are n/a: no GPU samples were recorded" in out


def test_spans_file_with_no_spans_of_the_run(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / SPANS_FILE).write_text('{"resourceSpans": []}\n')
    code, _, err = _report(tmp_path, "empty")
    assert code == 2 and "has no spans carrying wan.run.id=empty" in err


@pytest.mark.parametrize("flag", ["--traceback"])
def test_traceback_flag_reraises(tmp_path: Path, flag: str) -> None:
    from wan_otel.errors import WanOtelError

    with pytest.raises(WanOtelError):
        run_cli("report", "--run-id", "nope", "--store", str(tmp_path), flag)


def test_runs_lists_newest_first(reference_store: Path, tmp_path: Path) -> None:
    write_reference_run(reference_store, "older")
    summary = reference_store / "older" / "run.json"
    body = json.loads(summary.read_text())
    body["start_ns"] -= 10**12
    summary.write_text(json.dumps(body))
    result = run_cli("runs", "--store", str(reference_store))
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].startswith("RUN ID")
    assert lines[1].split()[0] == "reference-l40s" and lines[2].split()[0] == "older"
    assert "1280x704" in lines[1] and "593.45" in lines[1] and lines[1].endswith("ok")
    assert run_cli("runs", "--store", str(tmp_path / "none")).code == 2


def test_reused_run_id_reports_the_last_trace_only(tmp_path: Path) -> None:
    first = json.dumps(reference_spans_payload())
    second = first.replace("5a11e40e2e2e4c1c8d3b7f5e9a0c1d2e", "6b22f51f3f3f5d2d9e4c8a6f0b1d2e3f")
    folder = tmp_path / "reference-l40s"
    folder.mkdir()
    (folder / SPANS_FILE).write_text(first + "\n" + second + "\n")
    code, out, err = _report(tmp_path, "reference-l40s", "--format", "json")
    assert code == 0, err
    body = json.loads(out)
    assert body["summary"]["steps_done"] == 30  # not 60
    assert "2 root spans carry this run id; the last one is reported" in body["notes"]
    assert any("belong to other traces (a reused run id?)" in n for n in body["notes"])


def test_runs_lists_a_run_that_has_no_spans_yet(reference_store: Path) -> None:
    (reference_store / "in-progress").mkdir()
    (reference_store / "in-progress" / SAMPLES_FILE).write_text("")
    result = run_cli("runs", "--store", str(reference_store))
    assert result.code == 0, result.err
    (line,) = [row for row in result.out.splitlines() if row.startswith("in-progress")]
    assert line.endswith("no spans yet")
