"""Hostile files through the real CLI, in-process: a report with notes naming what was skipped,
or one error line and exit 2; never a traceback, never a hang, bounded memory.

The corpus in ``hostile/`` holds text files appended to the reference run's ``spans.jsonl``;
binary, huge and special files (invalid UTF-8, a 70 MiB line, FIFOs, links, unreadable files)
are made by the tests.
"""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from tests.report.helpers import CliResult, run_cli
from wan_otel import semconv as sc
from wan_otel.examples.reference_l40s import RUN_ID, T0_NS, TRACE_ID, reference_samples

HOSTILE = Path(__file__).parent / "hostile"
SPANS = "spans.jsonl"
SAMPLES = "gpu_samples.jsonl"
REFERENCE_TOTAL_S = 593.45
REFERENCE_SM_PCT = 74.2
S = 1_000_000_000


def _report(store: Path) -> CliResult:
    return run_cli("report", "--run-id", RUN_ID, "--store", str(store), "--format", "json")


def _notes(result: CliResult) -> list[str]:
    assert result.code == 0, result.err
    assert result.err == ""
    body = json.loads(result.out)
    assert body["summary"]["total_s"] == REFERENCE_TOTAL_S  # the run itself is intact
    return list(body["notes"])


def _one_error_line(result: CliResult) -> str:
    assert result.code == 2, result.out
    assert result.err.startswith("wan-otel: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    return result.err


def _has(notes: list[str], *parts: str) -> bool:
    return any(all(part in note for part in parts) for note in notes)


@pytest.mark.parametrize(
    ("corpus", "expected"),
    [
        ("deep_nesting.jsonl", ["line 2, line 3 are nested too deeply to parse; skipped"]),
        (
            "wrong_types.jsonl",
            [
                "has attributes that are not a list ({'wan.run.id': 'reference-l40s'})",
                "has an attribute key that is not a string (3)",
                "span 'start-list' have a startTimeUnixNano that is not an integer (first: 'abc')",
                "has a status that is not an object ('ERROR')",
                "has an unknown kind (1.5)",
                "has events that are not a list",
                "has a resource that is not an object (3)",
                "has scopes that are not a list",
                "has spans that are not a list ('none')",
                "are not OTLP traces (first: resourceSpans is not a list (5))",
            ],
        ),
        (
            "out_of_range_times.jsonl",
            [
                "span 'start-negative' have a startTimeUnixNano outside 1970..9999 (first: 1e+30)",
                "has an endTimeUnixNano outside 1970..9999 ('300000000000000000000')",
                "ends before it starts",
                "has an intValue outside 64 bits",
            ],
        ),
        (
            "not_json.jsonl",
            ["are not valid JSON", "has a startTimeUnixNano that is not an integer (nan)"],
        ),
    ],
)
def test_corpus_lines_are_skipped_and_named(
    reference_store: Path, corpus: str, expected: list[str]
) -> None:
    spans = reference_store / RUN_ID / SPANS
    with spans.open("ab") as out:
        out.write((HOSTILE / corpus).read_bytes())
    notes = _notes(_report(reference_store))
    for part in expected:
        assert _has(notes, SPANS, part), (part, notes)


def test_lone_surrogates_reach_no_renderer(reference_store: Path) -> None:
    spans = reference_store / RUN_ID / SPANS
    with spans.open("ab") as out:
        out.write((HOSTILE / "surrogates.jsonl").read_bytes())
    for fmt in ("text", "markdown", "json"):
        result = run_cli(
            "report", "--run-id", RUN_ID, "--store", str(reference_store), "--format", fmt
        )
        assert result.code == 0, result.err
        result.out.encode("utf-8")


def test_invalid_utf8_and_torn_lines(reference_store: Path) -> None:
    spans = reference_store / RUN_ID / SPANS
    with spans.open("ab") as out:
        out.write(b'{"resourceSpans": "\xff\xfe"}\n\x80\x81\n{"resourceSpans": [{"scopeSp')
    notes = _notes(_report(reference_store))
    assert _has(notes, SPANS, "line 2, line 3 are not valid UTF-8; skipped")
    assert _has(notes, SPANS, "last line 4 is torn (incomplete write); skipped")


def test_bad_samples_are_dropped_and_the_average_holds(reference_store: Path) -> None:
    rows: list[Any] = list(reference_samples())
    n = len(rows)
    rows[n // 4] = {**rows[n // 4], sc.SAMPLE_SM_ACTIVE: float("nan")}
    rows[n // 3] = {**rows[n // 3], sc.SAMPLE_SM_ACTIVE: -1.0}
    rows[n // 2] = {**rows[n // 2], sc.SAMPLE_SM_ACTIVE: 0.0}  # a counter going down
    rows.insert(n // 2, dict(rows[n // 2 - 1]))  # a repeated line
    rows.reverse()  # out of order throughout
    rows += [{sc.SAMPLE_TIME: "x"}, {**rows[0], sc.SAMPLE_TIME: 10**30}, "text", [1]]
    text = "".join(json.dumps(r) + "\n" for r in rows).replace("NaN", "Infinity", 1)
    (reference_store / RUN_ID / SAMPLES).write_text(text)
    result = _report(reference_store)
    notes = _notes(result)
    assert round(json.loads(result.out)["summary"]["avg_sm_pct"], 1) == REFERENCE_SM_PCT
    assert _has(notes, SAMPLES, "sm_active_s not a finite non-negative number", "dropped")
    assert _has(notes, SAMPLES, "sm_active_s out of line with its GPU's other samples")
    assert _has(notes, SAMPLES, "repeats an earlier sample of its GPU")
    assert _has(notes, SAMPLES, "are not a GPU sample")


def test_a_70_mib_line_is_skipped_in_bounded_memory(reference_store: Path) -> None:
    spans = reference_store / RUN_ID / SPANS
    with spans.open("ab") as out:
        out.write(b'{"resourceSpans": [{"x": "')
        block = b"a" * (1 << 20)
        for _ in range(70):
            out.write(block)
        out.write(b'"}]}\n')
    tracemalloc.start()
    try:
        result = _report(reference_store)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    notes = _notes(result)
    assert _has(notes, SPANS, "line 2 is longer than 64 MiB; skipped")
    assert peak < 24 << 20  # the whole report, against a 70 MiB line


def _in_thread_with_hang_guard(fifo: Path, *argv: str) -> CliResult:
    """Run the CLI on a thread. A reader that opens ``fifo`` blocks until a writer comes:
    if the CLI is still running after a generous wait, open the FIFO as a writer so the reader
    sees end-of-file, and fail (a liveness guard, not a timing assertion)."""
    results: list[CliResult] = []
    thread = threading.Thread(target=lambda: results.append(run_cli(*argv)), daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail(f"wan-otel {argv[0]} blocked opening the FIFO {fifo}")
    return results[0]


@pytest.mark.parametrize("name", [SPANS, SAMPLES, "run.json"])
def test_a_fifo_in_a_run_folder_never_hangs_runs_or_report(
    reference_store: Path, name: str
) -> None:
    fifo = reference_store / RUN_ID / name
    fifo.unlink()
    os.mkfifo(fifo)
    listed = _in_thread_with_hang_guard(fifo, "runs", "--store", str(reference_store))
    assert listed.code == 0 and RUN_ID in listed.out, listed.err
    assert "Traceback" not in listed.err
    result = _in_thread_with_hang_guard(
        fifo, "report", "--run-id", RUN_ID, "--store", str(reference_store), "--format", "json"
    )
    if name == SPANS:  # no spans: one line, exit 2
        _one_error_line(result)
    else:
        notes = _notes(result)
        if name == SAMPLES:
            assert _has(notes, SAMPLES, "not a regular file")


def test_samples_file_linked_out_of_the_store_is_not_followed(
    reference_store: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.jsonl"
    samples = reference_store / RUN_ID / SAMPLES
    outside.write_bytes(samples.read_bytes())
    samples.unlink()
    samples.symlink_to(outside)
    notes = _notes(_report(reference_store))
    assert _has(notes, SAMPLES, "link")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_spans_file(reference_store: Path) -> None:
    (reference_store / RUN_ID / SPANS).chmod(0)
    assert "Permission denied" in _one_error_line(_report(reference_store))


def test_a_folder_in_place_of_the_spans_file(reference_store: Path) -> None:
    # What root cannot be kept from reading with permissions: a non-regular file.
    spans = reference_store / RUN_ID / SPANS
    spans.unlink()
    spans.mkdir()
    (reference_store / RUN_ID / "run.json").unlink()
    _one_error_line(_report(reference_store))
    listed = run_cli("runs", "--store", str(reference_store))
    assert listed.code == 0 and "Traceback" not in listed.err


def test_runs_lists_a_store_full_of_hostile_runs(reference_store: Path) -> None:
    for corpus in sorted(HOSTILE.iterdir()):
        folder = reference_store / corpus.stem.replace("_", "-")
        folder.mkdir()
        (folder / SPANS).write_bytes(corpus.read_bytes())
        (folder / SAMPLES).write_bytes(b"\xff\n[" * 3 + b"\n")
    odd = reference_store / "odd-summary"
    odd.mkdir()
    (odd / "run.json").write_text('{"run_id": "odd-summary", "start_ns": 1e300}\n')
    result = run_cli("runs", "--store", str(reference_store))
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    for corpus in HOSTILE.iterdir():
        assert corpus.stem.replace("_", "-") in result.out


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_attribute_values_reach_the_report_without_a_crash(
    reference_store: Path, value: str
) -> None:
    # OTLP allows non-finite doubles, so the decoder keeps them; the report's typed
    # accessors must read them as "not measured".
    span = {
        "traceId": TRACE_ID,
        "spanId": "ef" * 8,
        "name": sc.SPAN_DENOISE_STEP,
        "startTimeUnixNano": str(T0_NS + S),
        "endTimeUnixNano": str(T0_NS + 2 * S),
        "attributes": [
            {"key": sc.RUN_ID, "value": {"stringValue": RUN_ID}},
            {"key": sc.DENOISE_STEP, "value": {"doubleValue": value}},
            {"key": sc.MEMORY_ALLOCATED_PEAK, "value": {"doubleValue": value}},
        ],
    }
    with (reference_store / RUN_ID / SPANS).open("a") as out:
        out.write(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}) + "\n")
    result = _report(reference_store)
    assert result.code == 0, result.err


def test_a_collector_file_that_is_a_fifo_is_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "traces.jsonl"
    os.mkfifo(fifo)
    result = _in_thread_with_hang_guard(fifo, "report", "--run-id", RUN_ID, "--traces", str(fifo))
    assert "cannot be read (not a regular file but a FIFO)" in _one_error_line(result)


def test_a_collector_file_with_the_corpus_is_reported_with_notes(
    reference_store: Path, tmp_path: Path
) -> None:
    traces = tmp_path / "traces.jsonl"
    with traces.open("wb") as out:
        for corpus in sorted(HOSTILE.iterdir()):
            out.write(corpus.read_bytes())
        out.write((reference_store / RUN_ID / SPANS).read_bytes())
    link = tmp_path / "current.jsonl"  # a file the user names is followed through a link
    link.symlink_to(traces)
    result = run_cli("report", "--run-id", RUN_ID, "--traces", str(link), "--format", "json")
    notes = _notes(result)
    assert _has(notes, "current.jsonl", "are nested too deeply to parse; skipped")
    assert _has(notes, "current.jsonl", "have a startTimeUnixNano outside 1970..9999")
