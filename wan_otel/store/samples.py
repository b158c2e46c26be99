"""GPU sample records: what the in-process sampler writes to a run's ``gpu_samples.jsonl``.

Activity figures are cumulative integrals in seconds since the sampler started (the twins of
the exporter's ``*_seconds_total`` counters), so the mean over any window is a difference
divided by the window's length. Reading is total: ``read_samples`` keeps what is valid and
names what it skipped or dropped.
"""

from __future__ import annotations

import bisect
import itertools
import json
import operator
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from wan_otel import semconv
from wan_otel.store.jsonl import Skips, read_json_lines, shown
from wan_otel.store.otlp_json import MAX_TIME_NS

COUNTERS = (
    "sm_active_s",
    "sm_occupancy_s",
    "tensor_active_s",
    "dram_active_s",
    "pcie_rx_bytes",
    "pcie_tx_bytes",
    "energy_j",
)
"""Fields that are cumulative from the sampler's start: they never go down within one file."""

_MEASUREMENTS = {
    semconv.SAMPLE_SM_ACTIVE: ("sm_active_s", False),
    semconv.SAMPLE_SM_OCCUPANCY: ("sm_occupancy_s", False),
    semconv.SAMPLE_TENSOR_ACTIVE: ("tensor_active_s", False),
    semconv.SAMPLE_DRAM_ACTIVE: ("dram_active_s", False),
    semconv.SAMPLE_POWER: ("power_w", False),
    semconv.SAMPLE_ENERGY: ("energy_j", False),
    semconv.SAMPLE_PCIE_RX: ("pcie_rx_bytes", True),
    semconv.SAMPLE_PCIE_TX: ("pcie_tx_bytes", True),
    semconv.SAMPLE_MEMORY_USED: ("memory_used_bytes", True),
    semconv.SAMPLE_MEMORY_RESERVED: ("memory_reserved_bytes", True),
}
"""JSON key -> (field, integral) of every optional reading."""
_MAX_READING = 1e300
"""Readings at or above are refused: differences of such values are not finite."""


class SampleError(ValueError):
    """A JSON value that is not a GPU sample; the message names the field at fault."""


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
    def from_json(cls, obj: Any, dropped: list[str] | None = None) -> GpuSample:
        """The sample in ``obj`` (parsed JSON).

        Raises ``SampleError`` when ``obj`` is not a sample: not an object, or its time, GPU
        index or UUID missing or invalid. A measurement that is not a finite, non-negative
        number is left out (None) and its field named in ``dropped``; without ``dropped`` it
        raises too.
        """
        if not isinstance(obj, Mapping):
            raise SampleError(f"not a JSON object ({shown(obj)})")
        t_ns = _integer(obj.get(semconv.SAMPLE_TIME), semconv.SAMPLE_TIME)
        if not 0 < t_ns < MAX_TIME_NS:
            raise SampleError(
                f"{semconv.SAMPLE_TIME} outside 1970..9999 ({shown(obj[semconv.SAMPLE_TIME])})"
            )
        gpu = _integer(obj.get(semconv.SAMPLE_GPU), semconv.SAMPLE_GPU)
        if not 0 <= gpu < 1 << 16:
            raise SampleError(f"{semconv.SAMPLE_GPU} is not a device index ({gpu})")
        uuid, source = obj.get(semconv.SAMPLE_UUID), obj.get(semconv.SAMPLE_SOURCE, "unknown")
        if not isinstance(uuid, str) or not uuid or len(uuid) > 256:
            raise SampleError(f"{semconv.SAMPLE_UUID} is not a GPU UUID ({shown(uuid)})")
        if not isinstance(source, str) or len(source) > 256:
            raise SampleError(f"{semconv.SAMPLE_SOURCE} is not a name ({shown(source)})")
        values: dict[str, Any] = {}
        for key, value in obj.items():
            field_of = _MEASUREMENTS.get(key)
            if field_of is None or value is None:
                continue
            number = _measurement(value, integral=field_of[1])
            if number is None:
                if dropped is None:
                    raise SampleError(f"{key} is not a finite non-negative number")
                dropped.append(key)
            else:
                values[field_of[0]] = number
        return cls(t_ns=t_ns, gpu=gpu, uuid=_clean(uuid), source=_clean(source), **values)


def _integer(value: Any, key: str) -> int:
    if value is None:
        raise SampleError(f"no {key}")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise SampleError(f"{key} is not an integer ({shown(value)})")


def _measurement(value: Any, *, integral: bool) -> float | int | None:
    """A finite, non-negative reading, or None (NaN fails every comparison)."""
    kind = type(value)
    if kind is float:
        if not 0.0 <= value < _MAX_READING:
            return None
        if integral:
            return int(value) if value.is_integer() else None
        return float(value)
    if kind is int:
        if not 0 <= value < _MAX_READING:
            return None
        return value if integral else float(value)
    return None


def _clean(text: str) -> str:
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def read_samples(path: Path, warnings: list[str]) -> list[GpuSample]:
    """The valid samples of one sampler's file, sorted by GPU UUID and time.

    Skipped, and named in ``warnings`` (one line per kind of problem): lines that are not
    samples, and a second sample of one GPU at one time. Dropped, the rest of the sample kept:
    a reading that is not a finite non-negative number, and counter readings that go down. One
    file has one sampler, whose counters start at 0 and never go down, so a drop is an error,
    not a restart (a true counter reset, an exporter restarted between Prometheus scrapes, is
    handled where Prometheus series are integrated); the fewest readings are dropped that leave
    the rest never going down, so one sample read at a wrong time costs that one reading.
    """
    skips = Skips(str(path))
    by_gpu: dict[str, list[tuple[int, GpuSample]]] = {}
    try:
        for number, obj in read_json_lines(path, warnings):
            dropped: list[str] = []
            try:
                sample = GpuSample.from_json(obj, dropped)
            except SampleError as exc:
                skips.add(f"line {number}", "is not a GPU sample", str(exc))
                continue
            for key in dropped:
                skips.add(
                    f"line {number}",
                    f"has {key} not a finite non-negative number",
                    shown(obj.get(key)),
                    "dropped that reading",
                )
            by_gpu.setdefault(sample.uuid, []).append((number, sample))
        samples = []
        for uuid in sorted(by_gpu):
            samples += _checked(by_gpu[uuid], skips)
    finally:
        skips.flush(warnings)
    return samples


def _checked(rows: list[tuple[int, GpuSample]], skips: Skips) -> list[GpuSample]:
    """One GPU's samples in time order, without repeated times or counters going down."""
    rows.sort(key=lambda row: (row[1].t_ns, row[0]))
    unique: list[tuple[int, GpuSample]] = []
    for number, sample in rows:
        if unique and unique[-1][1].t_ns == sample.t_ns:
            first, kept = unique[-1]
            same = "repeats" if kept == sample else "has other values at the time of"
            skips.add(f"line {number}", f"{same} an earlier sample of its GPU", f"line {first}")
            continue
        unique.append((number, sample))
    samples = [sample for _, sample in unique]
    for name in COUNTERS:
        values = list(map(operator.attrgetter(name), samples))
        if values.count(None) == len(values):
            continue
        present = [i for i, v in enumerate(values) if v is not None]
        readings = [values[i] for i in present]
        if all(a <= b for a, b in itertools.pairwise(readings)):
            continue  # the usual case: nothing goes down
        keep = set(_longest_rising(readings))
        for position, i in enumerate(present):
            if position not in keep:
                skips.add(
                    f"line {unique[i][0]}",
                    f"has {name} out of line with its GPU's other samples "
                    "(the counter would go down)",
                    f"{values[i]!r}",
                    "dropped that reading",
                )
                cleared: dict[str, Any] = {name: None}
                samples[i] = replace(samples[i], **cleared)
    return samples


def _longest_rising(values: Sequence[float]) -> list[int]:
    """Indexes of a longest non-decreasing subsequence of ``values`` (O(n log n))."""
    tails: list[float] = []  # smallest last value of a rising run of each length
    tail_at: list[int] = []
    previous = [-1] * len(values)
    for i, value in enumerate(values):
        length = bisect.bisect_right(tails, value)
        if length == len(tails):
            tails.append(value)
            tail_at.append(i)
        else:
            tails[length] = value
            tail_at[length] = i
        previous[i] = tail_at[length - 1] if length else -1
    kept, i = [], tail_at[-1] if tail_at else -1
    while i >= 0:
        kept.append(i)
        i = previous[i]
    return kept[::-1]


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
