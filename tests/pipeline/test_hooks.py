"""The diffusers ModelHook: the CFG branch comes from ``cache_context``; our wrapper stays
outermost when something re-wraps ``forward`` (as accelerate does); removal splices it out."""

from __future__ import annotations

import functools
from typing import Any

import torch
from diffusers.hooks.hooks import HookRegistry

from tests.pipeline.helpers import build_tiny
from wan_otel.pipeline.instrumentation.guard import Guard
from wan_otel.pipeline.instrumentation.hooks import (
    HOOK_NAME,
    ForwardObserver,
    attach,
    detach,
    ensure_outermost,
)


class _Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str | None]] = []

    def forward_start(self, component: str, branch: str | None) -> None:
        self.events.append(("start", branch))

    def forward_end(self, component: str) -> None:
        self.events.append(("end", None))


def _transformer_inputs(transformer: Any) -> dict[str, Any]:
    return dict(
        hidden_states=torch.randn(1, 48, 1, 4, 4),
        timestep=torch.tensor([500]),
        encoder_hidden_states=torch.randn(1, 16, transformer.config.text_dim),
        return_dict=False,
    )


def test_the_branch_comes_from_cache_context() -> None:
    transformer = build_tiny().transformer
    sink = _Sink()
    attach(transformer, ForwardObserver("transformer", sink, Guard()))
    inputs = _transformer_inputs(transformer)
    with transformer.cache_context("uncond"):  # an unconditional pass first: not call order
        transformer(**inputs)
    transformer(**inputs)  # outside any context
    assert sink.events == [("start", "uncond"), ("end", None), ("start", None), ("end", None)]


class _Linear(torch.nn.Linear):
    pass


def _accelerate_like_wrap(module: torch.nn.Module) -> None:
    """What accelerate's add_hook_to_module does: save forward, replace it on the instance."""
    module._old_forward = module.forward  # type: ignore[assignment]

    def new_forward(mod: Any, *args: Any, **kwargs: Any) -> Any:
        return mod._old_forward(*args, **kwargs)

    module.forward = functools.update_wrapper(
        functools.partial(new_forward, module), module._old_forward
    )  # type: ignore[method-assign]


def test_ensure_outermost_rewraps_once_and_nested_firings_pass_through() -> None:
    layer = _Linear(2, 2)
    sink = _Sink()
    attachment = attach(layer, ForwardObserver("transformer", sink, Guard()))
    _accelerate_like_wrap(layer)  # accelerate wraps us: our wrapper is now inside its chain
    ensure_outermost(attachment)
    ensure_outermost(attachment)  # already outermost: nothing changes
    assert len(attachment.wrappers) == 2 and vars(layer)["forward"] is attachment.wrappers[-1]
    layer(torch.ones(1, 2))
    assert sink.events == [("start", None), ("end", None)]  # once, not once per wrapper
    detach(attachment)
    sink.events.clear()
    layer(torch.ones(1, 2))
    assert sink.events == []
    # accelerate's saved forward no longer leads through our old wrapper
    assert vars(layer)["_old_forward"] not in attachment.wrappers
    assert vars(layer).get("_diffusers_hook") is None


def test_detach_restores_the_class_forward_and_keeps_other_hooks() -> None:
    layer = _Linear(2, 2)
    registry = HookRegistry.check_if_exists_or_initialize(layer)
    attachment = attach(layer, ForwardObserver("transformer", _Sink(), Guard()))
    assert attachment.created_registry is False
    detach(attachment)
    assert "forward" not in vars(layer)
    assert vars(layer)["_diffusers_hook"] is registry and registry.get_hook(HOOK_NAME) is None
