"""GPU sample records: what the in-process sampler writes to a run's ``gpu_samples.jsonl``.

Activity figures are cumulative integrals in seconds since the sampler started (the twins of
the exporter's ``*_seconds_total`` counters), so the mean over any window is a difference
divided by the window's length.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from wan_otel import semconv
from wan_otel.store.jsonl import read_json_lines


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU. ``None`` marks a field the GPU or driver does not support."""

    t_ns: int
    gpu: int
    uuid: str
    source: str
    sm_active_s: float | None = None
    sm_occupancy_s: float | None = None
    tensor_active_s: float | None = None
    dram_active_s: float | None = None
    pcie_rx_bytes: int | None = None
    pcie_tx_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_reserved_bytes: int | None = None
    power_w: float | None = None
    energy_j: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> GpuSample:
        def number(key: str, kind: type[float] | type[int]) -> Any:
            value = obj.get(key)
            return None if value is None else kind(value)

        return cls(
            t_ns=int(obj[semconv.SAMPLE_TIME]),
            gpu=int(obj[semconv.SAMPLE_GPU]),
            uuid=str(obj[semconv.SAMPLE_UUID]),
            source=str(obj.get(semconv.SAMPLE_SOURCE, "unknown")),
            sm_active_s=number(semconv.SAMPLE_SM_ACTIVE, float),
            sm_occupancy_s=number(semconv.SAMPLE_SM_OCCUPANCY, float),
            tensor_active_s=number(semconv.SAMPLE_TENSOR_ACTIVE, float),
            dram_active_s=number(semconv.SAMPLE_DRAM_ACTIVE, float),
            pcie_rx_bytes=number(semconv.SAMPLE_PCIE_RX, int),
            pcie_tx_bytes=number(semconv.SAMPLE_PCIE_TX, int),
            memory_used_bytes=number(semconv.SAMPLE_MEMORY_USED, int),
            memory_reserved_bytes=number(semconv.SAMPLE_MEMORY_RESERVED, int),
            power_w=number(semconv.SAMPLE_POWER, float),
            energy_j=number(semconv.SAMPLE_ENERGY, float),
        )


def read_samples(path: Path, warnings: list[str]) -> list[GpuSample]:
    """All readable samples of a file, sorted by time; bad lines become warnings."""
    samples = []
    for number, obj in read_json_lines(path, warnings):
        try:
            samples.append(GpuSample.from_json(obj))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            warnings.append(f"{path}: line {number} is not a GPU sample ({exc!r}); skipped")
    samples.sort(key=lambda s: (s.uuid, s.t_ns))
    return samples


class SampleWriter:
    """Appends samples to one run's file; buffered, flushed on ``flush`` and ``close``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, sample: GpuSample) -> None:
        line = json.dumps(sample.to_json(), separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
