"""The model flags ``wan-otel run`` and ``wan-otel serve`` share, checked before any work.

``--preset`` or ``--model DIR``, ``--device``, ``--dtype``, ``--offload``: each is resolved and
checked up front (a folder that is not a diffusers model, a device that does not exist, an
offload mode the device cannot do), so that a bad flag is one line and exit 2, never a
traceback after minutes of loading.
"""

from __future__ import annotations

import argparse
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from wan_otel import semconv
from wan_otel.errors import WanOtelError
from wan_otel.pipeline.runner import presets

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
HOST_ONLY_OFFLOAD = {
    "model": "moves whole components to an accelerator per call",
    "sequential": "needs accelerate's hooks on an accelerator",
}
"""Offload modes a CPU device cannot do, and why (group offloading runs anywhere)."""


@dataclass(frozen=True)
class ModelChoice:
    """Which model, on which device, in which dtype, placed how."""

    source: str
    """A preset name or ``presets.SOURCE_CHECKPOINT``."""
    model_dir: Path | None
    device: torch.device
    dtype: torch.dtype
    offload: str
    max_sequence_length: int | None = None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        choices=presets.PRESETS,
        help="random-weight model built in code (default: tiny)",
    )
    source.add_argument(
        "--model", type=Path, metavar="DIR", help="a Wan2.2-TI2V-5B-Diffusers checkpoint folder"
    )
    parser.add_argument("--offload", choices=semconv.OFFLOAD_MODES, default="none")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="default: bfloat16 on CUDA")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--record-prompt",
        action="store_true",
        help="record prompts in spans (default: only their length and SHA-256)",
    )
    parser.add_argument("--max-sequence-length", type=int, help=argparse.SUPPRESS)


def model_from_args(args: argparse.Namespace) -> ModelChoice:
    """The model flags resolved and checked; bad input raises ``WanOtelError``."""
    source = presets.SOURCE_CHECKPOINT if args.model is not None else args.preset or presets.TINY
    if args.model is not None:
        check_model_dir(args.model)
    device = resolve_device(args.device)
    reason = HOST_ONLY_OFFLOAD.get(args.offload)
    if device.type == "cpu" and reason is not None:
        raise WanOtelError(
            f"--offload {args.offload} on a CPU device: it {reason}; use none or group"
        )
    length = args.max_sequence_length
    if length is not None and not 1 <= length <= 512:
        raise WanOtelError(f"--max-sequence-length {length}: must be 1 to 512")
    dtype = DTYPES[args.dtype] if args.dtype else (
        torch.bfloat16 if device.type == "cuda" else torch.float32
    )  # fmt: skip
    return ModelChoice(source, args.model, device, dtype, args.offload, length)


def check_model_dir(path: Path) -> None:
    if not path.exists():
        raise WanOtelError(f"--model {path}: no such folder")
    if not path.is_dir():
        raise WanOtelError(f"--model {path}: a file, not a model folder")
    if not (path / "model_index.json").is_file():
        raise WanOtelError(f"--model {path}: not a diffusers model folder (no model_index.json)")
    if not (path / "transformer" / "config.json").is_file():
        raise WanOtelError(f"--model {path}: no transformer/config.json")


def resolve_device(name: str | None) -> torch.device:
    """``--device``: a torch device, CUDA when available by default."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise WanOtelError(f"--device {name}: {exc}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WanOtelError(f"--device {name}: CUDA is not available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise WanOtelError(f"--device {name}: this machine has {count} CUDA device(s)")
    elif device.type != "cpu":
        raise WanOtelError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def max_frames(model: ModelChoice) -> int:
    """The most frames the transformer's rotary positions cover: ``4k+1`` frames make
    ``k+1`` latent frames, one position each."""
    positions = presets.spec_for(model.source, model.model_dir).rope_positions
    return presets.TEMPORAL_FACTOR * (positions - 1) + 1


def size_rule(model: ModelChoice) -> tuple[int, int]:
    """(multiple, largest) height or width in pixels: a latent token per multiple, as many
    tokens a side as the rotary positions cover."""
    spec = presets.spec_for(model.source, model.model_dir)
    return spec.spatial_multiple, spec.spatial_multiple * spec.rope_positions


def check_port(flag: str, port: int | None, *, allow_zero: bool = True) -> None:
    """A TCP port number in range (0: any free one, where allowed)."""
    if port is None:
        return
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise WanOtelError(f"{flag} {port}: must be {low} to 65535")


def check_port_free(flag: str, host: str, port: int) -> None:
    """Refuse a port something else listens on, before the work starts."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = f"cannot listen on {host}:{port} ({exc.strerror})"
            raise WanOtelError(f"{flag} {port}: {reason}") from None
