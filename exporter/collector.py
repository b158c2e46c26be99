"""``SnapshotCollector``: turns the sampler's latest snapshot into Prometheus metric families.

A prometheus_client custom collector: ``collect()`` serves families built from the snapshot
(once per snapshot, the same objects until the next; only the snapshot's age is new on each
scrape) and never calls the backend, so a scrape costs the same whatever NVML is
doing. Names and labels come from ``wan_otel.semconv``; a field the GPU does not support has no
series (never a 0), and a GPU missing from the snapshot (failed read) has none at all.
``collect()`` never raises: a GPU whose series cannot be built is left out and logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from wan_otel import semconv
from wan_otel.exporter.backend import SystemInfo
from wan_otel.exporter.procinfo import ProcessOwner
from wan_otel.exporter.sampler import Sampler
from wan_otel.exporter.snapshot import GpuState, Snapshot

log = logging.getLogger(__name__)

_UNITS = ("seconds", "bytes", "joules", "celsius", "hertz", "watts")

HELP: dict[str, str] = {
    semconv.GPU_SM_ACTIVE: "Integral of SM activity (0..1) over time; rate() is the mean "
    "SM-active ratio (source gpm: SMs busy; nvml_util: any kernel running).",
    semconv.GPU_SM_OCCUPANCY: "Integral of SM occupancy (resident warps / max) over time.",
    semconv.GPU_TENSOR_ACTIVE: "Integral of tensor-pipe activity over time.",
    semconv.GPU_DRAM_ACTIVE: "Integral of DRAM bandwidth utilization over time.",
    semconv.GPU_MEMORY_USED: "Device memory used (NVML memory info v2).",
    semconv.GPU_MEMORY_RESERVED: "Device memory reserved by the driver and firmware.",
    semconv.GPU_MEMORY_TOTAL: "Device memory total.",
    semconv.GPU_PROCESS_MEMORY: "Device memory used by one compute process.",
    semconv.GPU_POWER: "Power draw.",
    semconv.GPU_ENERGY: "Energy consumed since the driver loaded.",
    semconv.GPU_TEMPERATURE: "GPU temperature.",
    semconv.GPU_SM_CLOCK: "SM clock.",
    semconv.GPU_MEMORY_CLOCK: "Memory clock.",
    semconv.GPU_PCIE_RX: "PCIe bytes received by the GPU since the exporter started.",
    semconv.GPU_PCIE_TX: "PCIe bytes sent by the GPU since the exporter started.",
    semconv.GPU_CLOCK_EVENT: "1 while a clock event (throttle) reason is active.",
    semconv.GPU_ECC_ERRORS: "ECC errors since the driver loaded (volatile counters).",
    semconv.GPU_INFO: "GPU metadata; value 1.",
    semconv.EXPORTER_UP: "1 while NVML is initialised and sampling.",
    semconv.EXPORTER_NVML_ERRORS: "NVML calls that failed, by function.",
    semconv.EXPORTER_SAMPLE_DURATION: "Time the last sample of all GPUs took.",
    semconv.EXPORTER_SAMPLE_AGE: "Age of the snapshot this scrape served.",
}


def _family(kind: str, name: str, labels: Sequence[str]) -> CounterMetricFamily | GaugeMetricFamily:
    base = name[: -len("_total")] if name.endswith("_total") else name
    unit = next((u for u in _UNITS if base.endswith("_" + u)), "")
    if kind == "counter":
        return CounterMetricFamily(name, HELP[name], labels=labels, unit=unit)
    return GaugeMetricFamily(name, HELP[name], labels=labels, unit=unit)


class SnapshotCollector:
    """Serves ``sampler.snapshot``. ``pod``/``namespace`` (downward API) are added to every GPU
    series when non-empty; ``hostname`` is the node's name (``host.name`` on spans)."""

    def __init__(
        self, sampler: Sampler, *, hostname: str, pod: str = "", namespace: str = ""
    ) -> None:
        self._sampler = sampler
        extra = [(semconv.LABEL_POD, pod), (semconv.LABEL_NAMESPACE, namespace)]
        self._extra = [(k, v) for k, v in extra if v]
        self._hostname = hostname
        self._labels = (*semconv.GPU_LABELS, *(k for k, _ in self._extra))
        self._failed: set[str] = set()
        # Families of the current snapshot, built once per snapshot, not per scrape.
        self._built: tuple[Snapshot, tuple[Metric, ...]] | None = None

    def describe(self) -> list[Metric]:
        return []  # no fixed set of series; keeps register() from calling collect()

    def collect(self) -> Iterator[Metric]:
        snapshot = self._sampler.snapshot
        age = self._sampler.snapshot_age_s()
        yield from self._snapshot_families(snapshot)
        if age is not None:
            age_family = _family("gauge", semconv.EXPORTER_SAMPLE_AGE, [])
            age_family.add_metric([], age)
            yield age_family  # the only family that changes between two samples

    def _snapshot_families(self, snapshot: Snapshot) -> tuple[Metric, ...]:
        """Every family that depends only on ``snapshot``: built on its first scrape, then the
        same objects, never changed, until the next snapshot. ``Exposition`` relies on both to
        encode them once per sample rather than once per scrape."""
        built = self._built
        if built is None or built[0] is not snapshot:
            built = self._built = (snapshot, self._build(snapshot))
        return built[1]

    def _build(self, snapshot: Snapshot) -> tuple[Metric, ...]:
        up = GaugeMetricFamily(semconv.EXPORTER_UP, HELP[semconv.EXPORTER_UP])
        up.add_metric([], 1.0 if snapshot.up else 0.0)
        errors = _family("counter", semconv.EXPORTER_NVML_ERRORS, [semconv.LABEL_CALL])
        for call, count in sorted(snapshot.errors.items()):
            errors.add_metric([call], float(count))
        families = [*self._gpu_metrics(snapshot), up, errors]
        if snapshot.duration_s is not None:
            duration = _family("gauge", semconv.EXPORTER_SAMPLE_DURATION, [])
            duration.add_metric([], snapshot.duration_s)
            families.append(duration)
        return tuple(families)

    def _gpu_metrics(self, snapshot: Snapshot) -> list[Metric]:
        families = self._gpu_families()
        for state in snapshot.gpus:
            try:
                rows = list(self._gpu_rows(state, snapshot.system))
            except Exception:  # a bad reading must not fail the scrape
                if state.device.uuid not in self._failed:
                    self._failed.add(state.device.uuid)
                    log.exception("building series of GPU %s failed", state.device.uuid)
                continue
            for name, labels, value in rows:
                families[name].add_metric(labels, value)
        return [f for f in families.values() if f.samples]

    def _gpu_families(self) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        gpu = self._labels
        src = (*gpu, semconv.LABEL_SOURCE)
        proc = (
            *semconv.GPU_LABELS,
            semconv.LABEL_PID,
            semconv.LABEL_CONTAINER,
            semconv.LABEL_POD,
            semconv.LABEL_NAMESPACE,
        )
        info = (*gpu, semconv.LABEL_DRIVER_VERSION, semconv.LABEL_CUDA_VERSION)
        spec: list[tuple[str, str, Sequence[str]]] = [
            ("gauge", semconv.GPU_INFO, info),
            ("counter", semconv.GPU_SM_ACTIVE, src),
            ("counter", semconv.GPU_SM_OCCUPANCY, src),
            ("counter", semconv.GPU_TENSOR_ACTIVE, src),
            ("counter", semconv.GPU_DRAM_ACTIVE, src),
            ("gauge", semconv.GPU_MEMORY_USED, gpu),
            ("gauge", semconv.GPU_MEMORY_RESERVED, gpu),
            ("gauge", semconv.GPU_MEMORY_TOTAL, gpu),
            ("gauge", semconv.GPU_PROCESS_MEMORY, proc),
            ("gauge", semconv.GPU_POWER, gpu),
            ("counter", semconv.GPU_ENERGY, gpu),
            ("gauge", semconv.GPU_TEMPERATURE, gpu),
            ("gauge", semconv.GPU_SM_CLOCK, gpu),
            ("gauge", semconv.GPU_MEMORY_CLOCK, gpu),
            ("counter", semconv.GPU_PCIE_RX, gpu),
            ("counter", semconv.GPU_PCIE_TX, gpu),
            ("gauge", semconv.GPU_CLOCK_EVENT, (*gpu, semconv.LABEL_REASON)),
            ("counter", semconv.GPU_ECC_ERRORS, (*gpu, semconv.LABEL_ECC_TYPE)),
        ]
        return {name: _family(kind, name, labels) for kind, name, labels in spec}

    def _gpu_rows(
        self, state: GpuState, system: SystemInfo | None
    ) -> Iterator[tuple[str, list[str], float]]:
        d, r, c = state.device, state.reading, state.counters
        base = [str(d.index), d.uuid, d.name, self._hostname, *(v for _, v in self._extra)]
        if system is not None:
            info = [*base, system.driver_version, system.cuda_version]
            yield semconv.GPU_INFO, info, 1.0
        if c is not None:
            with_source = [*base, c.source]
            for name, value in (
                (semconv.GPU_SM_ACTIVE, c.sm_active_s),
                (semconv.GPU_SM_OCCUPANCY, c.sm_occupancy_s),
                (semconv.GPU_TENSOR_ACTIVE, c.tensor_active_s),
                (semconv.GPU_DRAM_ACTIVE, c.dram_active_s),
            ):
                if value is not None:
                    yield name, with_source, value
            if c.pcie_rx_bytes is not None:
                yield semconv.GPU_PCIE_RX, base, c.pcie_rx_bytes
            if c.pcie_tx_bytes is not None:
                yield semconv.GPU_PCIE_TX, base, c.pcie_tx_bytes
        for name, maybe in (
            (semconv.GPU_MEMORY_USED, r.memory_used_bytes),
            (semconv.GPU_MEMORY_RESERVED, r.memory_reserved_bytes),
            (semconv.GPU_MEMORY_TOTAL, r.memory_total_bytes),
            (semconv.GPU_POWER, r.power_watts),
            (semconv.GPU_ENERGY, r.energy_joules),
            (semconv.GPU_TEMPERATURE, r.temperature_celsius),
            (semconv.GPU_SM_CLOCK, r.sm_clock_hertz),
            (semconv.GPU_MEMORY_CLOCK, r.memory_clock_hertz),
        ):
            if maybe is not None:
                yield name, base, float(maybe)
        for reason, active in sorted((r.clock_events or {}).items()):
            yield semconv.GPU_CLOCK_EVENT, [*base, reason], 1.0 if active else 0.0
        if r.ecc_corrected is not None:
            yield semconv.GPU_ECC_ERRORS, [*base, "corrected"], float(r.ecc_corrected)
        if r.ecc_uncorrected is not None:
            yield semconv.GPU_ECC_ERRORS, [*base, "uncorrected"], float(r.ecc_uncorrected)
        gpu_base = base[: len(semconv.GPU_LABELS)]
        for proc in r.processes or ():
            if proc.used_bytes is None:
                continue
            owner = state.owners.get(proc.pid, ProcessOwner())
            labels = [*gpu_base, str(proc.pid), owner.container, owner.pod, owner.namespace]
            yield semconv.GPU_PROCESS_MEMORY, labels, float(proc.used_bytes)
