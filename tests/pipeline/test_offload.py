"""Weight moves under diffusers' offload modes become ``wan.offload.transfer`` spans.

On a CPU nothing can really move between host and device, so each mechanism is exercised as
far as it runs here: group offloading runs for real (``onload_device=cpu``: diffusers still
calls ``onload_`` / ``offload_`` and copies the tensors); model offload runs for real and
must keep every forward observed across accelerate's per-call hook reset (and report no
moves, since none happen); the ``Module.to`` path model offload relies on, and accelerate's
sequential per-layer hook, are driven directly through the code paths we wrap.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.pipeline.conftest import SpanBackend
from tests.pipeline.helpers import by_name, call_tiny, span_tree
from wan_otel import semconv as sc
from wan_otel.pipeline import instrument, uninstrument, use_generation
from wan_otel.pipeline.instrumentation.generation import Generation
from wan_otel.pipeline.instrumentation.hooks import HOOK_NAME
from wan_otel.pipeline.instrumentation.observer import PipelineObserver
from wan_otel.pipeline.instrumentation.offload import (
    TO_DEVICE,
    TO_HOST,
    OffloadObserver,
    module_bytes,
)
from wan_otel.pipeline.instrumentation.span_stream import SpanStream
from wan_otel.pipeline.instrumentation.timing import HostTimeline

CPU = torch.device("cpu")


@pytest.mark.parametrize("order", ["instrument first", "offload first"])
def test_group_offload_moves_are_transfer_spans_inside_forwards(
    tiny_pipe: Any, spans: SpanBackend, order: str
) -> None:
    if order == "instrument first":
        instrument(tiny_pipe, spans.provider, run_id="g")
    tiny_pipe.enable_group_offload(
        onload_device=CPU, offload_device=CPU, offload_type="block_level", num_blocks_per_group=1
    )
    if order == "offload first":
        instrument(tiny_pipe, spans.provider, run_id="g")
    call_tiny(tiny_pipe, num_inference_steps=2)
    done = spans.spans()
    (root,) = by_name(done, sc.SPAN_GENERATE)
    assert root.attributes[sc.OFFLOAD_MODE] == "group"  # type: ignore[index]
    by_id = {s.context.span_id: s for s in done}
    transfers = by_name(done, sc.SPAN_WEIGHT_TRANSFER)
    parents: dict[tuple[str, str], list[str]] = {}
    for transfer in transfers:
        attrs = transfer.attributes or {}
        assert attrs[sc.TRANSFER_BYTES] > 0 and attrs[sc.TRANSFER_MOVES] >= 1
        assert attrs[sc.TRANSFER_DIRECTION] in (TO_DEVICE, TO_HOST)
        parent = by_id[transfer.parent.span_id]  # type: ignore[union-attr]
        key = (str(attrs[sc.COMPONENT_NAME]), str(attrs[sc.TRANSFER_DIRECTION]))
        parents.setdefault(key, []).append(parent.name)
    # Every transformer forward onloads and offloads its blocks; moves of one component and
    # direction under one forward are merged into one span.
    forwards = by_name(done, sc.SPAN_TRANSFORMER_FORWARD)
    assert parents[("transformer", TO_DEVICE)] == [sc.SPAN_TRANSFORMER_FORWARD] * len(forwards)
    assert parents[("transformer", TO_HOST)] == [sc.SPAN_TRANSFORMER_FORWARD] * len(forwards)
    assert set(parents[("text_encoder", TO_DEVICE)]) == {sc.SPAN_TEXT_ENCODE}
    assert set(parents[("vae", TO_DEVICE)]) == {sc.SPAN_VAE_DECODE}
    # The stage tree is unchanged by offloading.
    stages = [name for name, _ in span_tree(done)[0][1]]
    assert stages == [sc.SPAN_TEXT_ENCODE, sc.SPAN_PREPROCESS, sc.SPAN_DENOISE, sc.SPAN_VAE_DECODE]


@pytest.mark.parametrize("order", ["instrument first", "offload first"])
def test_model_offload_keeps_every_call_observed(
    tiny_pipe: Any, spans: SpanBackend, order: str
) -> None:
    # accelerate re-creates its hooks at the end of every call (maybe_free_model_hooks), which
    # would drop a forward wrapper put on top of its own; ours is re-asserted per call.
    if order == "instrument first":
        instrument(tiny_pipe, spans.provider, run_id="m")
    tiny_pipe.enable_model_cpu_offload(device="cpu")
    if order == "offload first":
        instrument(tiny_pipe, spans.provider, run_id="m")
    for _ in range(3):
        spans.exporter.clear()
        call_tiny(tiny_pipe, num_inference_steps=2)
        done = spans.spans()
        assert len(by_name(done, sc.SPAN_TRANSFORMER_FORWARD)) == 4
        assert len(by_name(done, sc.SPAN_TEXT_ENCODE)) == 1
        assert by_name(done, sc.SPAN_GENERATE)[0].attributes[sc.OFFLOAD_MODE] == "model"  # type: ignore[index]
        assert by_name(done, sc.SPAN_WEIGHT_TRANSFER) == []  # a CPU "device": nothing moves
    uninstrument(tiny_pipe)
    spans.exporter.clear()
    call_tiny(tiny_pipe, num_inference_steps=1)  # offload still works without us
    assert spans.spans() == []
    registry = vars(tiny_pipe.transformer).get("_diffusers_hook")
    assert registry is None or registry.get_hook(HOOK_NAME) is None


def _bound_generation(spans: SpanBackend) -> Generation:
    return Generation(
        HostTimeline(), run_id="moves", stream=SpanStream(spans.provider.get_tracer("t"))
    )


def test_component_to_another_device_is_one_transfer_span(
    tiny_pipe: Any, spans: SpanBackend
) -> None:
    """The path model offload takes (accelerate calls ``module.to(device)``), on the meta
    device, the one other device a CPU-only torch has."""
    instrument(tiny_pipe, spans.provider, run_id="moves")
    generation = _bound_generation(spans)
    nbytes = module_bytes(tiny_pipe.transformer)
    with use_generation(tiny_pipe, generation):
        tiny_pipe.transformer.to(torch.float64)  # a dtype change moves nothing
        tiny_pipe.transformer.to("cpu")  # already there
        tiny_pipe.transformer.to("meta")
    generation.finish()
    (transfer,) = by_name(spans.spans(), sc.SPAN_WEIGHT_TRANSFER)
    assert dict(transfer.attributes or {}) == {
        sc.COMPONENT_NAME: "transformer",
        sc.TRANSFER_DIRECTION: TO_DEVICE,
        sc.TRANSFER_BYTES: nbytes * 2,  # float64 by then
        sc.RUN_ID: "moves",
        sc.TIMING_SOURCE: "host",
    }


class _FakeAlignDevicesHook:
    """What accelerate's sequential offload puts on each layer: ``offload=True`` and a
    ``pre_forward`` that loads the layer's weights (here: sleeps a known time)."""

    offload = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        import time

        self.calls += 1
        time.sleep(self.seconds)
        return args, kwargs


def test_sequential_offload_layer_loads_merge_into_one_span(
    tiny_pipe: Any, spans: SpanBackend
) -> None:
    layers = [tiny_pipe.transformer.proj_out, tiny_pipe.transformer.patch_embedding]
    hooks = [_FakeAlignDevicesHook(0.01), _FakeAlignDevicesHook(0.02)]
    for layer, hook in zip(layers, hooks, strict=True):
        layer._hf_hook = hook
    instrument(tiny_pipe, spans.provider, run_id="seq")
    generation = _bound_generation(spans)
    with use_generation(tiny_pipe, generation), generation.span(sc.SPAN_DENOISE_STEP):
        for _ in range(2):
            for layer in layers:
                layer._hf_hook.pre_forward(layer)  # accelerate's new_forward calls this
    generation.finish()
    assert [h.calls for h in hooks] == [2, 2]
    (transfer,) = by_name(spans.spans(), sc.SPAN_WEIGHT_TRANSFER)
    attrs = transfer.attributes or {}
    expected_bytes = 2 * sum(module_bytes(layer) for layer in layers)
    assert attrs[sc.TRANSFER_MOVES] == 4 and attrs[sc.TRANSFER_BYTES] == expected_bytes
    assert attrs[sc.COMPONENT_NAME] == "transformer" and attrs[sc.TRANSFER_DIRECTION] == TO_DEVICE
    # Its duration is the sum of the four loads (0.06 s), not the window they spread over.
    duration = (transfer.end_time - transfer.start_time) / 1e9  # type: ignore[operator]
    assert 0.06 <= duration < 0.075
    uninstrument(tiny_pipe)
    assert all("pre_forward" not in vars(h) for h in hooks)


def test_calls_walk_the_modules_only_when_a_components_hooks_changed(
    tiny_pipe: Any, spans: SpanBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Walking every submodule for weights and offload hooks costs milliseconds on a real
    model, at a moment the GPU waits: ``instrument`` does it, a call only when something
    changed (here: group offloading enabled between two calls)."""
    walks: list[str] = []
    real_discover = OffloadObserver._discover
    real_read = PipelineObserver._read_model_attributes

    def discover(self: OffloadObserver, name: str, root: torch.nn.Module) -> None:
        walks.append(f"offload:{name}")
        real_discover(self, name, root)

    def read(self: PipelineObserver, components: dict[str, torch.nn.Module]) -> Any:
        walks.append("weights")
        return real_read(self, components)

    monkeypatch.setattr(OffloadObserver, "_discover", discover)
    monkeypatch.setattr(PipelineObserver, "_read_model_attributes", read)
    instrument(tiny_pipe, spans.provider, run_id="w")
    assert walks.count("weights") == 1 and "offload:transformer" in walks
    walks.clear()
    call_tiny(tiny_pipe, num_inference_steps=1)
    call_tiny(tiny_pipe, num_inference_steps=1)
    assert walks == []
    tiny_pipe.enable_group_offload(
        onload_device=CPU, offload_device=CPU, offload_type="block_level", num_blocks_per_group=1
    )
    call_tiny(tiny_pipe, num_inference_steps=1)
    assert "weights" in walks and {"offload:transformer", "offload:vae"} <= set(walks)
    roots = by_name(spans.spans(), sc.SPAN_GENERATE)
    assert [r.attributes[sc.OFFLOAD_MODE] for r in roots] == ["none", "none", "group"]  # type: ignore[index]


def test_group_offload_built_again_is_still_observed(tiny_pipe: Any, spans: SpanBackend) -> None:
    """diffusers tears group offloading down and builds it again around LoRA loading: new
    groups under the same hook names, whose moves must still be transfer spans."""
    from diffusers.hooks.group_offloading import _maybe_remove_and_reapply_group_offloading

    instrument(tiny_pipe, spans.provider, run_id="again")
    tiny_pipe.enable_group_offload(
        onload_device=CPU, offload_device=CPU, offload_type="block_level", num_blocks_per_group=1
    )
    call_tiny(tiny_pipe, num_inference_steps=1)
    for component in tiny_pipe.components.values():
        if isinstance(component, torch.nn.Module):
            _maybe_remove_and_reapply_group_offloading(component)
    call_tiny(tiny_pipe, num_inference_steps=1)
    done = spans.spans()
    first, second = (root.context.trace_id for root in by_name(done, sc.SPAN_GENERATE))
    moves = [s.context.trace_id for s in by_name(done, sc.SPAN_WEIGHT_TRANSFER)]
    assert moves.count(first) > 0 and moves.count(second) == moves.count(first)


def test_a_component_cast_after_instrument_is_described_as_it_runs(
    tiny_pipe: Any, spans: SpanBackend
) -> None:
    instrument(tiny_pipe, spans.provider, run_id="cast")
    fp32 = module_bytes(tiny_pipe.transformer)
    tiny_pipe.transformer.to(torch.bfloat16)
    call_tiny(tiny_pipe, num_inference_steps=1)
    (root,) = by_name(spans.spans(), sc.SPAN_GENERATE)
    attrs = root.attributes or {}
    assert attrs[sc.DTYPE_TRANSFORMER] == "bfloat16"
    assert attrs[sc.weight_bytes_key("transformer")] == fp32 // 2


def test_sequential_offload_built_again_is_still_observed(
    tiny_pipe: Any, spans: SpanBackend
) -> None:
    from accelerate import cpu_offload
    from accelerate.hooks import remove_hook_from_module

    cpu_offload(tiny_pipe.transformer, execution_device=CPU)
    instrument(tiny_pipe, spans.provider, run_id="seq-again")
    call_tiny(tiny_pipe, num_inference_steps=1)
    remove_hook_from_module(tiny_pipe.transformer, recurse=True)
    cpu_offload(tiny_pipe.transformer, execution_device=CPU)  # new hooks of the same kind
    call_tiny(tiny_pipe, num_inference_steps=1)
    done = spans.spans()
    first, second = (root.context.trace_id for root in by_name(done, sc.SPAN_GENERATE))
    moves = [s.context.trace_id for s in by_name(done, sc.SPAN_WEIGHT_TRANSFER)]
    assert moves.count(first) > 0 and moves.count(second) == moves.count(first)
