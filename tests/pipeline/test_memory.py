"""Allocator figures: each nested window gets the peak within its own window, although torch
keeps one peak counter per device."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from wan_otel import semconv as sc
from wan_otel.pipeline.instrumentation.memory import CudaMemory, MemoryWindow


class _FakeAllocator:
    """torch.cuda's allocated/reserved current and peak counters, driven by the test."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self.resets = 0

    def alloc(self, nbytes: int) -> None:
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def free(self, nbytes: int) -> None:
        self.current -= nbytes

    def stats(self, device: Any = None) -> dict[str, Any]:
        """The shape of ``torch.cuda.memory_stats_as_nested_dict`` (the keys read)."""
        pools = {"small_pool": {"current": -1, "peak": -1}, "large_pool": {"current": -1}}
        return {
            "allocated_bytes": {"all": {"current": self.current, "peak": self.peak}, **pools},
            "reserved_bytes": {"all": {"current": self.current * 2, "peak": self.peak * 2}},
            "num_ooms": 0,
        }

    def reset(self, device: Any = None) -> None:
        self.resets += 1
        self.peak = self.current


def test_nested_windows_each_get_their_own_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeAllocator()
    monkeypatch.setattr(torch.cuda, "memory_stats_as_nested_dict", fake.stats)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", fake.reset)
    memory = CudaMemory(torch.device("cuda"))
    fake.alloc(100)
    outer = memory.open([])
    fake.alloc(500)  # a transient inside the first child
    first = memory.open([outer])
    fake.alloc(200)
    fake.free(600)
    memory.close(first, [outer, first])
    second = memory.open([outer])
    fake.alloc(50)
    fake.free(50)
    memory.close(second, [outer, second])
    memory.close(outer, [outer])
    assert (first.allocated_start, first.allocated_peak, first.allocated_end) == (600, 800, 200)
    assert (second.allocated_start, second.allocated_peak, second.allocated_end) == (200, 250, 200)
    # The outer window saw the 600 before its child opened and the child's 800.
    assert (outer.allocated_start, outer.allocated_peak, outer.allocated_end) == (100, 800, 200)
    assert outer.reserved_peak == 1600 and second.reserved_end == 400


def test_window_attributes_and_merge() -> None:
    a = MemoryWindow(10, 30, 60, allocated_end=20, reserved_end=40)
    b = MemoryWindow(20, 90, 100, allocated_end=5, reserved_end=10)
    merged = a.merge(b)
    assert merged.attributes() == {
        sc.MEMORY_ALLOCATED_START: 10,
        sc.MEMORY_ALLOCATED_PEAK: 90,
        sc.MEMORY_RESERVED_PEAK: 100,
        sc.MEMORY_ALLOCATED_END: 5,
        sc.MEMORY_RESERVED_END: 10,
    }


@pytest.mark.gpu
def test_real_allocations_on_a_gpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    device = torch.device("cuda")
    memory = CudaMemory(device)
    mib = 1 << 20
    outer = memory.open([])
    inner = memory.open([outer])
    block = torch.empty(64 * mib, dtype=torch.uint8, device=device)
    del block
    memory.close(inner, [outer, inner])
    memory.close(outer, [outer])
    assert inner.allocated_peak - inner.allocated_start >= 64 * mib
    assert outer.allocated_peak >= inner.allocated_peak
