"""A run killed in the middle of its denoising loop keeps its spans: SIGKILL (the OOM killer)
leaves every step that ended about a second before; SIGTERM and SIGINT write everything, say
where they stopped the run and exit 128 + signal. Real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wan_otel import semconv as sc
from wan_otel.store import RunStore
from wan_otel.store.otlp_json import STATUS_ERROR

ROOT = Path(__file__).resolve().parents[2]
STEPS_BEFORE_KILL = 5


class RunProcess:
    """``python -m wan_otel run`` with more steps than it will ever finish."""

    def __init__(self, store: Path, run_id: str) -> None:
        command = [sys.executable, "-m", "wan_otel", "run", "--preset", "tiny", "--steps",
                   "10000", "--store", str(store), "--run-id", run_id]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.store, self.run_id = RunStore(store), run_id

    def steps_written(self) -> int:
        if not self.store.folder(self.run_id).spans().is_file():
            return 0
        spans = self.store.read(self.run_id).spans
        return sum(s.name == sc.SPAN_DENOISE_STEP for s in spans)

    def wait_for_steps(self, count: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.steps_written() < count:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            assert time.monotonic() < deadline, "the run wrote no steps"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[RunProcess]:
    process = RunProcess(tmp_path, "victim")
    try:
        process.wait_for_steps(STEPS_BEFORE_KILL)
        yield process
    finally:
        process.stop()


def _step_indexes(store: RunStore, run_id: str) -> list[int]:
    spans = store.read(run_id).spans
    return sorted(
        int(s.attributes[sc.DENOISE_STEP]) for s in spans if s.name == sc.SPAN_DENOISE_STEP
    )  # type: ignore[arg-type]


def test_sigkill_keeps_the_steps_written_before_the_kill(
    started: RunProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    started.proc.send_signal(signal.SIGKILL)
    assert started.proc.wait(30) == -signal.SIGKILL
    steps = _step_indexes(started.store, "victim")
    assert len(steps) >= STEPS_BEFORE_KILL
    why = (steps[:5], started.store.read("victim").warnings, started.proc.communicate()[1][-2000:])
    assert steps == list(range(len(steps))), why  # every step up to the last one written
    spans = started.store.read("victim").spans
    assert not [s for s in spans if s.name == sc.SPAN_GENERATE]  # the root never ended
    from wan_otel.cli import main

    assert main(["runs", "--store", str(started.store.root)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("victim") and "killed: ended without recording its end" in line
    assert main(["report", "--run-id", "victim", "--store", str(started.store.root)]) == 0
    report = capsys.readouterr().out
    assert "killed" in report
    assert "Wan2.2-TI2V-5B-tiny" in report and "10000 steps" in report


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_write_everything_and_say_where(
    started: RunProcess, signum: int, code: int
) -> None:
    started.proc.send_signal(signum)
    _, err = started.proc.communicate(timeout=60)
    assert started.proc.returncode == code, err
    name = signal.Signals(signum).name
    summary = started.store.summary("victim")
    assert summary is not None and summary.status == "interrupted"
    steps = _step_indexes(started.store, "victim")
    spans = started.store.read("victim").spans
    (root,) = [s for s in spans if s.name == sc.SPAN_GENERATE]
    assert root.status_code == STATUS_ERROR
    assert root.attributes[sc.RUN_INTERRUPT_SIGNAL] == name
    assert root.attributes[sc.RUN_INTERRUPT_STAGE] == sc.SPAN_DENOISE
    last = int(root.attributes[sc.RUN_INTERRUPT_STEP])  # type: ignore[arg-type]
    failed = [
        int(s.attributes[sc.DENOISE_STEP])  # type: ignore[arg-type]
        for s in spans
        if s.name == sc.SPAN_DENOISE_STEP and s.status_code == STATUS_ERROR
    ]
    # Inside a step the signal fails that step, written; between two steps (the callback, the
    # loop's own work) it names the step it kept from starting, never written.
    assert failed in ([last], [])
    assert steps == list(range(last + len(failed)))
    (loop,) = [s for s in spans if s.name == sc.SPAN_DENOISE]
    assert loop.status_code == STATUS_ERROR
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"wan-otel: run victim interrupted by {name} during Denoising")
    assert f"step {last + 1}" in lines[-1]


def test_two_runs_with_one_id_at_once_one_is_refused(tmp_path: Path) -> None:
    first, second = RunProcess(tmp_path, "same"), RunProcess(tmp_path, "same")
    try:
        codes = set()
        deadline = time.monotonic() + 120
        while not codes and time.monotonic() < deadline:
            codes = {p.proc.poll() for p in (first, second)} - {None}
            time.sleep(0.05)
        refused = first if first.proc.poll() is not None else second
        assert refused.proc.wait() == 2
        err = refused.proc.communicate()[1]
        assert err == f"wan-otel: run 'same' already exists in {tmp_path}: choose another run id\n"
        winner = second if refused is first else first
        winner.wait_for_steps(1)
        assert winner.proc.poll() is None
    finally:
        first.stop()
        second.stop()
