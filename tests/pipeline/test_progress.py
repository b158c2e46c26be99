"""The progress bar: each stage with its own time, steps counted when they end, preprocess
shown, one line per stage in a log and on a terminal, and the real ``wan-otel run``'s lines."""

from __future__ import annotations

import io
import re

import pytest

from wan_otel import semconv as sc
from wan_otel.cli import main
from wan_otel.pipeline.instrumentation.generation import Record
from wan_otel.pipeline.runner.progress import ProgressBar


class Clock:
    """Seconds the test sets."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(written: str) -> list[str]:
    """What a terminal shows: each line as left by its last carriage return and erase."""
    return [line.split("\r\033[K")[-1] for line in written.split("\n")]


ROOT = Record(sc.SPAN_GENERATE, None, 0)


def stage(name: str) -> Record:
    return Record(name, ROOT, 0)


def test_a_stage_shows_its_own_time_not_the_time_since_the_start() -> None:
    clock, log = Clock(), io.StringIO()
    bar = ProgressBar(3, log, clock=clock)
    clock.now += 7.0  # the run started long before initialization
    init = stage(sc.SPAN_INITIALIZE)
    bar.on_open(init)
    clock.now += 2.5
    bar.on_close(init)
    text = stage(sc.SPAN_TEXT_ENCODE)
    bar.on_open(text)
    clock.now += 0.0421
    bar.on_close(text)
    bar.close()
    assert log.getvalue().splitlines() == [
        "wan-otel [Initialization] ...",
        "wan-otel [Initialization] 2.50 s",
        "wan-otel [Text Encoding] ...",
        "wan-otel [Text Encoding] 42.1 ms",
    ]


def _denoise(bar: ProgressBar, clock: Clock, steps: int, seen: list[str], log: io.StringIO) -> None:
    loop = stage(sc.SPAN_DENOISE)
    bar.on_open(loop)
    for index in range(steps):
        step = Record(sc.SPAN_DENOISE_STEP, loop, 0, {sc.DENOISE_STEP: index})
        bar.on_open(step)
        seen.append(log.getvalue())  # what the log holds while the step runs
        clock.now += 1.0
        bar.on_close(step)
    bar.on_close(loop)


def test_a_step_counts_when_it_ends() -> None:
    clock, log = Clock(), io.StringIO()
    bar = ProgressBar(3, log, clock=clock)
    seen: list[str] = []
    _denoise(bar, clock, 3, seen, log)
    bar.close()
    assert "step 1/3" not in seen[0]  # step 1 runs: nothing done yet
    assert "step 3/3" not in seen[2]  # the last step runs: not finished
    assert log.getvalue().splitlines() == [
        "wan-otel [Denoising] ...",
        "wan-otel [Denoising] step 1/3 [########................] 1.00 s",
        "wan-otel [Denoising] step 2/3 [################........] 2.00 s",
        "wan-otel [Denoising] step 3/3 [########################] 3.00 s",
    ]


def test_a_log_gets_about_a_tenth_of_the_steps() -> None:
    clock, log = Clock(), io.StringIO()
    bar = ProgressBar(50, log, clock=clock)
    _denoise(bar, clock, 50, [], log)
    bar.close()
    done = [int(m[1]) for m in re.finditer(r"step (\d+)/50", log.getvalue())]
    assert done == [1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]


def test_preprocess_shows_when_it_ends_timed_from_the_stage_before() -> None:
    """The pipeline opens preprocess without telling listeners (it may be discarded), and
    closes it when the loop begins: the bar shows it then, with its own time."""
    clock, log = Clock(), io.StringIO()
    bar = ProgressBar(1, log, clock=clock)
    text = stage(sc.SPAN_TEXT_ENCODE)
    bar.on_open(text)
    clock.now += 1.0
    bar.on_close(text)
    clock.now += 0.25
    bar.on_close(stage(sc.SPAN_PREPROCESS))
    _denoise(bar, clock, 1, [], log)
    bar.close()
    assert log.getvalue().splitlines() == [
        "wan-otel [Text Encoding] ...",
        "wan-otel [Text Encoding] 1.00 s",
        "wan-otel [Preprocess] 0.25 s",
        "wan-otel [Denoising] ...",
        "wan-otel [Denoising] step 1/1 [########################] 1.00 s",
    ]


def test_text_encoding_resumed_for_the_negative_prompt_is_one_line() -> None:
    clock, log = Clock(), io.StringIO()
    bar = ProgressBar(1, log, clock=clock)
    text = stage(sc.SPAN_TEXT_ENCODE)
    bar.on_open(text)
    clock.now += 1.0
    bar.on_close(text)  # the prompt is encoded
    clock.now += 0.5
    bar.on_open(text)  # the pipeline reopens it for the negative prompt
    clock.now += 1.0
    bar.on_close(text)
    bar.close()
    assert log.getvalue().splitlines() == [
        "wan-otel [Text Encoding] ...",
        "wan-otel [Text Encoding] 2.50 s",
    ]


def test_a_failed_stage_says_so() -> None:
    clock, log = Clock(), io.StringIO()
    bar = ProgressBar(3, log, clock=clock)
    vae = stage(sc.SPAN_VAE_DECODE)
    bar.on_open(vae)
    clock.now += 0.5
    vae.fail(RuntimeError("VAE exploded"))
    bar.on_close(vae)
    bar.close()
    assert log.getvalue().splitlines()[-1] == "wan-otel [VAE Decoding] 0.50 s failed (RuntimeError)"


def test_a_terminal_keeps_one_line_per_finished_stage() -> None:
    clock, term = Clock(), Terminal()
    bar = ProgressBar(2, term, clock=clock)
    init = stage(sc.SPAN_INITIALIZE)
    bar.on_open(init)
    assert screen(term.getvalue()) == ["wan-otel [Initialization] ..."]
    clock.now += 3.0
    bar.on_close(init)
    _denoise(bar, clock, 2, [], term)
    assert screen(term.getvalue())[-1] == (
        "wan-otel [Denoising] step 2/2 [########################] 2.00 s"
    )
    bar.close()
    assert screen(term.getvalue()) == [
        "wan-otel [Initialization] 3.00 s",
        "wan-otel [Denoising] step 2/2 [########################] 2.00 s",
        "",
    ]


def test_wan_otel_run_shows_every_stage_once_with_its_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real tiny pipeline (prompt and negative prompt, three steps) through the CLI."""
    assert main(["run", "--preset", "tiny", "--seed", "3", "--no-store"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("wan-otel [")]
    duration = r"\d+\.\d+ (s|ms)"
    expected = [
        r"\[Initialization\] \.\.\.",
        rf"\[Initialization\] {duration}",
        r"\[Text Encoding\] \.\.\.",
        rf"\[Text Encoding\] {duration}",
        rf"\[Preprocess\] {duration}",
        r"\[Denoising\] \.\.\.",
        rf"\[Denoising\] step 1/3 \[#{{8}}\.{{16}}\] {duration}",
        rf"\[Denoising\] step 2/3 \[#{{16}}\.{{8}}\] {duration}",
        rf"\[Denoising\] step 3/3 \[#{{24}}\] {duration}",
        r"\[VAE Decoding\] \.\.\.",
        rf"\[VAE Decoding\] {duration}",
    ]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(f"wan-otel {pattern}", line), (line, pattern)
