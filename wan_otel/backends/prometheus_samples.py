"""GPU samples of a run's window from Prometheus, exact rather than extrapolated.

``rate()`` and ``increase()`` extrapolate to the window's edges, so the report does not use
them. It fetches the raw samples of the exporter's activity counter for the run's GPU with one
instant query of a range selector (``metric{uuid="..."}[Ws]`` at the window's end), then
integrates locally with the same code as for store samples (counter resets included). One
request per metric, however many spans. Scrape resolution bounds the error at span edges; the
report prints that bound.
"""

from __future__ import annotations

import math
from typing import Any

from wan_otel import semconv as sc
from wan_otel.backends.http_json import HttpJsonClient
from wan_otel.errors import WanOtelError
from wan_otel.store.samples import GpuSample

PAD_S = 60
"""Seconds fetched beyond each end of the window, so the samples bracketing it are included
(at least one scrape interval; Prometheus 3 range selectors are left-open)."""


def _check(body: Any, client: HttpJsonClient) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or "status" not in body:
        raise WanOtelError(
            f"Prometheus at {client.base_url} answered something that is not a "
            "Prometheus API response"
        )
    if body["status"] != "success":
        raise WanOtelError(
            f"Prometheus at {client.base_url} refused the query: "
            f"{body.get('errorType', 'error')}: {body.get('error', '?')}"
        )
    data = body.get("data") or {}
    if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise WanOtelError(
            f"Prometheus at {client.base_url} answered a {data.get('resultType')} "
            "where a range selector gives a matrix"
        )
    return list(data["result"])


def prometheus_gpu_samples(
    client: HttpJsonClient, uuid: str, start_ns: int, end_ns: int, notes: list[str]
) -> list[GpuSample]:
    """Raw samples of the SM-active counter of GPU ``uuid`` around ``[start_ns, end_ns]``."""
    end_s = math.ceil(end_ns / 1e9) + PAD_S
    window_s = end_s - math.floor(start_ns / 1e9) + PAD_S
    selector = f'{sc.GPU_SM_ACTIVE}{{{sc.LABEL_UUID}="{uuid}"}}[{window_s}s]'
    series = _check(client.get("/api/v1/query", {"query": selector, "time": str(end_s)}), client)
    if not series:
        raise WanOtelError(
            f"Prometheus at {client.base_url} has no {sc.GPU_SM_ACTIVE} samples for GPU {uuid} "
            f"in the run's window (beyond retention, or the exporter was not scraped); "
            "leave out --prometheus to report from spans alone"
        )
    series.sort(key=lambda s: len(s.get("values", [])), reverse=True)
    if len(series) > 1:
        others = ", ".join(str(s.get("metric", {})) for s in series[1:])
        notes.append(
            f"Prometheus holds {len(series)} series for GPU {uuid}; used the one with "
            f"the most samples, ignored {others}"
        )
    chosen = series[0]
    labels = chosen.get("metric", {})
    try:
        samples = [
            GpuSample(
                t_ns=round(float(t) * 1e9),
                gpu=int(labels.get(sc.LABEL_GPU, 0)),
                uuid=uuid,
                source=str(labels.get(sc.LABEL_SOURCE, "unknown")),
                sm_active_s=float(v),
            )
            for t, v in chosen.get("values", [])
        ]
    except (TypeError, ValueError) as exc:
        raise WanOtelError(
            f"Prometheus at {client.base_url} answered malformed samples: {exc}"
        ) from exc
    first, last = samples[0].t_ns, samples[-1].t_ns
    if first > start_ns or last < end_ns:
        notes.append(
            f"Prometheus samples cover {first / 1e9:.0f}..{last / 1e9:.0f} s of the run's "
            f"{start_ns / 1e9:.0f}..{end_ns / 1e9:.0f} s; rows outside are n/a"
        )
    return samples
