"""The stage machine of one pipeline call: hook events in, stage / step / forward records out.

Boundaries come from what diffusers' Wan pipelines do in order, observed without touching
their code: text-encoder forwards (prompt, then negative prompt), the first denoiser forward
(the loop begins), denoiser forwards under ``cache_context`` (the CFG branches), each
``scheduler.step`` (a step ends), ``vae.decode``. The stages become direct children of the
generation's current record (the root):

    preprocess?  text encode  preprocess  denoise loop (steps (forwards))  vae decode

``wan.pipeline.preprocess`` covers what happens between text encoding and the first step
(timesteps, latents, image conditioning with ``vae.encode``). It is opened provisionally
after each text-encoder forward and at the call's start, and discarded if nothing happened in
it before the next text-encoder forward (the gap between the two prompts is text encoding).
A step runs from its first denoiser forward to the end of its ``scheduler.step``.
"""

from __future__ import annotations

from typing import Any

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.generation import Generation, Record

COND = "cond"
UNCOND = "uncond"


def host_copy(value: Any) -> Any:
    """A timestep as the span will read it. On a GPU: an asynchronous copy into pinned host
    memory, queued before the step's end mark, so it is readable once the GPU passed that mark
    (reading the device tensor itself would synchronize the host every step)."""
    import torch

    if not isinstance(value, torch.Tensor) or value.device.type != "cuda" or value.numel() != 1:
        return value
    host = torch.empty((), dtype=value.dtype, pin_memory=True)
    host.copy_(value.reshape(()), non_blocking=True)
    return host


class CallObserver:
    """Turns one pipeline call's events into records under ``generation.top``."""

    def __init__(self, generation: Generation, *, boundary: float | None = None) -> None:
        """``boundary``: the expert boundary timestep of a two-expert model (None: one)."""
        self.gen = generation
        self.base = generation.top
        self._boundary = boundary
        self._two_experts = boundary is not None
        self._expert: str | None = None
        self._switch_step: Record | None = None
        self._pre: Record | None = self._open_gap()
        self._text: Record | None = None
        self._loop: Record | None = None
        self._step: Record | None = None
        self._forward: Record | None = None
        self._decode: Record | None = None
        self._step_index = -1
        self._forwards_in_step = 0
        self._last_step_end: int | None = None
        self.steps_done = 0

    def _is_open(self, record: Record | None) -> bool:
        return record is not None and self.gen.is_open(record)

    def _open_gap(self) -> Record:
        """A preprocess record on speculation: dropped if the next text-encoder forward comes
        before anything happened in it (the gap between the two prompts is text encoding)."""
        return self.gen.open(semconv.SPAN_PREPROCESS, notify=False, provisional=True)

    # -- text encoding ----------------------------------------------------------------------

    def text_encoder_start(self) -> None:
        if self._loop is not None or self._decode is not None:
            return  # a text encoder called after the loop began: not a stage of this call
        resumed = False
        if self._is_open(self._pre):
            assert self._pre is not None
            if not self._pre.children:
                self.gen.discard(self._pre)
                resumed = self._text is not None
            else:
                self.gen.close(self._pre)
                self.gen.seal(self._text)
            self._pre = None
        if resumed and self._text is not None:
            self.gen.reopen(self._text)
        if not self._is_open(self._text):
            self._text = self.gen.open(
                semconv.SPAN_TEXT_ENCODE, {semconv.COMPONENT_NAME: "text_encoder"}
            )

    def text_encoder_end(self) -> None:
        if self._is_open(self._text):
            assert self._text is not None
            self.gen.close(self._text, seal=False)  # the negative prompt may follow
            self._pre = self._open_gap()

    def _close_prelude(self) -> None:
        if self._is_open(self._text):
            assert self._text is not None
            self.gen.close(self._text)
        if self._is_open(self._pre):
            assert self._pre is not None
            self.gen.close(self._pre)
        self._pre = None
        self.gen.seal(self._text)

    # -- denoising --------------------------------------------------------------------------

    def denoiser_start(self, component: str, branch: str | None) -> None:
        loop_start = None
        if self._loop is None:
            self._close_prelude()
            loop_attrs: dict[str, Any] = {}
            if self._boundary is not None:
                loop_attrs[semconv.DENOISE_BOUNDARY_TIMESTEP] = self._boundary
            self._loop = self.gen.open(semconv.SPAN_DENOISE, loop_attrs)
            loop_start = self._loop.start
        if not self._is_open(self._step):
            self._step_index += 1
            attrs: dict[str, Any] = {semconv.DENOISE_STEP: self._step_index}
            if self._two_experts:
                attrs[semconv.DENOISE_EXPERT] = component
            self._step = self.gen.open(semconv.SPAN_DENOISE_STEP, attrs, at=loop_start)
            self._forwards_in_step = 0
            if self._two_experts:
                self._note_expert(component, self._step)
        if branch is None:  # no cache_context seen: the Wan pipelines run cond, then uncond
            branch = COND if self._forwards_in_step == 0 else UNCOND
        self._forwards_in_step += 1
        forward_attrs: dict[str, Any] = {
            semconv.COMPONENT_NAME: component,
            semconv.TRANSFORMER_BRANCH: branch,
        }
        if self._two_experts:
            forward_attrs[semconv.DENOISE_EXPERT] = component
        self._forward = self.gen.open(semconv.SPAN_TRANSFORMER_FORWARD, forward_attrs)

    def _note_expert(self, component: str, step: Record) -> None:
        """The first step of the second expert is the switch (on the loop span)."""
        if self._expert is not None and component != self._expert and self._switch_step is None:
            self._switch_step = step
            assert self._loop is not None
            self._loop.attributes[semconv.DENOISE_SWITCH_STEP] = self._step_index
        self._expert = component

    def denoiser_end(self, component: str) -> None:
        if self._is_open(self._forward):
            assert self._forward is not None
            self.gen.close(self._forward)
        self._forward = None

    def scheduler_step_end(self, timestep: Any) -> None:
        step = self._step
        if step is None or not self.gen.is_open(step):
            return
        if timestep is not None:
            step.deferred[semconv.DENOISE_TIMESTEP] = host_copy(timestep)
            if step is self._switch_step and self._loop is not None:
                self._loop.deferred[semconv.DENOISE_SWITCH_TIMESTEP] = step.deferred[
                    semconv.DENOISE_TIMESTEP
                ]
        self.gen.close(step)
        self._last_step_end = step.end
        self.steps_done += 1
        self._step = None

    def _close_loop(self) -> None:
        loop = self._loop
        if loop is None or not self.gen.is_open(loop):
            return
        loop.attributes[semconv.DENOISE_NUM_STEPS] = self.steps_done
        # The loop ends with its last step unless a step is still open (interrupted).
        end = None if self._is_open(self._step) else self._last_step_end
        self.gen.close(loop, end=end)

    # -- decoding ---------------------------------------------------------------------------

    def decode_start(self) -> None:
        self._close_loop()
        self._close_prelude()
        self._decode = self.gen.open(semconv.SPAN_VAE_DECODE, {semconv.COMPONENT_NAME: "vae"})

    def decode_end(self, error: BaseException | None) -> None:
        if self._is_open(self._decode):
            assert self._decode is not None
            self.gen.close(self._decode, error=error)

    # -- end of the call --------------------------------------------------------------------

    def finish(self, error: BaseException | None = None) -> None:
        """Close what this call opened; with ``error``, what is still open failed."""
        if error is None:
            self._close_loop()
            if self._is_open(self._pre):
                assert self._pre is not None
                if self._pre.children:
                    self.gen.close(self._pre)
                else:
                    self.gen.discard(self._pre)
        while self.gen.is_open(self.base) and self.gen.top is not self.base:
            self.gen.close(self.gen.top, error=error)
        self.gen.seal(self._text)
