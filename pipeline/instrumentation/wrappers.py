"""Removable wrappers on non-forward entry points: instance methods and the pipeline's call.

``vae.decode``, ``scheduler.step``, ``Module.to`` and group offloading's ``onload_`` are
wrapped on the *instance* (an attribute shadowing the class method), so only instrumented
objects are affected and ``restore`` deletes the attribute again. ``pipe(...)`` looks
``__call__`` up on the class, so that one wrapper sits on the pipeline's class; it dispatches
to the instrumentation only for instances that carry it, calls the original for every other
instance, and is removed when the last instrumented instance of the class is uninstrumented.
If someone else wrapped the same attribute after us, we leave theirs in place (ours then only
passes through).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass
class MethodPatch:
    """One instance attribute we set, and what to put back."""

    obj: Any
    name: str
    wrapper: Callable[..., Any]
    previous: Any

    def restore(self) -> None:
        state = vars(self.obj)
        if state.get(self.name) is not self.wrapper:
            return  # wrapped again by someone else: leave their wrapper (ours passes through)
        if self.previous is _MISSING:
            del state[self.name]
        else:
            state[self.name] = self.previous


def patch_method(
    obj: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> MethodPatch:
    """Shadow ``obj.name`` with ``make(original bound method)`` on the instance."""
    previous = vars(obj).get(name, _MISSING)
    original = getattr(obj, name)
    wrapper = functools.wraps(original)(make(original))
    # object.__setattr__: nn.Module's __setattr__ would do the same for a plain function, but
    # other classes (schedulers, offload groups) may define their own.
    object.__setattr__(obj, name, wrapper)
    return MethodPatch(obj, name, wrapper, previous)


Dispatch = Callable[[Any, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]


@dataclass
class _CallPatch:
    cls: type
    wrapper: Callable[..., Any]
    previous: Any
    instances: weakref.WeakSet[Any]


_CALL_PATCHES: dict[type, _CallPatch] = {}
_CALL_LOCK = threading.Lock()
STATE_ATTR = "_wan_otel_instrumentation"
"""Instance attribute holding a pipeline's instrumentation state."""


def install_call_wrapper(pipe: Any, dispatch: Dispatch) -> None:
    """Make ``type(pipe).__call__`` route instrumented instances through ``dispatch``."""
    cls = type(pipe)
    with _CALL_LOCK:
        patch = _CALL_PATCHES.get(cls)
        if patch is None or vars(cls).get("__call__") is not patch.wrapper:
            original = cls.__call__
            previous = vars(cls).get("__call__", _MISSING)

            @functools.wraps(original)
            def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
                if vars(self).get(STATE_ATTR) is None:
                    return original(self, *args, **kwargs)
                return dispatch(self, original, args, kwargs)

            __call__._wan_otel_wrapper = True  # type: ignore[attr-defined]
            setattr(cls, "__call__", __call__)  # noqa: B010 (a dunder: must sit on the class)
            patch = _CallPatch(cls, __call__, previous, weakref.WeakSet())
            _CALL_PATCHES[cls] = patch
        patch.instances.add(pipe)


def remove_call_wrapper(pipe: Any) -> None:
    """Drop ``pipe``; restore the class's ``__call__`` when no instrumented instance is left."""
    cls = type(pipe)
    with _CALL_LOCK:
        patch = _CALL_PATCHES.get(cls)
        if patch is None:
            return
        patch.instances.discard(pipe)
        if len(patch.instances):
            return
        del _CALL_PATCHES[cls]
        if vars(cls).get("__call__") is not patch.wrapper:
            return
        if patch.previous is _MISSING:
            delattr(cls, "__call__")
        else:
            setattr(cls, "__call__", patch.previous)  # noqa: B010
