"""The span exporter that writes the local run store."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from wan_otel import semconv as sc
from wan_otel.store import RunStore
from wan_otel.store.span_exporter import UNASSIGNED, RunStoreSpanExporter


def test_spans_are_routed_by_run_id_and_the_root_closes_the_run(tmp_path: Path) -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(RunStoreSpanExporter(tmp_path)))
    tracer = provider.get_tracer("t")
    for run_id in ("run-a", "run-b"):
        attrs = {
            sc.RUN_ID: run_id,
            sc.REQUEST_WIDTH: 64,
            sc.REQUEST_HEIGHT: 32,
            sc.REQUEST_NUM_FRAMES: 9,
            sc.REQUEST_NUM_STEPS: 3,
            sc.MODEL_NAME: "tiny",
        }
        with (
            tracer.start_as_current_span(sc.SPAN_GENERATE, attributes=attrs),
            tracer.start_as_current_span(sc.SPAN_TEXT_ENCODE, attributes={sc.RUN_ID: run_id}),
        ):
            pass
    with tracer.start_as_current_span("stray"):
        pass
    provider.shutdown()
    store = RunStore(tmp_path)
    assert store.run_ids() == ["run-a", "run-b"]  # _unassigned is not a run
    data = store.read("run-a")
    assert sorted(s.name for s in data.spans) == [sc.SPAN_GENERATE, sc.SPAN_TEXT_ENCODE]
    assert data.warnings == []
    summary = json.loads((tmp_path / "run-a" / "run.json").read_text())
    assert summary["resolution"] == "64x32" and summary["status"] == "ok"
    assert summary["num_steps"] == 3 and summary["total_s"] > 0
    assert (tmp_path / UNASSIGNED / "spans.jsonl").read_text().count("stray") == 1


def test_export_after_shutdown_fails_without_raising(tmp_path: Path) -> None:
    exporter = RunStoreSpanExporter(tmp_path)
    exporter.shutdown()
    assert exporter.export([]).name == "FAILURE"
