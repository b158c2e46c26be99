"""Timelines: host marks map to the epoch; CUDA event stamps map onto the host clock at an
anchor; on a GPU the denoising loop gains no host synchronization."""

from __future__ import annotations

import time
import warnings
from typing import Any, ClassVar

import pytest
import torch

from tests.pipeline.conftest import SpanBackend
from tests.pipeline.helpers import CALL
from wan_otel.pipeline import instrument
from wan_otel.pipeline.instrumentation.timing import CudaTimeline, HostTimeline


def test_host_marks_map_to_the_epoch_in_order() -> None:
    before = time.time_ns()
    timeline = HostTimeline()
    first = timeline.mark()
    time.sleep(0.01)
    second = timeline.mark()
    after = time.time_ns()
    timeline.resolve()
    t1, t2 = timeline.time_ns(first), timeline.time_ns(second)
    assert before - 1_000_000 <= t1 < t2 <= after + 1_000_000
    assert 0.009 <= (t2 - t1) / 1e9 < 0.05


class _HostStampedEvent:
    """Stands in for torch.cuda.Event on a CPU: stamped with the host clock when recorded,
    "reached by the GPU" only once the test says so (``query``)."""

    held = False
    """While True, events recorded from now on stay unreached."""
    made: ClassVar[list[_HostStampedEvent]] = []

    def __init__(self, enable_timing: bool = False) -> None:
        self.stamp: int | None = None
        self.reached = True
        type(self).made.append(self)

    @classmethod
    def reach_all(cls, device: Any = None) -> None:
        """``torch.cuda.synchronize``: the GPU has reached everything queued."""
        for event in cls.made:
            event.reached = True

    def record(self, stream: Any = None) -> None:
        self.stamp = time.perf_counter_ns()
        self.reached = not type(self).held

    def query(self) -> bool:
        return self.reached

    def synchronize(self) -> None:
        self.reached = True

    def elapsed_time(self, end: _HostStampedEvent) -> float:
        assert self.stamp is not None and end.stamp is not None
        assert self.reached and end.reached, "elapsed_time of an event the GPU has not reached"
        return (end.stamp - self.stamp) / 1e6


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, synchronize: Any = None) -> None:
    _HostStampedEvent.held, _HostStampedEvent.made = False, []
    monkeypatch.setattr(torch.cuda, "Event", _HostStampedEvent)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize or _HostStampedEvent.reach_all)


def test_cuda_timeline_resolves_marks_the_gpu_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch)
    before = time.time_ns()
    timeline = CudaTimeline(torch.device("cuda"))
    first = timeline.mark()
    time.sleep(0.02)
    second = timeline.mark()
    _HostStampedEvent.held = True  # the GPU has not reached what is queued from now on
    third = timeline.mark()
    assert timeline.resolved(second) is not None
    assert timeline.resolved(third) is None  # never waits
    timeline.resolve()  # the synchronization after the call reaches everything
    assert timeline.source == "cuda_event"
    t1, t2, t3 = (timeline.time_ns(m) for m in (first, second, third))
    assert before - 1_000_000 <= t1 < t2 <= t3 <= time.time_ns() + 1_000_000
    assert 0.019 <= (t2 - t1) / 1e9 < 0.05


def test_cuda_timeline_keeps_sub_microsecond_gaps_late_in_a_long_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Elapsed times are float32 milliseconds: one from the anchor to an event ten minutes
    later has a resolution of about 60 us; chained short gaps keep nanoseconds."""
    _fake_cuda(monkeypatch)
    timeline = CudaTimeline(torch.device("cuda"))
    base = time.perf_counter_ns()
    stamps = [base + 600_000_000_000, base + 600_000_000_250]  # 250 ns apart, 10 min in
    marks = []
    for stamp in stamps:
        marks.append(timeline.mark())
        timeline._events[-1].stamp = stamp

    def float32_ms(a: _HostStampedEvent, b: _HostStampedEvent) -> float:
        assert a.stamp is not None and b.stamp is not None
        return float(torch.tensor((b.stamp - a.stamp) / 1e6, dtype=torch.float32))

    monkeypatch.setattr(_HostStampedEvent, "elapsed_time", float32_ms)
    first, second = (timeline.resolved(m) for m in marks)
    assert first is not None and second is not None
    assert abs((second - first) - 250) <= 1


def test_cuda_timeline_falls_back_to_the_host_clock(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def poisoned(device: Any = None) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    _fake_cuda(monkeypatch, synchronize=poisoned)
    timeline = CudaTimeline(torch.device("cuda"))
    first, second = timeline.mark(), timeline.mark()
    timeline.resolve()
    assert timeline.source == "host"
    assert timeline.time_ns(first) <= timeline.time_ns(second)
    assert "illegal memory access" in caplog.text


def _count_syncs(fn: Any) -> int:
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.gpu
def test_instrumentation_adds_no_host_sync_per_step(spans: SpanBackend) -> None:
    """Synchronizing operations counted by torch's sync debug mode, bare vs instrumented, at
    N and 2N steps: instrumentation may add a constant (the one resolve after the call) but
    nothing that grows with the number of steps."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from tests.pipeline.helpers import build_tiny

    device = torch.device("cuda")
    bare = build_tiny().to(device)
    observed = build_tiny().to(device)
    instrument(observed, spans.provider, run_id="sync")
    arguments = dict(CALL, output_type="latent")

    def run(pipe: Any, steps: int) -> int:
        return _count_syncs(lambda: pipe(**dict(arguments, num_inference_steps=steps)))

    for pipe in (bare, observed):  # warm up: first calls initialize kernels and allocator
        run(pipe, 2)
    n = 4
    bare_n, bare_2n = run(bare, n), run(bare, 2 * n)
    observed_n, observed_2n = run(observed, n), run(observed, 2 * n)
    added_per_step = ((observed_2n - observed_n) - (bare_2n - bare_n)) / n
    assert added_per_step == 0, (bare_n, bare_2n, observed_n, observed_2n)
    assert spans.spans(), "the instrumented calls made spans"
    # Stricter, where diffusers' own loop is sync-free: any synchronization between the end of
    # step 0 and the end of the last step raises.
    if _loop_is_sync_free(bare, arguments, n):
        assert _loop_is_sync_free(observed, arguments, n)


def _loop_is_sync_free(pipe: Any, arguments: dict[str, Any], steps: int) -> bool:
    def strict(p: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        torch.cuda.set_sync_debug_mode("error" if step < steps - 1 else 0)
        return kwargs

    try:
        pipe(**dict(arguments, num_inference_steps=steps, callback_on_step_end=strict))
    except RuntimeError as exc:
        if "synchronizing" not in str(exc):
            raise
        return False
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return True
