"""``GpuSampleRecorder``: the exporter's sampler run inside the pipeline process, writing
high-resolution ``GpuSample`` records to a run's ``gpu_samples.jsonl``.

The pipeline codes against exactly this API::

    with GpuSampleRecorder(run_dir / "gpu_samples.jsonl", interval_s=0.1) as recorder:
        ...  # generate; recorder.started says whether samples are being written

``start()`` never raises: without NVML it logs one warning and returns ``False`` (a CPU run
simply has no GPU samples). Records carry cumulative integrals from the recorder's start:
``sm_active_s`` like ``wan_gpu_sm_active_seconds_total`` and ``energy_j`` counted from the
first sample, so any window's mean or energy is a difference of two records.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType

from wan_otel.exporter.backend import GpuBackend
from wan_otel.exporter.sampler import Sampler, check_interval
from wan_otel.exporter.snapshot import Snapshot
from wan_otel.store.samples import GpuSample, SampleWriter

log = logging.getLogger(__name__)

_FLUSH_EVERY_S = 1.0
"""Flush at most this often while running, so a crash loses little and writes stay cheap."""


class GpuSampleRecorder:
    """Samples every GPU each ``interval_s`` (>= 0.1 s, GPM's floor) into ``path``."""

    def __init__(
        self, path: Path, interval_s: float = 0.1, backend: GpuBackend | None = None
    ) -> None:
        self.path = Path(path)
        self.interval_s = check_interval(interval_s)
        self._backend = backend
        self._sampler: Sampler | None = None
        self._writer: SampleWriter | None = None
        self._energy_base: dict[str, float] = {}
        self._energy_used: dict[str, float] = {}
        self._last_flush = 0.0

    @property
    def started(self) -> bool:
        return self._sampler is not None

    def start(self) -> bool:
        """Begin sampling. ``False`` (and one warning) if NVML is unavailable; never raises."""
        if self._sampler is not None:
            return True
        try:
            backend = self._backend if self._backend is not None else _nvml_backend()
            sampler = Sampler(backend, self.interval_s, processes=False, on_sample=self._write)
            if not sampler.try_init():
                log.warning(
                    "GPU samples will not be recorded: NVML unavailable (%s)",
                    sampler.last_init_error,
                )
                return False
            self._writer = SampleWriter(self.path)
            self._last_flush = time.monotonic()
            self._sampler = sampler
            sampler.start()
            return True
        except Exception as exc:
            log.warning("GPU samples will not be recorded: %s", exc)
            self._sampler = None
            return False

    def stop(self) -> None:
        """Stop sampling, write one final sample, flush and close the file. Never raises."""
        sampler, self._sampler = self._sampler, None
        if sampler is None:
            return
        try:
            if sampler.stop(timeout_s=2.0):
                # The final sample must respect GPM's 100 ms gap, or its window is empty.
                last = sampler.last_sample_started_s
                if last is not None:
                    wait = last + self.interval_s + 0.01 - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                sampler.sample_once()
            sampler.close()
        except Exception:
            log.exception("GPU sample recorder failed to stop cleanly")
        finally:
            writer, self._writer = self._writer, None
            if writer is not None:
                try:
                    writer.flush()
                    writer.close()
                except OSError as exc:
                    log.warning("GPU samples file %s: %s", self.path, exc)

    def energy_used_j(self, uuid: str) -> float | None:
        """Joules the GPU ``uuid`` used from the first sample to the last (None: no counter).
        A counter that went down (a driver reload) gives None rather than a wrong figure."""
        used = self._energy_used.get(uuid)
        return used if used is not None and used >= 0 else None

    def __enter__(self) -> GpuSampleRecorder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write(self, snapshot: Snapshot) -> None:
        writer = self._writer
        if writer is None:
            return
        for state in snapshot.gpus:
            reading, counters = state.reading, state.counters
            energy = reading.energy_joules
            if energy is not None:
                energy -= self._energy_base.setdefault(state.device.uuid, energy)
                self._energy_used[state.device.uuid] = energy
            writer.write(
                GpuSample(
                    t_ns=state.t_ns,
                    gpu=state.device.index,
                    uuid=state.device.uuid,
                    source=counters.source if counters is not None else "unknown",
                    # A counter this read did not move (GPM read too soon) is the previous
                    # read's: stamped with this time, it would put the next read's busy time,
                    # which covers both windows, into one sample interval.
                    sm_active_s=counters.sm_active_s
                    if counters is not None and counters.current
                    else None,
                    memory_used_bytes=reading.memory_used_bytes,
                    power_w=reading.power_watts,
                    energy_j=energy,
                )
            )
        now = time.monotonic()
        if now - self._last_flush >= _FLUSH_EVERY_S:
            self._last_flush = now
            writer.flush()


def _nvml_backend() -> GpuBackend:
    from wan_otel.exporter.nvml import NvmlBackend

    return NvmlBackend(run_figures_only=True)
