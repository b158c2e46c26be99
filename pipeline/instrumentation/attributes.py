"""Root-span attributes: the system, the pipeline's configuration and the request.

The prompt is private by default: its length and SHA-256 are recorded, the text only when the
caller opts in (``record_prompt``). System figures are read once per process where they cannot
change (driver version through NVML when ``pynvml`` is importable).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any

import torch

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.generation import AttributeValue
from wan_otel.pipeline.instrumentation.offload import module_bytes

_log = logging.getLogger(__name__)

ARCHITECTURE = "DiT"

Attributes = dict[str, AttributeValue]


def system_attributes(device: torch.device) -> Attributes:
    """Device, GPU identity and software versions."""
    attrs: Attributes = {
        semconv.DEVICE: str(device),
        semconv.TORCH_VERSION: torch.__version__,
        semconv.HOST_NAME: socket.gethostname(),
    }
    diffusers_version = _diffusers_version()
    if diffusers_version:
        attrs[semconv.DIFFUSERS_VERSION] = diffusers_version
    if torch.version.cuda:
        attrs[semconv.CUDA_VERSION] = torch.version.cuda
    if device.type == "cuda" and torch.cuda.is_available():
        attrs.update(_gpu_attributes(device.index if device.index is not None else 0))
    return attrs


@functools.cache
def _diffusers_version() -> str | None:
    try:
        import diffusers
    except ImportError:
        return None
    return str(diffusers.__version__)


@functools.cache
def _gpu_attributes(index: int) -> Attributes:
    props = torch.cuda.get_device_properties(index)
    attrs: Attributes = {
        semconv.GPU_NAME: str(props.name),
        semconv.GPU_MEMORY_CAPACITY: int(props.total_memory),
    }
    uuid = format_gpu_uuid(getattr(props, "uuid", None))
    if uuid:
        attrs[semconv.GPU_UUID] = uuid
    driver = _driver_version()
    if driver:
        attrs[semconv.GPU_DRIVER_VERSION] = driver
    return attrs


def format_gpu_uuid(uuid: object) -> str | None:
    """The UUID as NVML writes it (``GPU-xxxxxxxx-...``): the key that joins spans to the GPU
    exporter's series. torch prints it without the prefix."""
    if uuid is None:
        return None
    text = str(uuid)
    if not text:
        return None
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def _driver_version() -> str | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # no driver, no permission: the attribute is simply absent
        _log.debug("NVML driver version unavailable: %s", exc)
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def model_attributes(
    pipe: Any,
    components: Mapping[str, torch.nn.Module],
    *,
    name: str | None,
    task: str | None,
    source: str | None,
    offload: str,
) -> Attributes:
    """Model, offload mode, boundary, dtypes and weight bytes of a pipeline (``name``,
    ``task``, ``source``: what the caller said, else what the pipeline says)."""
    attrs: Attributes = {
        semconv.MODEL_NAME: name or model_name(pipe),
        semconv.MODEL_TASK: task or model_task(pipe),
        semconv.MODEL_ARCHITECTURE: ARCHITECTURE,
        semconv.OFFLOAD_MODE: offload,
    }
    if source:
        attrs[semconv.MODEL_SOURCE] = source
    ratio = boundary_ratio(pipe)
    if ratio is not None:
        attrs[semconv.MODEL_BOUNDARY_RATIO] = ratio
    attrs.update(dtype_attributes(components))
    attrs.update(weight_attributes(components))
    return attrs


def weight_attributes(components: Mapping[str, torch.nn.Module]) -> Attributes:
    """Static weight bytes of each component the contract names."""
    return {
        semconv.weight_bytes_key(name): module_bytes(module)
        for name, module in components.items()
        if name in semconv.WEIGHT_COMPONENTS
    }


def dtype_attributes(components: Mapping[str, torch.nn.Module]) -> Attributes:
    keys = {
        "transformer": semconv.DTYPE_TRANSFORMER,
        "text_encoder": semconv.DTYPE_TEXT_ENCODER,
        "vae": semconv.DTYPE_VAE,
    }
    attrs: Attributes = {}
    for name, key in keys.items():
        module = components.get(name)
        dtype = _dtype_of(module) if module is not None else None
        if dtype is not None:
            attrs[key] = dtype_name(dtype)
    return attrs


def weights_probe(module: torch.nn.Module) -> tuple[Any, ...]:
    """The first weight's dtype and kind: enough to see a component cast or quantized since
    its attributes were read (a cheap look; a cast of some weights only is not seen)."""
    first = next(module.parameters(), None)
    return (None,) if first is None else (first.dtype, type(first))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype_of(module: torch.nn.Module) -> torch.dtype | None:
    # The dtype most weights have (a few modules stay float32 by design).
    counts: dict[torch.dtype, int] = {}
    for param in module.parameters():
        counts[param.dtype] = counts.get(param.dtype, 0) + int(param.numel())
    return max(counts, key=lambda d: counts[d]) if counts else None


def prompt_attributes(prompt: Any, record_prompt: bool) -> Attributes:
    """Length and SHA-256 of the prompt; its text only when ``record_prompt``."""
    if prompt is None:
        return {}
    text = prompt if isinstance(prompt, str) else json.dumps(list(prompt), ensure_ascii=False)
    attrs: Attributes = {
        semconv.REQUEST_PROMPT_LENGTH: len(text),
        semconv.REQUEST_PROMPT_SHA256: hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
    if record_prompt:
        attrs[semconv.REQUEST_PROMPT] = text
    return attrs


def request_attributes(arguments: Mapping[str, Any], record_prompt: bool) -> Attributes:
    """Attributes of one pipeline call, from its bound arguments."""
    attrs: Attributes = {}
    for name, key, kind in (
        ("height", semconv.REQUEST_HEIGHT, int),
        ("width", semconv.REQUEST_WIDTH, int),
        ("num_frames", semconv.REQUEST_NUM_FRAMES, int),
        ("num_inference_steps", semconv.REQUEST_NUM_STEPS, int),
        ("guidance_scale", semconv.REQUEST_GUIDANCE, float),
        ("guidance_scale_2", semconv.REQUEST_GUIDANCE_2, float),
    ):
        value = arguments.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[key] = kind(value)
    seed = _seed(arguments.get("generator"))
    if seed is not None:
        attrs[semconv.REQUEST_SEED] = seed
    if "image" in arguments:
        attrs[semconv.REQUEST_HAS_IMAGE] = arguments.get("image") is not None
    else:
        attrs[semconv.REQUEST_HAS_IMAGE] = False
    attrs.update(prompt_attributes(arguments.get("prompt"), record_prompt))
    return attrs


def genai_attributes(root: Mapping[str, Any]) -> Attributes:
    """The OpenTelemetry GenAI view of a root span's model and request attributes (the keys
    that fit; ``semconv.GENAI_NOT_WRITTEN`` says which do not, and why)."""
    attrs: Attributes = {
        semconv.GENAI_OPERATION_NAME: semconv.GENAI_OPERATION,
        semconv.GENAI_PROVIDER_NAME: semconv.GENAI_PROVIDER,
        semconv.GENAI_OUTPUT_TYPE: semconv.GENAI_OUTPUT_VIDEO,
    }
    for ours, theirs in (
        (semconv.MODEL_NAME, semconv.GENAI_REQUEST_MODEL),
        (semconv.REQUEST_SEED, semconv.GENAI_REQUEST_SEED),
    ):
        if ours in root:
            attrs[theirs] = root[ours]
    return attrs


def _seed(generator: Any) -> int | None:
    if isinstance(generator, list | tuple):
        generator = generator[0] if generator else None
    if isinstance(generator, torch.Generator):
        return int(generator.initial_seed())  # host-side: no device access
    return None


def boundary_ratio(pipe: Any) -> float | None:
    """The expert boundary of a two-expert pipeline (Wan2.2 A14B), else None."""
    if getattr(pipe, "transformer_2", None) is None:
        return None
    ratio = getattr(pipe, "config", {}).get("boundary_ratio")
    return float(ratio) if isinstance(ratio, (int, float)) else None


def boundary_timestep(pipe: Any) -> float | None:
    """The timestep at which the low-noise expert takes over (what the pipeline compares each
    step's timestep with), else None."""
    ratio = boundary_ratio(pipe)
    scheduler = getattr(pipe, "scheduler", None)
    total = getattr(getattr(scheduler, "config", None), "num_train_timesteps", None)
    if ratio is None or not isinstance(total, int):
        return None
    return ratio * total


def model_task(pipe: Any) -> str:
    """``ti2v`` for Wan2.2 TI2V-5B (one transformer, per-token timesteps), else ``i2v``/``t2v``."""
    config = getattr(pipe, "config", {})
    if config.get("expand_timesteps") and getattr(pipe, "transformer_2", None) is None:
        return "ti2v"
    return "i2v" if "ImageToVideo" in type(pipe).__name__ else "t2v"


def model_name(pipe: Any) -> str:
    path = str(getattr(pipe, "config", {}).get("_name_or_path") or "")
    return path.rstrip("/").rsplit("/", 1)[-1] or type(pipe).__name__
