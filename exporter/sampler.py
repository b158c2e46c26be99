"""The sampler: reads every GPU at a fixed interval, integrates activity into counters and
publishes an immutable ``Snapshot`` that scrapes and the in-process recorder read.

Scrapes never touch the backend: a hung or slow NVML call delays the next snapshot, never a
``/metrics`` response. Activity counters add ``mean_fraction * window_s`` per read; because GPM
reports the mean between consecutive samples, the sum is the exact integral whatever the
sampling rate. A backend that is down is re-initialised with exponential backoff; a GPU that
fails is left out of the snapshot (its series disappear) while the others carry on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping

from wan_otel import semconv
from wan_otel.exporter.backend import (
    BackendError,
    BackendUnavailable,
    DeviceError,
    DeviceInfo,
    GpuBackend,
    SystemInfo,
)
from wan_otel.exporter.procinfo import ProcessResolver
from wan_otel.exporter.snapshot import GpuState, Integrals, Snapshot

log = logging.getLogger(__name__)

MIN_INTERVAL_S = semconv.GPM_MIN_GAP_S
"""NVML GPM needs more than 100 ms between two samples of a GPU ("due to the internal sample
refresh rate", NVML GPM docs); shorter intervals are refused rather than silently wrong."""


MAX_INTERVAL_S = 3600.0
"""Longer intervals are refused: every scrape would serve a stale snapshot, and /readyz (stale
after three intervals) would stay green for hours after the sampler stopped."""


def check_interval(interval_s: float) -> float:
    """``interval_s`` if usable, else ``ValueError`` saying why."""
    if math.isnan(interval_s):
        raise ValueError("sampling interval nan is not a number of seconds")
    if interval_s <= 0:
        raise ValueError(f"sampling interval {interval_s} s is not positive")
    if math.isinf(interval_s):
        raise ValueError("sampling interval inf is not a finite number of seconds")
    if interval_s < MIN_INTERVAL_S:
        raise ValueError(
            f"sampling interval {interval_s} s is below {MIN_INTERVAL_S} s: NVML GPM needs at "
            f"least 100 ms between two samples of a GPU"
        )
    if interval_s > MAX_INTERVAL_S:
        raise ValueError(
            f"sampling interval {interval_s} s is above {MAX_INTERVAL_S:g} s: every scrape "
            f"would serve a stale snapshot"
        )
    return interval_s


class Sampler:
    """Samples a ``GpuBackend`` on a thread (``start``/``stop``) or step by step
    (``sample_once``, used by tests with an injected clock)."""

    def __init__(
        self,
        backend: GpuBackend,
        interval_s: float = 0.5,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        processes: bool = True,
        resolver: ProcessResolver | None = None,
        on_sample: Callable[[Snapshot], None] | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        stale_after_s: float | None = None,
    ) -> None:
        self.interval_s = check_interval(interval_s)
        self._backend = backend
        self._clock = clock
        self._wall_ns = wall_ns
        self._processes = processes
        self._resolver = resolver
        self._on_sample = on_sample
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._backoff_s = backoff_initial_s
        self.stale_after_s = stale_after_s or max(3 * interval_s, 2.0)
        self._system: SystemInfo | None = None
        self._next_init_s = -math.inf
        self._accumulators: dict[str, Integrals] = {}
        self._failing: set[str] = set()
        self._local_errors: dict[str, int] = {}
        self._snapshot = Snapshot(up=False)
        self._lock = threading.Lock()  # one sample at a time (thread vs. a final sample)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_sample_started_s: float | None = None
        self.last_init_error: str | None = None

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot  # replaced whole, never mutated: safe to read from any thread

    def snapshot_age_s(self) -> float | None:
        taken = self._snapshot.taken_s
        return None if taken is None else max(0.0, self._clock() - taken)

    def ready(self) -> bool:
        """Backend up and a sample younger than ``stale_after_s``."""
        age = self.snapshot_age_s()
        return self._snapshot.up and age is not None and age <= self.stale_after_s

    def try_init(self) -> bool:
        """Initialise the backend now if it is down. ``False`` on failure, without logging:
        ``last_init_error`` says why and the caller decides how loud to be."""
        with self._lock:
            return self._ensure_init(self._clock(), force=True, quiet=True)

    def sample_once(self) -> Snapshot:
        """Read every GPU once and publish the new snapshot."""
        with self._lock:
            snapshot = self._sample()
        if self._on_sample is not None:
            try:
                self._on_sample(snapshot)
            except Exception:
                log.exception("GPU sample listener failed; continuing")
        return snapshot

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wan-otel-gpu-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> bool:
        """Stop the thread; waits at most ``timeout_s`` for a sample in progress (the thread is a
        daemon, so a hung NVML call cannot keep the process alive). ``False`` if it is still
        stuck in the backend."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
            return not thread.is_alive()
        return True

    def close(self, timeout_s: float = 0.5) -> None:
        """Stop and release the backend. Gives up on the release after ``timeout_s`` if a
        sample is stuck in the backend, so shutdown stays prompt."""
        self.stop(timeout_s)
        if not self._lock.acquire(timeout=timeout_s):
            log.warning("GPU sample still in progress; exiting without releasing the backend")
            return
        try:
            if self._system is not None:
                self._backend.shutdown()
                self._system = None
        finally:
            self._lock.release()

    # -- internals ---------------------------------------------------------------------------

    def _run(self) -> None:
        # Fixed-rate schedule (ticks at start + k * interval; missed ticks are skipped, not
        # bunched) so that sample times keep a steady phase against Prometheus' scrapes; but
        # never sooner than one interval after the previous sample started, so that a late
        # tick followed by a punctual one cannot put two GPM samples under 100 ms apart.
        next_s = self._clock()
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # a bug must not kill the thread and freeze the metrics
                self._count("sampler")
                log.exception("GPU sampling failed; will retry")
            next_s += self.interval_s
            now = self._clock()
            if next_s <= now:
                next_s += math.ceil((now - next_s) / self.interval_s + 1e-9) * self.interval_s
            if self.last_sample_started_s is not None:
                next_s = max(next_s, self.last_sample_started_s + self.interval_s)
            self._stop.wait(next_s - now)

    def _ensure_init(self, now: float, force: bool = False, quiet: bool = False) -> bool:
        if self._system is not None:
            return True
        if not force and now < self._next_init_s:
            return False
        try:
            self._system = self._backend.init()
        except Exception as exc:  # BackendError expected; anything else must not kill sampling
            if not isinstance(exc, BackendError):
                self._count("init")
            self.last_init_error = str(exc) or type(exc).__name__
            self._next_init_s = now + self._backoff_s
            if not quiet:
                log.warning(
                    "GPU backend unavailable (%s); retrying in %.1f s",
                    self.last_init_error,
                    self._backoff_s,
                )
            self._backoff_s = min(self._backoff_s * 2, self._backoff_max_s)
            return False
        self._backoff_s = self._backoff_initial_s
        self.last_init_error = None
        log.info("GPU backend up: %d GPU(s)", len(self._system.devices))
        return True

    def _sample(self) -> Snapshot:
        started = self._clock()
        self.last_sample_started_s = started
        if not self._ensure_init(started):
            return self._publish(Snapshot(up=False, taken_s=started, errors=self._errors()))
        assert self._system is not None
        states: list[GpuState] = []
        for device in self._system.devices:
            try:
                state = self._read(device)
            except BackendUnavailable as exc:
                log.warning("GPU backend went down (%s); re-initialising", exc)
                self._backend.shutdown()
                self._system = None
                self._next_init_s = self._clock() + self._backoff_s
                return self._publish(Snapshot(up=False, taken_s=started, errors=self._errors()))
            if state is not None:
                states.append(state)
        if self._processes and self._resolver is not None:
            states = self._attach_owners(states, self._resolver)
        done = self._clock()
        return self._publish(
            Snapshot(
                up=True,
                taken_s=done,
                t_ns=self._wall_ns(),
                duration_s=done - started,
                system=self._system,
                gpus=tuple(states),
                errors=self._errors(),
            )
        )

    def _read(self, device: DeviceInfo) -> GpuState | None:
        """The GPU's new state, or ``None`` if it failed; ``BackendUnavailable`` propagates."""
        try:
            reading = self._backend.read(device.index, processes=self._processes)
        except BackendUnavailable:
            raise
        except DeviceError as exc:
            if device.uuid not in self._failing:
                self._failing.add(device.uuid)
                log.warning("GPU %d (%s) dropped: %s", device.index, device.uuid, exc)
            return None
        except Exception:
            self._count("read")
            if device.uuid not in self._failing:
                self._failing.add(device.uuid)
                log.exception("GPU %d (%s) read failed", device.index, device.uuid)
            return None
        if device.uuid in self._failing:
            self._failing.discard(device.uuid)
            log.warning("GPU %d (%s) is back", device.index, device.uuid)
        source = reading.activity.source if reading.activity else ""
        acc = self._accumulators.setdefault(device.uuid, Integrals(source))
        return GpuState(device, self._wall_ns(), reading, acc.add(reading))

    @staticmethod
    def _attach_owners(states: list[GpuState], resolver: ProcessResolver) -> list[GpuState]:
        pids = [p.pid for s in states for p in (s.reading.processes or ())]
        owners = resolver.resolve(pids)
        return [
            GpuState(
                s.device,
                s.t_ns,
                s.reading,
                s.counters,
                {p.pid: owners[p.pid] for p in (s.reading.processes or ())},
            )
            for s in states
        ]

    def _publish(self, snapshot: Snapshot) -> Snapshot:
        self._snapshot = snapshot
        return snapshot

    def _count(self, call: str) -> None:
        self._local_errors[call] = self._local_errors.get(call, 0) + 1

    def _errors(self) -> Mapping[str, int]:
        merged = dict(self._backend.errors())
        for call, n in self._local_errors.items():
            merged[call] = merged.get(call, 0) + n
        return merged
