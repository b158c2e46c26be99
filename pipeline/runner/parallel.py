"""Multi-GPU runs: one generation on several processes with diffusers' context parallelism.

Every rank runs the same command under ``torchrun`` (``wan-otel run --gpus N`` launches it).
The process group is ``cpu:gloo,cuda:nccl`` (gloo alone on a CPU): NCCL carries the
transformer's all-to-alls, gloo the few small exchanges of the run itself (the run id and the
trace context before the generation, the collective figures after it). Each rank uses its
``LOCAL_RANK`` GPU, builds the same random weights (one seed) and latents (one generator
seed), and enables Ulysses and/or ring attention on the transformer(s). Only rank 0 writes
the video. A rank that fails or hangs does not hold the others for good: collectives time out
after ``timeout_s`` (torchrun tears the group down sooner when a process exits).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from wan_otel import semconv
from wan_otel.errors import WanOtelError

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 300.0
"""How long a collective may wait for a peer before the group gives up (a step of Wan2.2
A14B on 8 GPUs takes seconds; a peer silent for minutes is gone)."""
WEIGHT_SEED = 20261128
"""The seed every rank builds random weights with, so that they are identical."""


@dataclass(frozen=True)
class ParallelPlan:
    """This process's place in the run and the split of the attention."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    ulysses: int = 1
    ring: int = 1

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    @property
    def writer(self) -> str | None:
        """This process's files in the run folder: rank 0 writes the run's own."""
        return None if self.rank == 0 else f"rank{self.rank}"

    @property
    def records_gpu_samples(self) -> bool:
        """One process a node samples the node's GPUs (every GPU, told apart by UUID)."""
        return self.local_rank == 0

    def attributes(self) -> dict[str, int]:
        """On every span of the rank (one-GPU runs carry none)."""
        if not self.parallel:
            return {}
        return {
            semconv.RANK: self.rank,
            semconv.WORLD_SIZE: self.world_size,
            semconv.PARALLEL_ULYSSES: self.ulysses,
            semconv.PARALLEL_RING: self.ring,
        }


def plan_from_env(ulysses: int | None, ring: int | None) -> ParallelPlan:
    """The plan from torchrun's variables and ``--ulysses`` / ``--ring``; checked here."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise WanOtelError(f"WORLD_SIZE, RANK, LOCAL_RANK: {exc}") from None
    for flag, value in (("--ulysses", ulysses), ("--ring", ring)):
        if value is not None and not 1 <= value <= 64:
            raise WanOtelError(f"{flag} {value}: must be 1 to 64")
    if world == 1:
        if (ulysses or 1) * (ring or 1) > 1:
            raise WanOtelError(
                "--ulysses/--ring need one process per GPU: run under torchrun, or use --gpus N"
            )
        return ParallelPlan()
    if ulysses is None and ring is None:
        ulysses = world
    u, r = ulysses or 1, ring or 1
    if u * r != world:
        raise WanOtelError(
            f"--ulysses {u} x --ring {r} = {u * r}, but the run has {world} processes"
        )
    return ParallelPlan(world, rank, local, u, r)


def check_heads(plan: ParallelPlan, heads: int) -> None:
    """Ulysses splits the attention heads: the degree must divide them."""
    if plan.ulysses > 1 and heads % plan.ulysses:
        raise WanOtelError(
            f"--ulysses {plan.ulysses} must divide the transformer's {heads} attention heads"
        )


def device_for(plan: ParallelPlan, device: torch.device) -> torch.device:
    """Each rank on its ``LOCAL_RANK`` GPU."""
    if plan.parallel and device.type == "cuda":
        return torch.device("cuda", plan.local_rank)
    return device


def init_group(plan: ParallelPlan, device: torch.device, timeout_s: float) -> None:
    if not plan.parallel:
        return
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout_s))


def close_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):  # a peer already gone: nothing left to close
            dist.destroy_process_group()


def share(plan: ParallelPlan, value: T) -> T:
    """Rank 0's ``value``, on every rank (a broadcast over gloo, outside the generation)."""
    if not plan.parallel:
        return value
    import torch.distributed as dist

    box: list[Any] = [value if plan.rank == 0 else None]
    dist.broadcast_object_list(box, src=0, group=_cpu_group())
    return box[0]  # type: ignore[no-any-return]


def gather(plan: ParallelPlan, value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not plan.parallel:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * plan.world_size
    dist.all_gather_object(out, value, group=_cpu_group())
    return out


_CPU_GROUP: Any = None


def _cpu_group() -> Any:
    """A gloo group for small host exchanges (objects over NCCL would go through the GPU)."""
    global _CPU_GROUP
    import torch.distributed as dist

    if _CPU_GROUP is None:
        _CPU_GROUP = dist.new_group(backend="gloo")
    return _CPU_GROUP


def enable_context_parallel(transformers: Sequence[Any], plan: ParallelPlan) -> None:
    """Ulysses and/or ring attention on each transformer, by the model's own ``_cp_plan``."""
    if not plan.parallel:
        return
    config_class: Any = importlib.import_module("diffusers").ContextParallelConfig

    for transformer in transformers:
        check_heads(plan, int(transformer.config.num_attention_heads))
        config = config_class(ulysses_degree=plan.ulysses, ring_degree=plan.ring)
        with _one_device_on_a_cpu():
            transformer.enable_parallelism(config=config)


@contextlib.contextmanager
def _one_device_on_a_cpu() -> Iterator[None]:
    """diffusers 0.42 picks the rank's device as ``rank % torch.accelerator.device_count()``
    (``ModelMixin._resolve_parallel_config``): on a machine without an accelerator that count
    is 0 and the modulo raises ZeroDivisionError before the CPU mesh is built. The device it
    computes is not used for a CPU mesh, so a count of 1 is right there. The one place we work
    around it; on a GPU nothing is changed."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is None or accelerator.device_count() > 0:
        yield
        return
    original = accelerator.device_count
    accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        accelerator.device_count = original
