"""Torch allocator figures per span window: allocated at start and end, peaks within.

``torch.cuda.max_memory_allocated`` has one peak counter per device, so nested spans cannot
each reset it. At every span boundary we read the counter, fold it into every *open* window
(the peak since the last boundary belongs to all of them) and reset it; a window's peak is then
the maximum of the folds during its life. All of this is host-side allocator bookkeeping: no
device synchronization. It does reset the process's peak counters, which the docs say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from wan_otel import semconv

_ALLOC_CUR = "allocated_bytes.all.current"
_ALLOC_PEAK = "allocated_bytes.all.peak"
_RES_CUR = "reserved_bytes.all.current"
_RES_PEAK = "reserved_bytes.all.peak"


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
        stats = torch.cuda.memory_stats(self._device)  # one call: the counters are read together
        alloc_peak, res_peak = stats.get(_ALLOC_PEAK, 0), stats.get(_RES_PEAK, 0)
        for window in open_windows:
            window.fold(alloc_peak, res_peak)
        torch.cuda.reset_peak_memory_stats(self._device)
        return stats.get(_ALLOC_CUR, 0), stats.get(_RES_CUR, 0)

    def open(self, open_windows: Iterable[MemoryWindow]) -> MemoryWindow:
        """A new window starting now; ``open_windows`` are its ancestors still open."""
        allocated, reserved = self._boundary(open_windows)
        return MemoryWindow(allocated, allocated, reserved)

    def close(self, window: MemoryWindow, open_windows: Iterable[MemoryWindow]) -> None:
        """End ``window`` now; ``open_windows`` must include it."""
        allocated, reserved = self._boundary(open_windows)
        window.allocated_end, window.reserved_end = allocated, reserved


def memory_for(device: torch.device) -> CudaMemory | None:
    """Allocator tracking on a CUDA device; None elsewhere (no figures on CPU spans)."""
    if device.type == "cuda" and torch.cuda.is_available():
        return CudaMemory(device)
    return None
