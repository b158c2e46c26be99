"""The diffusers ``ModelHook`` on forward-based components (text encoder, transformers).

One hook class under one constant name, attached per module instance through diffusers'
``HookRegistry``. It is *stateful* so that ``cache_context("cond" / "uncond")``, which the Wan
pipelines wrap around each classifier-free-guidance pass, tells it the branch: diffusers
>= 0.41 reaches hooks through ``StateManager`` attributes (``set_context(CacheContext)``),
older releases through ``ModelHook._set_context(module, name)``; the hook speaks both.

Our wrapper must stay the *outermost* forward so that weight onloads done by offload hooks
(accelerate's ``CpuOffload``, group offloading) fall inside the component's forward span.
Accelerate replaces ``module.forward`` outside the registry and re-creates its hooks at the end
of every offloaded call, so ``ensure_outermost`` re-registers ours on top when needed (cheap:
a few attribute assignments per call). An older registration of ours left inside accelerate's
chain is harmless: the depth counter makes nested firings of the same hook pass through.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from diffusers.hooks.hooks import HookRegistry, ModelHook

from wan_otel.pipeline.instrumentation.guard import Guard

_log = logging.getLogger(__name__)

HOOK_NAME = "wan_otel"
"""The one name our hook is registered under in every component's ``HookRegistry``."""


class ForwardSink(Protocol):
    """Receives the outermost forward boundaries of hooked components."""

    def forward_start(self, component: str, branch: str | None) -> None: ...

    def forward_end(self, component: str) -> None: ...


class ForwardObserver(ModelHook):
    """Reports each outermost forward of one component, with its CFG branch when known."""

    _is_stateful = True

    def __init__(self, component: str, sink: ForwardSink, guard: Guard) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.component = component
        self.active = True
        self.depth = 0
        self.branch: str | None = None
        self._sink = sink
        self._guard = guard
        listener = _context_listener(self._on_context)
        if listener is not None:
            # diffusers >= 0.41 finds StateManager instances among the hook's attributes.
            self.cache_context_listener = listener

    def _on_context(self, name: str | None) -> None:
        self.branch = name

    def _set_context(self, module: torch.nn.Module, name: str | None) -> torch.nn.Module:
        """diffusers < 0.41: ``HookRegistry._set_context(name)`` calls this on stateful hooks."""
        self.branch = name
        return module

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        # Called by maybe_free_model_hooks at the end of a call, when no forward is in flight.
        self.depth = 0
        return module

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        self.depth += 1
        if self.depth == 1 and self.active:
            self._guard.call(self._sink.forward_start, self.component, self.branch)
        return args, kwargs

    def post_forward(self, module: torch.nn.Module, output: Any) -> Any:
        if self.depth == 1 and self.active:
            self._guard.call(self._sink.forward_end, self.component)
        if self.depth > 0:
            self.depth -= 1
        return output


@functools.cache
def _listener_class() -> type | None:
    try:
        from diffusers.hooks.hooks import BaseState, StateManager
    except ImportError:
        return None

    state_class: Any = BaseState  # diffusers annotates the class argument as an instance

    class _BranchListener(StateManager):
        """Passes the cache-context name to a callback; keeps no per-context state."""

        def __init__(self, callback: Callable[[str | None], None]) -> None:
            super().__init__(state_class)
            self._callback = callback

        def set_context(self, context: Any) -> None:  # diffusers >= 0.41: CacheContext | None
            try:
                self._callback(getattr(context, "name", context))
            except Exception:  # called from diffusers' code: never raise into it
                _log.debug("cache context listener failed", exc_info=True)

        def _set_context(self, name: str | None) -> None:  # older StateManager API
            self.set_context(name)

        def reset(self, *args: Any, **kwargs: Any) -> None:
            return None

    return _BranchListener


def _context_listener(callback: Callable[[str | None], None]) -> object | None:
    cls = _listener_class()
    if cls is None:
        return None
    try:
        listener: object = cls(callback)
    except Exception:  # StateManager's constructor changed: fall back to call order
        _log.debug("cannot build a cache-context listener", exc_info=True)
        return None
    return listener


@dataclass
class Attachment:
    """Our hook on one module, and every forward wrapper its registrations produced."""

    module: torch.nn.Module
    hook: ForwardObserver
    created_registry: bool
    wrappers: list[Any] = field(default_factory=list)


def attach(module: torch.nn.Module, hook: ForwardObserver) -> Attachment:
    created = "_diffusers_hook" not in module.__dict__
    attachment = Attachment(module, hook, created)
    _register(attachment)
    return attachment


def _register(attachment: Attachment) -> None:
    registry = HookRegistry.check_if_exists_or_initialize(attachment.module)
    registry.register_hook(attachment.hook, HOOK_NAME)
    attachment.wrappers.append(attachment.module.__dict__.get("forward"))


def _forget(module: torch.nn.Module, registry: HookRegistry) -> None:
    """Drop our registry entry but keep ``module.forward`` as it is: ``remove_hook`` relinks
    ``module.forward`` when ours is the registry's last hook, which would unhook whatever
    (accelerate) wrapped us since."""
    current = module.__dict__.get("forward")
    registry.remove_hook(HOOK_NAME, recurse=False)
    if current is not None:
        module.forward = current


def ensure_outermost(attachment: Attachment) -> None:
    """Re-register our hook on top if anything replaced ``module.forward`` since."""
    module = attachment.module
    if attachment.wrappers and module.__dict__.get("forward") is attachment.wrappers[-1]:
        return
    registry = module.__dict__.get("_diffusers_hook")
    if registry is not None and registry.get_hook(HOOK_NAME) is attachment.hook:
        _forget(module, registry)
    _register(attachment)


def reset_depth(attachment: Attachment) -> None:
    attachment.hook.depth = 0
    attachment.hook.branch = None


def detach(attachment: Attachment) -> None:
    """Remove our hook; restore the module's own ``forward`` where nothing else wraps it."""
    module, hook = attachment.module, attachment.hook
    hook.active = False
    registry = module.__dict__.get("_diffusers_hook")
    if registry is not None and registry.get_hook(HOOK_NAME) is hook:
        current = module.__dict__.get("forward")
        registry.remove_hook(HOOK_NAME, recurse=False)
        if current is not None and current is not attachment.wrappers[-1]:
            module.forward = current
    # Accelerate saved one of our wrappers as the forward it restores on reset: splice it out.
    ours = {id(w) for w in attachment.wrappers}
    saved = module.__dict__.get("_old_forward")
    while saved is not None and id(saved) in ours:
        saved = getattr(saved, "__wrapped__", None)
        if saved is not None:
            module._old_forward = saved
    own = module.__dict__.get("forward")
    if (
        own is not None
        and getattr(own, "__self__", None) is module
        and getattr(own, "__func__", None) is getattr(type(module), "forward", None)
    ):
        del module.__dict__["forward"]  # the class's forward again, as before instrumenting
    if (
        registry is not None
        and attachment.created_registry
        and not registry.hooks
        and module.__dict__.get("_diffusers_hook") is registry
    ):
        del module.__dict__["_diffusers_hook"]
