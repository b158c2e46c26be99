"""Helpers of the pipeline tests: the tiny pipeline, its standard call, span trees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from opentelemetry.sdk.trace import ReadableSpan

from wan_otel.pipeline.runner.presets import TINY, build_preset


def build_tiny(image: bool = False) -> Any:
    torch.manual_seed(0)
    pipe = build_preset(TINY, device=torch.device("cpu"), dtype=torch.float32, image=image).pipe
    pipe.set_progress_bar_config(disable=True)
    return pipe


CALL = dict(
    prompt="dance monkey",
    negative_prompt="negative",
    height=32,
    width=32,
    num_frames=9,
    num_inference_steps=3,
    guidance_scale=5.0,
    max_sequence_length=16,
    output_type="pt",
)


def call_tiny(pipe: Any, **overrides: Any) -> Any:
    arguments = dict(CALL, generator=torch.Generator().manual_seed(7))
    arguments.update(overrides)
    return pipe(**arguments)


Shape = tuple[str, tuple["Shape", ...]]


def span_tree(
    spans: list[ReadableSpan], describe: Callable[[ReadableSpan], str] | None = None
) -> list[Shape]:
    """The spans as nested (name, children) tuples, children in start order."""
    label = describe or (lambda s: s.name)
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)

    def build(span: ReadableSpan) -> Shape:
        kids = sorted(children.get(span.context.span_id, []), key=lambda s: s.start_time or 0)
        return (label(span), tuple(build(k) for k in kids))

    return [build(root) for root in sorted(children.get(None, []), key=lambda s: s.start_time or 0)]


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)
