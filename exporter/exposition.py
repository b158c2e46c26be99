"""The ``/metrics`` body: a registry encoded in the format the scraper asked for, where a metric
family that comes back unchanged from one scrape to the next is encoded only once.

The format is chosen from ``Accept`` by prometheus_client (``choose_encoder``: Prometheus text
0.0.4 by default, OpenMetrics when asked) and each family is encoded by prometheus_client's own
encoder, so the bytes are the ones ``generate_latest`` writes. What is cached is the encoding of
a family *object*: ``SnapshotCollector`` yields the same objects for as long as a snapshot
lasts and never changes them, so N scrapes between two samples encode the GPU families once per
format; prometheus_client's collectors (the process collector) build new objects on every
``collect()`` and are encoded on every scrape, which is what keeps them live. A collector that
changed a family object in place and yielded it again would be served stale bytes; none does.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

Encoder = Callable[[Collector], bytes]
ChooseEncoder = Callable[[str], tuple[Encoder, str]]

_EOF = b"# EOF\n"
_MAX_FORMATS = 4  # formats cached and prepared; the Accept header's version is free text


class _One(Collector):
    """One family, in the shape prometheus_client's encoders take (anything with collect())."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


class Throttled(Collector):
    """Another collector's families, collected again at most every ``max_age_s``: the same
    objects in between, so ``Exposition`` encodes them once per ``max_age_s`` rather than once
    per scrape. For collectors that read the system on every call (prometheus_client's process
    collector reads /proc: 0.23 ms, most of a cached scrape's cost), whose values may be that
    old. Time-based, not per sample, so a stuck sampler does not freeze them."""

    def __init__(
        self,
        collector: Collector,
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collector = collector
        self._max_age_s = max_age_s
        self._clock = clock
        self._built: tuple[float, tuple[Metric, ...]] | None = None

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        built = self._built
        if built is None or now - built[0] >= self._max_age_s:
            built = self._built = (now, tuple(self._collector.collect()))
        yield from built[1]


@dataclass(frozen=True)
class Rendered:
    body: bytes
    content_type: str
    gzipped: bool


@dataclass
class _Entry:
    family: Metric  # held so that its id() is not reused while the entry lives
    encoded: dict[str, bytes]


class Exposition:
    """Renders ``registry`` for ``/metrics``. Thread-safe; encodes one scrape at a time, so that
    concurrent scrapes of a new snapshot still encode it once.

    ``prepare`` (the CLI calls it after each sample, on the sampler's thread) encodes the new
    snapshot in every format scraped in the last ``warm_s`` seconds, so that a scrape only joins
    bytes; an exporter nobody scrapes encodes nothing.
    """

    def __init__(
        self,
        registry: Collector,
        *,
        choose: ChooseEncoder = choose_encoder,
        gzip_level: int = 6,
        warm_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._choose = choose
        self._gzip_level = gzip_level
        self._warm_s = warm_s
        self._clock = clock
        self._cache: dict[int, _Entry] = {}
        self._served: dict[str, tuple[Encoder, float]] = {}  # content type: encoder, last use
        self._lock = threading.Lock()

    def render(self, accept: str = "", accept_encoding: str = "") -> Rendered:
        try:
            encoder, content_type = self._choose(accept)
        except (TypeError, ValueError):
            # prometheus_client compares the Accept header's version as numbers and raises on
            # text ("version=abc"); such a scraper gets the format every scraper reads.
            encoder, content_type = generate_latest, CONTENT_TYPE_PLAIN_0_0_4
        with self._lock:
            if len(self._served) >= _MAX_FORMATS and content_type not in self._served:
                self._served.clear()
            self._served[content_type] = (encoder, self._clock())
            families = list(self._registry.collect())
            parts = self._encode(families, [(encoder, content_type)])[0]
        body = b"".join(parts)
        if _gzip_accepted(accept_encoding):
            return Rendered(gzip.compress(body, self._gzip_level, mtime=0), content_type, True)
        return Rendered(body, content_type, False)

    def prepare(self) -> None:
        """Encodes the registry's families now in each format scraped lately."""
        with self._lock:
            now = self._clock()
            self._served = {k: v for k, v in self._served.items() if now - v[1] <= self._warm_s}
            if self._served:
                formats = [(encoder, ct) for ct, (encoder, _) in self._served.items()]
                self._encode(list(self._registry.collect()), formats)

    def _encode(
        self, families: list[Metric], formats: list[tuple[Encoder, str]]
    ) -> list[list[bytes]]:
        """Each format's parts, from the cache where the family object is a known one."""
        outputs: list[list[bytes]] = [[] for _ in formats]
        cache: dict[int, _Entry] = {}
        for family in families:
            entry = self._cache.get(id(family))
            if entry is None or entry.family is not family:
                entry = _Entry(family, {})
            cache[id(family)] = entry
            for (encoder, content_type), parts in zip(formats, outputs):
                data = entry.encoded.get(content_type)
                if data is None:
                    data = encoder(_One(family))
                    if data.endswith(_EOF) and _is_openmetrics(content_type):
                        data = data[: -len(_EOF)]
                    if len(entry.encoded) >= _MAX_FORMATS:
                        entry.encoded.clear()
                    entry.encoded[content_type] = data
                parts.append(data)
        self._cache = cache  # only these families: the previous snapshot's are dropped
        for (_, content_type), parts in zip(formats, outputs):
            if _is_openmetrics(content_type):
                parts.append(_EOF)
        return outputs


def _is_openmetrics(content_type: str) -> bool:
    return content_type.startswith("application/openmetrics-text")


def _gzip_accepted(accept_encoding: str) -> bool:
    for coding in accept_encoding.split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False
