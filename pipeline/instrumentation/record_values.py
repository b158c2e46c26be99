"""Values a span takes from its record when it ends: deferred values (timesteps copied to
the host, merged-move counts), each merged collective's duration, a step's time in
collectives and outside them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.generation import (
    MERGED_MOVES,
    AttributeValue,
    Generation,
    Record,
)


def ready_value(value: Any) -> bool:
    """A deferred value can be read without waiting: not a tensor still on a GPU."""
    device = getattr(value, "device", None)
    return device is None or getattr(device, "type", "cpu") == "cpu"


def read_tensors(records: Sequence[Record]) -> None:
    """At the end of a run, device tensors still deferred (timesteps an application kept on the
    GPU) are read with one copy per device, after the run's synchronization."""
    import torch

    found: dict[Any, list[tuple[Record, str, Any]]] = {}
    for record in records:
        for key, value in record.deferred.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1 and not ready_value(value):
                found.setdefault((value.device, value.dtype), []).append((record, key, value))
    for entries in found.values():
        try:
            values = torch.stack([v.reshape(()) for _, _, v in entries]).cpu().tolist()
        except Exception:  # a poisoned CUDA context after a model error: leave them out
            for record, key, _ in entries:
                record.deferred.pop(key, None)
            continue
        for (record, key, _), number in zip(entries, values, strict=True):
            record.deferred[key] = float(number)


def _durations_s(generation: Generation, record: Record) -> list[float]:
    time_ns = generation.timeline.time_ns
    return [max(0, time_ns(e) - time_ns(s)) / 1e9 for s, e in record.intervals or ()]


def collective_figures(
    generation: Generation, record: Record, duration_ns: int
) -> dict[str, AttributeValue | tuple[float, ...]]:
    """Each collective's duration on a collective span; the step's time in collectives and
    outside them on a step span of a multi-GPU run."""
    if record.name == semconv.SPAN_COLLECTIVE:
        return {semconv.COLLECTIVE_DURATIONS: tuple(_durations_s(generation, record))}
    if record.name != semconv.SPAN_DENOISE_STEP:
        return {}
    found, todo = [], list(record.children)
    while todo:
        node = todo.pop()
        if node.name == semconv.SPAN_COLLECTIVE and not node.merged:
            found.append(node)
        todo.extend(node.children)
    if not found:
        return {}
    comm = sum(sum(_durations_s(generation, r)) for r in found)
    return {semconv.STEP_COMM_S: comm, semconv.STEP_COMPUTE_S: max(0.0, duration_ns / 1e9 - comm)}


def deferred_values(record: Record) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for key, value in record.deferred.items():
        if key == MERGED_MOVES:
            counted = (
                semconv.COLLECTIVE_COUNT
                if record.name == semconv.SPAN_COLLECTIVE
                else semconv.TRANSFER_MOVES
            )
            out[counted] = int(value)
            continue
        scalar = _scalar(value)
        if scalar is not None:
            out[key] = scalar
    return out


def _scalar(value: Any) -> AttributeValue | None:
    """A number from a host tensor or a Python value."""
    if isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)
    if item is None or not ready_value(value):
        return None
    try:
        number = item()
    except Exception:  # a multi-element tensor: leave it out
        return None
    return float(number) if isinstance(number, float | int) else None
