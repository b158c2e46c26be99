"""Timelines: host marks map to the epoch; CUDA event stamps map onto the host clock at an
anchor; on a GPU the denoising loop gains no host synchronization."""

from __future__ import annotations

import time
import warnings
from typing import Any

import pytest
import torch

from tests.pipeline.conftest import SpanBackend
from tests.pipeline.helpers import CALL
from wan_otel.pipeline import instrument
from wan_otel.pipeline.timing import CudaTimeline, HostTimeline, _chain


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


class _FakeEvent:
    """An event stamped at a known GPU time (ms)."""

    def __init__(self, gpu_ms: float) -> None:
        self.gpu_ms = gpu_ms

    def elapsed_time(self, end: _FakeEvent) -> float:
        return end.gpu_ms - self.gpu_ms


def test_events_map_onto_the_host_clock_at_the_anchor() -> None:
    events = [_FakeEvent(t) for t in (1000.0, 1000.25, 1500.0, 601000.0)]
    anchor = _FakeEvent(601002.0)  # recorded after the final synchronize, on an idle GPU
    anchor_ns = 5_000_000_000_000
    times = _chain(events, anchor, anchor_ns)  # type: ignore[arg-type]
    assert times == [
        anchor_ns - 600_002_000_000,
        anchor_ns - 600_001_750_000,
        anchor_ns - 599_502_000_000,
        anchor_ns - 2_000_000,
    ]
    # sub-microsecond gaps survive a ten-minute run
    assert times[1] - times[0] == 250_000


class _HostStampedEvent:
    """Stands in for torch.cuda.Event on a CPU: stamped with the host clock when recorded."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.stamp: int | None = None

    def record(self, stream: Any = None) -> None:
        self.stamp = time.perf_counter_ns()

    def synchronize(self) -> None:
        return None

    def elapsed_time(self, end: _HostStampedEvent) -> float:
        assert self.stamp is not None and end.stamp is not None
        return (end.stamp - self.stamp) / 1e6


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, synchronize: Any = None) -> None:
    monkeypatch.setattr(torch.cuda, "Event", _HostStampedEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize or (lambda device=None: None))


def test_cuda_timeline_resolves_events_after_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch)
    timeline = CudaTimeline(torch.device("cuda"))
    first = timeline.mark()
    time.sleep(0.02)
    second = timeline.mark()
    timeline.resolve()
    assert timeline.source == "cuda_event"
    gap = (timeline.time_ns(second) - timeline.time_ns(first)) / 1e9
    assert 0.019 <= gap < 0.05
    assert abs(timeline.time_ns(second) - time.time_ns()) < 50_000_000


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
