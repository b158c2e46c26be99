"""Torch allocator figures per span window: allocated at start and end, peaks within.

``torch.cuda.max_memory_allocated`` has one peak counter per device, so nested spans cannot
each reset it. At every span boundary we read the counter, fold it into every *open* window
(the peak since the last boundary belongs to all of them) and reset it; a window's peak is then
the maximum of the folds during its life. All of this is host-side allocator bookkeeping: no
device synchronization. It does reset the process's peak counters, which the docs say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from wan_otel import semconv


@dataclass
class MemoryWindow:
    """Allocator figures of one span, in bytes."""

    allocated_start: int
    allocated_peak: int
    reserved_peak: int
    allocated_end: int | None = None
    reserved_end: int | None = None

    def fold(self, allocated_peak: int, reserved_peak: int) -> None:
        self.allocated_peak = max(self.allocated_peak, allocated_peak)
        self.reserved_peak = max(self.reserved_peak, reserved_peak)

    def merge(self, later: MemoryWindow) -> MemoryWindow:
        """One window spanning ``self`` then ``later`` (for merged transfer spans)."""
        return MemoryWindow(
            allocated_start=self.allocated_start,
            allocated_peak=max(self.allocated_peak, later.allocated_peak),
            reserved_peak=max(self.reserved_peak, later.reserved_peak),
            allocated_end=later.allocated_end,
            reserved_end=later.reserved_end,
        )

    def attributes(self) -> dict[str, int]:
        attrs = {
            semconv.MEMORY_ALLOCATED_START: self.allocated_start,
            semconv.MEMORY_ALLOCATED_PEAK: self.allocated_peak,
            semconv.MEMORY_RESERVED_PEAK: self.reserved_peak,
        }
        if self.allocated_end is not None:
            attrs[semconv.MEMORY_ALLOCATED_END] = self.allocated_end
        if self.reserved_end is not None:
            attrs[semconv.MEMORY_RESERVED_END] = self.reserved_end
        return attrs


class CudaMemory:
    """Boundary bookkeeping for the windows of one device."""

    def __init__(self, device: torch.device) -> None:
        self._device = device

    def _boundary(self, open_windows: Iterable[MemoryWindow]) -> tuple[int, int]:
        # One call, so the counters are read together; the nested form, because
        # ``memory_stats`` flattens its 120-odd keys in Python (about 80 us on a slow CPU,
        # against 9 us for this), at every span boundary.
        stats = torch.cuda.memory_stats_as_nested_dict(self._device)
        allocated, reserved = (
            _all_pools(stats, "allocated_bytes"),
            _all_pools(stats, "reserved_bytes"),
        )
        alloc_peak, res_peak = allocated.get("peak", 0), reserved.get("peak", 0)
        for window in open_windows:
            window.fold(alloc_peak, res_peak)
        torch.cuda.reset_peak_memory_stats(self._device)
        return allocated.get("current", 0), reserved.get("current", 0)

    def open(self, open_windows: Iterable[MemoryWindow]) -> MemoryWindow:
        """A new window starting now; ``open_windows`` are its ancestors still open."""
        allocated, reserved = self._boundary(open_windows)
        return MemoryWindow(allocated, allocated, reserved)

    def close(self, window: MemoryWindow, open_windows: Iterable[MemoryWindow]) -> None:
        """End ``window`` now; ``open_windows`` must include it."""
        allocated, reserved = self._boundary(open_windows)
        window.allocated_end, window.reserved_end = allocated, reserved


def _all_pools(stats: Mapping[str, Any], kind: str) -> Mapping[str, int]:
    """``stats[kind]["all"]`` of the allocator's nested statistics ({} where absent)."""
    pools = stats.get(kind)
    return pools.get("all", {}) if isinstance(pools, Mapping) else {}


def memory_for(device: torch.device) -> CudaMemory | None:
    """Allocator tracking on a CUDA device; None elsewhere (no figures on CPU spans)."""
    if device.type == "cuda" and torch.cuda.is_available():
        return CudaMemory(device)
    return None
