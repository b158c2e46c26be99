"""GPU samples of a run's window from Prometheus, exact rather than extrapolated.

``rate()`` and ``increase()`` extrapolate to the window's edges, so the report does not use
them. It fetches the raw samples of the exporter's activity counter for the run's GPU with one
instant query of a range selector (``metric{uuid="..."}[Ws]`` at the window's end), then
integrates locally with the same code as for store samples (counter resets included). One
request per metric, however many spans. Scrape resolution bounds the error at span edges; the
report prints that bound.
"""

from __future__ import annotations

import json
import math
from typing import Any

from wan_otel import semconv as sc
from wan_otel.backends.http_json import HttpJsonClient, one_line
from wan_otel.errors import WanOtelError
from wan_otel.store.otlp_json import MAX_TIME_NS
from wan_otel.store.samples import GpuSample

PAD_S = 60
"""Seconds fetched beyond each end of the window, so the samples bracketing it are included
(at least one scrape interval; Prometheus 3 range selectors are left-open)."""


def _check(body: Any, client: HttpJsonClient) -> list[Any]:
    if not isinstance(body, dict) or "status" not in body:
        raise WanOtelError(
            f"Prometheus at {client.base_url} answered something that is not a "
            "Prometheus API response"
        )
    if body["status"] != "success":
        raise WanOtelError(
            f"Prometheus at {client.base_url} refused the query: "
            f"{one_line(str(body.get('errorType', 'error')), 40)}: "
            f"{one_line(str(body.get('error', '?')))}"
        )
    data = body.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    if kind != "matrix" or not isinstance(data, dict) or not isinstance(data.get("result"), list):
        raise WanOtelError(
            f"Prometheus at {client.base_url} answered a {one_line(str(kind), 40)} "
            "where a range selector gives a matrix"
        )
    return list(data["result"])


def _values(series: Any) -> list[Any]:
    values = series.get("values") if isinstance(series, dict) else None
    return values if isinstance(values, list) else []


def _labels(series: Any) -> dict[str, Any]:
    labels = series.get("metric") if isinstance(series, dict) else None
    return labels if isinstance(labels, dict) else {}


def _sample_time(value: Any) -> int | None:
    """Unix nanoseconds of a Prometheus sample time (float seconds), if in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or not 0 < value < MAX_TIME_NS / 1e9:
        return None
    t_ns = round(value * 1e9)
    return t_ns if t_ns > 0 else None  # 1e-308 s is after 1970, but not by a nanosecond


def _counter_value(value: Any) -> float | None:
    """A counter value (Prometheus sends a decimal string), if finite and non-negative."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def prometheus_gpu_samples(
    client: HttpJsonClient, uuid: str, start_ns: int, end_ns: int, notes: list[str]
) -> list[GpuSample]:
    """Raw samples of the SM-active counter of GPU ``uuid`` around ``[start_ns, end_ns]``.

    Samples whose time or value is not a valid counter reading (not a pair, a time outside
    1970..9999, a value that is not a finite non-negative number) are dropped and counted in
    ``notes``; an answer with none left is an error. A value lower than the one before is kept:
    in Prometheus that is a counter reset (an exporter restart), integrated as one.
    """
    end_s = math.ceil(end_ns / 1e9) + PAD_S
    window_s = end_s - math.floor(start_ns / 1e9) + PAD_S
    # The UUID comes from a span attribute: quoted, so that no attribute can change the query.
    label = json.dumps(uuid, ensure_ascii=False)
    selector = f"{sc.GPU_SM_ACTIVE}{{{sc.LABEL_UUID}={label}}}[{window_s}s]"
    series = _check(client.get("/api/v1/query", {"query": selector, "time": str(end_s)}), client)
    if not series:
        raise WanOtelError(
            f"Prometheus at {client.base_url} has no {sc.GPU_SM_ACTIVE} samples for GPU {uuid} "
            f"in the run's window (beyond retention, or the exporter was not scraped); "
            "leave out --prometheus to report from spans alone"
        )
    series.sort(key=lambda s: len(_values(s)), reverse=True)
    if len(series) > 1:
        others = ", ".join(one_line(str(_labels(s)), 120) for s in series[1:4])
        more = f" and {len(series) - 4} more" if len(series) > 4 else ""
        notes.append(
            f"Prometheus holds {len(series)} series for GPU {uuid}; used the one with "
            f"the most samples, ignored {others}{more}"
        )
    chosen = series[0]
    labels = _labels(chosen)
    gpu = labels.get(sc.LABEL_GPU)
    source = labels.get(sc.LABEL_SOURCE)
    samples, dropped = [], 0
    for pair in _values(chosen):
        t_ns = _sample_time(pair[0]) if isinstance(pair, list) and len(pair) == 2 else None
        value = _counter_value(pair[1]) if t_ns is not None else None
        if t_ns is None or value is None:
            dropped += 1
            continue
        samples.append(
            GpuSample(
                t_ns=t_ns,
                gpu=int(gpu) if isinstance(gpu, str) and gpu.isdigit() and len(gpu) < 6 else 0,
                uuid=uuid,
                source=one_line(source, 40) if isinstance(source, str) else "unknown",
                sm_active_s=value,
            )
        )
    if dropped:
        notes.append(
            f"Prometheus answered {dropped} sample(s) of GPU {uuid} that are not counter "
            "readings (a time outside 1970..9999, or a value that is not a finite "
            "non-negative number); dropped"
        )
    if not samples:
        raise WanOtelError(
            f"Prometheus at {client.base_url} answered no usable {sc.GPU_SM_ACTIVE} samples "
            f"for GPU {uuid}"
        )
    samples.sort(key=lambda s: s.t_ns)
    first, last = samples[0].t_ns, samples[-1].t_ns
    if first > start_ns or last < end_ns:
        notes.append(
            f"Prometheus samples cover {first / 1e9:.0f}..{last / 1e9:.0f} s of the run's "
            f"{start_ns / 1e9:.0f}..{end_ns / 1e9:.0f} s; rows outside are n/a"
        )
    return samples
