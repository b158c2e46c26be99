"""Collectives of context-parallel diffusers models, timed on the compute stream.

diffusers' Ulysses and ring attention (``models/attention_dispatch.py``) and its
context-parallel hooks (``hooks/context_parallel.py``) call torch's functional collectives
through the module each file imported as ``funcol``. While a pipeline is instrumented, that
name points to a proxy whose ``all_to_all_single``, ``all_gather_tensor`` and
``permute_tensor`` open a collective record in the generation running on this thread, call
the real collective, wait for its result and close the record. diffusers waits for every one
of these results right away (``_wait_tensor``, or the next line uses it), so the early wait
changes no overlap. The record's two marks are CUDA events on the compute stream: from the
moment the stream reaches the collective to the moment its result may be used, which is the
transfer plus any wait for a slower peer. No host synchronization; everything else on the
module passes through. There is no instance to hook a collective on, hence a module-level
proxy; it is installed by the first ``instrument`` and removed with the last ``uninstrument``.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from wan_otel.pipeline.instrumentation.generation import OpenRecord
from wan_otel.pipeline.instrumentation.guard import Guard

OPS = {
    "all_to_all_single": "all_to_all",
    "all_gather_tensor": "all_gather",
    "permute_tensor": "permute",
}
"""The functional collectives diffusers' context parallelism calls, and their names in spans."""

PATCHED_MODULES = ("diffusers.models.attention_dispatch", "diffusers.hooks.context_parallel")
"""The diffusers modules whose ``funcol`` is replaced (those that call the collectives)."""


class CollectiveSink(Protocol):
    guard: Guard

    def collective_start(self, op: str, nbytes: int) -> OpenRecord | None: ...


_local = threading.local()


@contextlib.contextmanager
def bind(sink: CollectiveSink) -> Iterator[None]:
    """Collectives this thread calls within the block are recorded by ``sink``."""
    previous = getattr(_local, "sink", None)
    _local.sink = sink
    try:
        yield
    finally:
        _local.sink = previous


class _TimedFuncol:
    """Stands in for ``torch.distributed._functional_collectives`` in one module."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        op = OPS.get(name)
        if op is None:
            return attribute
        timed = _timed(op, attribute, self._real)
        self.__dict__[name] = timed  # found directly from now on
        return timed


def _timed(op: str, collective: Callable[..., Any], real: Any) -> Callable[..., Any]:
    def call(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        sink: CollectiveSink | None = getattr(_local, "sink", None)
        if sink is None:
            return collective(tensor, *args, **kwargs)

        def run() -> Any:
            result = collective(tensor, *args, **kwargs)
            waited = getattr(real, "AsyncCollectiveTensor", None)
            if waited is not None and isinstance(result, waited):
                result = result.wait()
            return result

        return sink.guard.around(
            lambda: sink.collective_start(op, _bytes(tensor)),
            lambda opened, error: opened.close(error) if opened is not None else None,
            run,
        )

    return call


def _bytes(tensor: Any) -> int:
    try:
        return int(tensor.numel()) * int(tensor.element_size())
    except Exception:  # not a tensor: nothing to count
        return 0


_installed: dict[str, Any] = {}
_users = 0
_lock = threading.Lock()


def install() -> None:
    """Put the proxy in place (counted: one per instrumented pipeline)."""
    global _users
    with _lock:
        _users += 1
        if _users > 1:
            return
        for name in PATCHED_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:  # an older diffusers without context parallelism
                continue
            real = getattr(module, "funcol", None)
            if real is None or isinstance(real, _TimedFuncol):
                continue
            _installed[name] = real
            module.funcol = _TimedFuncol(real)  # type: ignore[attr-defined]


def uninstall() -> None:
    """Restore the real modules once no instrumented pipeline is left."""
    global _users
    with _lock:
        _users = max(0, _users - 1)
        if _users:
            return
        for name, real in _installed.items():
            module = importlib.import_module(name)
            if isinstance(getattr(module, "funcol", None), _TimedFuncol):
                module.funcol = real  # type: ignore[attr-defined]
        _installed.clear()
