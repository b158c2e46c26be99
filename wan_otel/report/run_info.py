"""What a root span (the run's, or a rank's) says about the system and the request."""

from __future__ import annotations

from wan_otel import semconv as sc
from wan_otel.report.model import RunConfig, SystemInfo
from wan_otel.report.spans import attr_float, attr_gib, attr_int, attr_str
from wan_otel.store.otlp_json import SpanRecord


def system_info(root: SpanRecord) -> SystemInfo:
    return SystemInfo(
        device=attr_str(root, sc.DEVICE),
        gpu_name=attr_str(root, sc.GPU_NAME),
        gpu_uuid=attr_str(root, sc.GPU_UUID),
        vram_gb=attr_gib(root, sc.GPU_MEMORY_CAPACITY),
        driver_version=attr_str(root, sc.GPU_DRIVER_VERSION),
        cuda_version=attr_str(root, sc.CUDA_VERSION),
        torch_version=attr_str(root, sc.TORCH_VERSION),
        diffusers_version=attr_str(root, sc.DIFFUSERS_VERSION),
        host_name=attr_str(root, sc.HOST_NAME) or _resource_str(root, sc.HOST_NAME),
    )


def _resource_str(span: SpanRecord, key: str) -> str | None:
    value = span.resource.get(key)
    return None if value is None else str(value)


def run_config(root: SpanRecord) -> RunConfig:
    dtypes = {
        name: value
        for name, key in (
            ("transformer", sc.DTYPE_TRANSFORMER),
            ("text_encoder", sc.DTYPE_TEXT_ENCODER),
            ("vae", sc.DTYPE_VAE),
        )
        if (value := attr_str(root, key)) is not None
    }
    return RunConfig(
        model=attr_str(root, sc.MODEL_NAME),
        task=attr_str(root, sc.MODEL_TASK),
        source=attr_str(root, sc.MODEL_SOURCE),
        architecture=attr_str(root, sc.MODEL_ARCHITECTURE),
        width=attr_int(root, sc.REQUEST_WIDTH),
        height=attr_int(root, sc.REQUEST_HEIGHT),
        num_frames=attr_int(root, sc.REQUEST_NUM_FRAMES),
        fps=attr_int(root, sc.REQUEST_FPS),
        num_steps=attr_int(root, sc.REQUEST_NUM_STEPS),
        guidance_scale=attr_float(root, sc.REQUEST_GUIDANCE),
        seed=attr_int(root, sc.REQUEST_SEED),
        offload=attr_str(root, sc.OFFLOAD_MODE),
        dtypes=dtypes,
    )


def report_title(config: RunConfig) -> str:
    model = config.model or "Wan2.2"
    detail = ", ".join(p for p in (config.architecture, config.task, config.source) if p)
    return f"{model} Performance Analysis Report" + (f" ({detail})" if detail else "")
