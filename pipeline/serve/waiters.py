"""Waiting on the API's event loop for jobs to end (long polls, ``?wait=``, and
``/v1/videos/sync``), woken from the worker thread; and the loop's one way to bound a wait.

A waiting request holds no thread: it awaits an ``asyncio.Event`` that the queue's
``on_final`` listener sets through ``call_soon_threadsafe`` whenever any job ends or is
deleted; each waiter then checks its own job. The check comes after the event is registered,
so an end between the two is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable
from typing import TypeVar

from wan_otel.pipeline.serve.job_queue import JobQueue

T = TypeVar("T")


async def within(awaitable: Awaitable[T], deadline: float | None) -> T:
    """``await awaitable`` until the loop's clock reaches ``deadline`` (None: no end), else
    ``asyncio.TimeoutError``. On 3.11+ a timer on this task, not ``wait_for``'s extra task
    (which costs about as much as a small request's whole answer)."""
    if deadline is None:
        return await awaitable
    if sys.version_info >= (3, 11):
        async with asyncio.timeout_at(deadline):
            return await awaitable
    loop = asyncio.get_running_loop()  # pragma: no cover - Python 3.10
    return await asyncio.wait_for(awaitable, max(0.0, deadline - loop.time()))


class FinalWaiters:
    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: set[asyncio.Event] = set()
        queue.on_final(self._notify)

    def _notify(self) -> None:
        """On any thread, under the queue's lock: schedule the wake-up, nothing more."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: no one waits any more
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        events, self._events = self._events, set()
        for event in events:
            event.set()

    async def wait(self, job_id: str, timeout_s: float | None) -> bool:
        """Until the job is final or gone (True) or ``timeout_s`` passes (False; None waits
        without end)."""
        self._loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else self._loop.time() + timeout_s
        while True:
            event = asyncio.Event()
            self._events.add(event)
            if self._queue.is_final(job_id):
                self._events.discard(event)
                return True
            if deadline is not None and deadline <= self._loop.time():
                self._events.discard(event)
                return False
            try:
                await within(event.wait(), deadline)
            except asyncio.TimeoutError:
                self._events.discard(event)
                return False
