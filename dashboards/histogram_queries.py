"""PromQL over the pipeline's histograms: quantiles and means of one observation (a step, a
stage, a generation), over all selected pods, optionally split by labels and narrowed by
extra matchers."""

from __future__ import annotations

from dashboards import panels as p
from dashboards.panels import RATE


def quantile(q: float, histogram: str, by: str = "", window: str = RATE, extra: str = "") -> str:
    """``histogram_quantile`` of ``histogram``'s buckets, optionally split by labels."""
    group = f"le, {by}" if by else "le"
    rate = f"rate({p.selector(histogram + '_bucket', extra=extra)}{window})"
    return f"histogram_quantile({q}, sum by ({group}) ({rate}))"


def mean(histogram: str, by: str = "", window: str = RATE, extra: str = "") -> str:
    """Mean of one observation: the rate of the sum over the rate of the count."""
    group = f" by ({by})" if by else ""
    total = f"sum{group} (rate({p.selector(histogram + '_sum', extra=extra)}{window}))"
    count = f"sum{group} (rate({p.selector(histogram + '_count', extra=extra)}{window}))"
    return f"{total} / {count}"
