"""The report's rough edges, each fixed: durations by magnitude, no recommendation on zero
figures, n/a without units, one stage order, shares that add up, a failed run's error once,
one name for NVML utilization, --ascii in Markdown, one minus sign, the longest gap's own
memory change, no-op transfers folded."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tests.report.helpers import run_cli
from wan_otel import semconv as sc
from wan_otel.report import build_report, render_json, render_markdown, render_text
from wan_otel.report.formatting import duration, rounded_shares, shorten
from wan_otel.report.model import Report
from wan_otel.store import RunStore
from wan_otel.store.otlp_json import STATUS_ERROR, SpanRecord
from wan_otel.store.run_store import RunData
from wan_otel.store.samples import GpuSample

S = 1_000_000_000
T0 = 1_700_000_000 * S
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "runs"
H100_OFFLOAD = next(
    p.name for p in EXAMPLES.iterdir() if p.name.startswith("h100-") and "-model-10steps-" in p.name
)


def _reference(store: Path, run_id: str) -> RunData:
    return RunStore(store).read(run_id)


def _fast_run(step_s: list[float], tail_s: float, offload: str = "none") -> RunData:
    """A CPU-sized run: stages of milliseconds, then ``tail_s`` of export."""
    spans: list[SpanRecord] = []
    ids = iter(range(2, 1000))
    root_id = f"{1:016x}"

    def add(name: str, start: int, end: int, parent: str, **attrs: object) -> SpanRecord:
        record = SpanRecord(
            "b" * 32, f"{next(ids):016x}", parent, name, start, end, {sc.RUN_ID: "fast", **attrs}
        )  # type: ignore[arg-type]
        spans.append(record)
        return record

    t = T0
    add(sc.SPAN_INITIALIZE, t, t + S // 100, root_id)
    t += S // 100
    text = add(sc.SPAN_TEXT_ENCODE, t, t + 4_210_000, root_id)  # 4.21 ms
    add(
        sc.SPAN_WEIGHT_TRANSFER,
        t,
        t + 1_000_000,
        text.span_id,
        **{sc.COMPONENT_NAME: "text_encoder", sc.TRANSFER_BYTES: 480_000},
    )
    t += 4_210_000
    add(sc.SPAN_PREPROCESS, t, t + 421_000, root_id)  # 0.421 ms
    t += 421_000
    loop = add(sc.SPAN_DENOISE, t, t + int(sum(step_s) * S), root_id)
    for index, seconds in enumerate(step_s):
        add(sc.SPAN_DENOISE_STEP, t, t + int(seconds * S), loop.span_id, **{sc.DENOISE_STEP: index})
        t += int(seconds * S)
    add(sc.SPAN_VAE_DECODE, t, t + S // 50, root_id)
    t += S // 50
    add(sc.SPAN_EXPORT, t, t + int(tail_s * S), root_id)
    t += int(tail_s * S)
    root = SpanRecord(
        "b" * 32,
        root_id,
        None,
        sc.SPAN_GENERATE,
        T0,
        t,
        {sc.RUN_ID: "fast", sc.REQUEST_NUM_FRAMES: 9, sc.OFFLOAD_MODE: offload},
    )
    return RunData("fast", [*spans, root], [])


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (593.4512, "593.45 s"),
        (0.1, "0.10 s"),
        (0.0999, "99.9 ms"),
        (0.09996, "0.10 s"),
        (0.00999, "9.99 ms"),
        (0.0421, "42.1 ms"),
        (0.00421, "4.21 ms"),
        (0.000421, "0.421 ms"),
        (0.0, "0 s"),
        (None, "n/a"),
    ],
)
def test_duration_precision_follows_magnitude(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_fast_steps_print_in_milliseconds_not_as_zero() -> None:
    report = build_report(_fast_run([0.0421, 0.0301, 0.0302], tail_s=0.05))
    text, markdown = render_text(report), render_markdown(report)
    assert "0.00 s" not in text and "0.00 s" not in markdown
    assert "Generation Speed:    34.1 ms/step" in text
    assert "3. Preprocess             :   0.421 ms" in text
    assert re.search(r"^  Step 0 +\|   42\.1 ms \|", text, re.M)
    assert "| Text Encoding | 4.21 ms |" in markdown
    # A tiny model's 0.46 MiB move is not "0.00 GiB" either.
    assert "Transfer text_encoder   |   1.00 ms |" in text
    assert "| 0.46 MiB moved, 0.4 GiB/s" in text


# -- recommendations on zero figures -----------------------------------------------------------


def test_no_warmup_recommendation_for_a_negligible_warmup() -> None:
    # 12 ms of warm-up in a 100 s run prints as 0.0 % of it: nothing to recommend.
    quiet = build_report(_fast_run([0.042, 0.030, 0.030], tail_s=100.0))
    assert "warmup" not in {r.rule for r in quiet.recommendations}
    # The same warm-up in a 0.2 s run is 6 % of it, and is said in milliseconds.
    loud = build_report(_fast_run([0.042, 0.030, 0.030], tail_s=0.05))
    (warmup,) = [r.text for r in loud.recommendations if r.rule == "warmup"]
    assert "42.0 ms against 30.0 ms for the rest: 12.0 ms of warm-up" in warmup


def test_no_offload_recommendation_when_transfers_cost_nothing(
    reference_store: Path, reference_run_id: str
) -> None:
    # The reference's model offload moved 0 B in 30 transfers that took 10 ms of 593 s.
    report = build_report(_reference(reference_store, reference_run_id))
    assert report.config.offload == "model"
    assert "offload" not in {r.rule for r in report.recommendations}
    assert "0.0% of the run" not in render_text(report)


def test_offload_recommendation_when_transfers_cost_time(
    reference_store: Path, reference_run_id: str
) -> None:
    """The reference with its first transfer made a real 5 s move: the rule speaks, and says
    what it cannot know (the text encoder's and VAE's weights were not recorded)."""
    run = _reference(reference_store, reference_run_id)
    first = min(
        (s for s in run.spans if s.name == sc.SPAN_WEIGHT_TRANSFER), key=lambda s: s.start_ns
    )
    slow = dataclasses.replace(
        first,
        end_ns=first.start_ns + 5 * S,
        attributes={**first.attributes, sc.TRANSFER_BYTES: 10 << 30},
    )
    spans = [slow if s is first else s for s in run.spans]
    report = build_report(dataclasses.replace(run, spans=spans))
    (offload,) = [r.text for r in report.recommendations if r.rule == "offload"]
    assert offload.startswith("Offload=model: weight transfers took 5.00 s (0.8% of the run).")
    assert "at least 39.31 GiB" in offload
    assert "fits only if the text_encoder and vae weights (not recorded) take under 5.09 GiB" in (
        offload
    )


# -- n/a -----------------------------------------------------------------------------------------

_GLUED = re.compile(r"n/a ?(s\b|ms\b|%|GiB|frames|MPx|steps|SM-s|/step)")


def test_no_unit_is_glued_to_n_a() -> None:
    """A run killed in text encoding: no steps, no throughput, no allocator, no samples."""
    root = SpanRecord("c" * 32, "1" * 16, None, sc.SPAN_GENERATE, T0, T0 + 3 * S, {sc.RUN_ID: "k"})
    text = SpanRecord(
        "c" * 32, "2" * 16, "1" * 16, sc.SPAN_TEXT_ENCODE, T0, T0 + S, {sc.RUN_ID: "k"}
    )
    report = build_report(RunData("k", [root, text], []))
    for rendered in (render_text(report), render_markdown(report)):
        assert "n/a" in rendered
        assert not _GLUED.search(rendered), _GLUED.search(rendered)
    empty = build_report(
        RunData("z", [dataclasses.replace(root, end_ns=T0, attributes={sc.RUN_ID: "z"})], [])
    )
    assert "(n/a)" in render_text(empty) and not _GLUED.search(render_text(empty))


# -- one stage order -----------------------------------------------------------------------------


def test_breakdown_and_trace_table_list_stages_in_one_order(
    reference_store: Path, reference_run_id: str
) -> None:
    """The reference's preprocess span starts before its text encoding; both sections list
    the stages in the contract's run order."""
    report = build_report(_reference(reference_store, reference_run_id))
    labels = {stage.label for stage in sc.STAGES}
    breakdown = [line.label for line in report.stages if line.duration_s is not None]
    trace = [row.name for row in report.trace if row.depth == 0 and row.name in labels]
    assert breakdown[: len(trace)] == trace
    assert trace == ["Initialization", "Text Encoding", "Preprocess", "Denoising", "VAE Decoding"]


# -- shares ------------------------------------------------------------------------------------


def test_largest_remainder_rounding() -> None:
    # Rounded one by one these print 15.2 + 6.1 + 0.0 + 64.8 + 7.7 + 6.1 = 99.9.
    shares = [15.189, 6.140, 0.0002, 64.808, 7.728, 6.135]
    assert rounded_shares(shares) == [15.2, 6.2, 0.0, 64.8, 7.7, 6.1]
    assert rounded_shares([None, 50.0, 50.0]) == [None, 50.0, 50.0]
    assert rounded_shares([33.3333, 33.3333, 33.3334]) == [33.3, 33.3, 33.4]


@pytest.mark.parametrize("run_id", [*sorted(p.name for p in EXAMPLES.iterdir()), "reference"])
def test_printed_shares_add_up_to_the_printed_total(
    run_id: str, reference_store: Path, reference_run_id: str
) -> None:
    if run_id == "reference":
        store, run_id = reference_store, reference_run_id
    else:
        store = EXAMPLES
    text = run_cli("report", "--run-id", run_id, "--store", str(store)).out
    rows = re.findall(r"^\d\. .*?\( *([\d.]+)%\)", text, re.M)
    (total,) = re.findall(r"^   Total +: .*?\( *([\d.]+)%\)", text, re.M)
    assert total == "100.0"
    assert sum(round(float(r) * 10) for r in rows) == 1000, rows


# -- a failed run's error ------------------------------------------------------------------------

MESSAGE = (
    "TypeError: decode() got an unexpected keyword argument 'tile_sample_min_height'\n"
    "while decoding latents of shape (1, 48, 31, 44, 80) with tiling enabled"
)
ONE_LINE = " ".join(MESSAGE.split())


def _failed(store: Path, run_id: str) -> Report:
    """The reference failed in VAE decoding as wan-otel's pipeline writes it: error.type, and
    ``Type: message`` (two lines) in the status of the VAE span and the root."""
    run = _reference(store, run_id)
    spans = [
        dataclasses.replace(
            s,
            status_code=STATUS_ERROR,
            status_message=MESSAGE,
            attributes={**s.attributes, sc.ERROR_TYPE: "TypeError"},
        )
        if s.name in (sc.SPAN_VAE_DECODE, sc.SPAN_GENERATE)
        else s
        for s in run.spans
    ]
    return build_report(dataclasses.replace(run, spans=spans))


def test_a_failed_runs_error_is_printed_whole_once(
    reference_store: Path, reference_run_id: str
) -> None:
    report = _failed(reference_store, reference_run_id)
    assert report.summary.error == ONE_LINE
    for rendered in (render_text(report), render_markdown(report), render_json(report)):
        assert rendered.count(ONE_LINE) == 1
        assert "TypeError: TypeError" not in rendered
        assert "\nwhile decoding" not in rendered
    text = render_text(report)
    assert "[Error]\n" + "-" * 80 + "\n" + ONE_LINE + "\n" in text
    assert "status error" in text


def test_a_failed_rows_error_is_cut_at_a_word(reference_store: Path, reference_run_id: str) -> None:
    report = _failed(reference_store, reference_run_id)
    (vae,) = [row for row in report.trace if row.name == "VAE Decoding"]
    cut = vae.comment.removeprefix("ERROR ")
    assert cut.endswith("…") and len(cut) <= 60
    head = cut.removesuffix("…")
    assert ONE_LINE.startswith(head) and ONE_LINE[len(head)] == " "
    (total,) = [row for row in report.trace if row.name == "Total (root span)"]
    assert total.comment == "failed"  # its error is the VAE's, shown there


def test_shorten() -> None:
    assert shorten("short enough", 20) == "short enough"
    assert shorten("one two three four", 12) == "one two…"
    assert shorten("a\nb   c", 10) == "a b c"
    assert shorten("unbreakableword", 6) == "unbre…"


# -- names, ASCII, minus signs -----------------------------------------------------------------


def test_markdown_names_nvml_utilization_as_the_text_does(
    reference_store: Path, reference_run_id: str
) -> None:
    nvml = build_report(_reference(reference_store, reference_run_id))
    assert nvml.summary.sm_source == "nvml_util"
    assert "Avg GPU Busy:" in render_text(nvml)
    assert "| Avg GPU Busy | 74.2% (load 440.34 SM-s) |" in render_markdown(nvml)
    gpm = build_report(RunStore(EXAMPLES).read(H100_OFFLOAD))
    assert gpm.summary.sm_source == "gpm"
    assert "| Avg SM activity | 49.1% (load 34.04 SM-s) |" in render_markdown(gpm)


def test_ascii_reaches_markdown(reference_store: Path, reference_run_id: str) -> None:
    args = ("report", "--run-id", reference_run_id, "--store", str(reference_store))
    plain = run_cli(*args, "--format", "markdown", "--ascii")
    assert plain.code == 0 and plain.out.isascii()
    assert (
        "| name | time | SM % | load | mem start | mem end | peak | delta | comment |" in plain.out
    )
    assert not run_cli(*args, "--format", "markdown").out.isascii()


def test_one_minus_sign_in_every_format() -> None:
    """Negative figures use '-' everywhere: the trace table's memory deltas as the memory
    lines and Markdown do."""
    report = build_report(RunStore(EXAMPLES).read(H100_OFFLOAD))
    for rendered in (render_text(report), render_text(report, ascii_only=True)):
        assert "−" not in rendered
        assert re.search(r"^  Transfer text_encoder .*\|    -10\.58 \|", rendered, re.M)
    assert "−" not in render_markdown(report)


# -- the longest gap, no-op transfers ------------------------------------------------------------


def test_longest_gap_names_only_its_own_memory_change(
    reference_store: Path, reference_run_id: str
) -> None:
    report = build_report(_reference(reference_store, reference_run_id))
    assert len(report.memory.untraced_changes) == 2  # two gaps changed memory
    (gap,) = [r.text for r in report.recommendations if r.rule == "unattributed"]
    assert (
        "the longest gap is 30.40 s between Text Encoding and Denoising, where allocated "
        "memory changed by +18.71 GiB outside any span:"
    ) in gap
    assert "18.62" not in gap  # the gap between Denoising and VAE Decoding


def test_no_op_transfers_fold_into_one_row(reference_store: Path, reference_run_id: str) -> None:
    report = build_report(_reference(reference_store, reference_run_id))
    text = render_text(report)
    assert "no-op (0 B moved)" not in text
    (row,) = [row for row in report.trace if "no-op" in row.name]
    assert row.name == "30 no-op transfers" and row.depth == 1
    assert row.comment == "transformer: 0 B moved"
    assert row.duration_s == pytest.approx(0.0101, abs=5e-5)
    assert re.search(r"^  30 no-op transfers +\|   10\.1 ms \|", text, re.M)


def test_a_window_whose_samples_outrun_time_says_so() -> None:
    """Samples that put more than 110 % busy into a step give no SM figure, and the row says
    why rather than leaving an unexplained n/a."""
    run = _fast_run([2.0, 2.0], tail_s=0.0)
    (root,) = [s for s in run.spans if s.name == sc.SPAN_GENERATE]
    run.spans[run.spans.index(root)] = dataclasses.replace(
        root, attributes={**root.attributes, sc.GPU_UUID: "GPU-x"}
    )
    start = root.start_ns - S
    samples = [
        GpuSample(start + i * S // 2, 0, "GPU-x", "gpm", sm_active_s=0.65 * i) for i in range(20)
    ]  # 1.3 s busy a second
    report = build_report(dataclasses.replace(run, samples=samples))
    steps = [row for row in report.trace if row.name.startswith("Step ")]
    assert [(row.sm_pct, row.comment) for row in steps] == [(None, "GPU samples inconsistent")] * 2
