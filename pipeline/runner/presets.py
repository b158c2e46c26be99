"""Where a pipeline comes from: a preset built in code, or a checkpoint folder.

Presets (``model_specs.SPECS``) build every component from configs in code (nothing is
downloaded), with random weights: the toy ones run on a CPU in seconds; the full-size ones have
the real architecture (real timings and memory, noise for a video) and are built directly on
the target device in the target dtype (random init on a GPU takes a fraction of a second; on a
CPU it takes minutes), with the transformers' float32 modules kept float32 as
``from_pretrained`` does. Two-expert presets (A14B) build ``transformer`` and
``transformer_2``.

``--model DIR`` loads a ``Wan2.2-*-Diffusers`` folder (TI2V-5B, T2V-A14B, I2V-A14B: two
transformer folders) component by component, so that each one gets its own
``wan.component.initialize`` span.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wan_otel import semconv
from wan_otel.errors import WanOtelError
from wan_otel.pipeline.runner.model_specs import (
    SPECS,
    TASK_TI2V,
    TEMPORAL_FACTOR,
    Defaults,
    ModelSpec,
    checkpoint_spec,
)
from wan_otel.pipeline.runner.tokenizer import build_tokenizer

__all__ = ["TEMPORAL_FACTOR", "Defaults"]

TINY = "tiny"
TI2V_5B_RANDOM = "ti2v-5b-random"
TINY_A14B = "tiny-a14b"
PRESETS = tuple(SPECS)
SOURCE_CHECKPOINT = "checkpoint"
TINY_DEFAULTS = SPECS[TINY].defaults
TI2V_5B_DEFAULTS = SPECS[TI2V_5B_RANDOM].defaults


def spec_for(source: str, model_dir: Path | None = None) -> ModelSpec:
    """The preset's spec, or a checkpoint's from its own configs."""
    if model_dir is not None:
        return checkpoint_spec(model_dir)
    try:
        return SPECS[source]
    except KeyError:
        raise WanOtelError(
            f"unknown preset {source!r}; choose one of {', '.join(PRESETS)}"
        ) from None


def model_name(source: str, model_dir: Path | None = None) -> str:
    """The model's name in spans and metric labels."""
    return spec_for(source, model_dir).name


def defaults_for(source: str, model_dir: Path | None = None) -> Defaults:
    return spec_for(source, model_dir).defaults


ComponentScope = Callable[[str], contextlib.AbstractContextManager[Any]]


def _no_scope(name: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


@dataclass
class Built:
    pipe: Any
    model_name: str
    source: str
    task: str = TASK_TI2V


@contextlib.contextmanager
def _construct_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Parameters are created on ``device`` in ``dtype`` as modules are constructed."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _keep_fp32(model: torch.nn.Module) -> torch.nn.Module:
    """What ``from_pretrained(torch_dtype=...)`` does for ``_keep_in_fp32_modules``."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, param in model.named_parameters():
        if any(part in keep for part in name.split(".")):
            param.data = param.data.float()
    return model


def build_preset(
    source: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    image: bool = False,
    scope: ComponentScope = _no_scope,
) -> Built:
    """A pipeline of random-weight components built from the preset's configs. ``image``:
    the image-to-video pipeline (always, for an I2V model)."""
    spec = spec_for(source)
    diffusers, transformers = _libraries()
    with scope("tokenizer"):
        tokenizer = build_tokenizer()
    with scope("text_encoder"), _construct_on(device, dtype):
        text_config = {"vocab_size": len(tokenizer), **spec.text_encoder}
        text_encoder = transformers.UMT5EncoderModel(transformers.UMT5Config(**text_config))
        text_encoder.eval()
    experts = ("transformer", "transformer_2") if spec.two_experts else ("transformer",)
    transformers_built: dict[str, Any] = {"transformer_2": None}
    for name in experts:
        with scope(name), _construct_on(device, dtype):
            model = diffusers.WanTransformer3DModel(**spec.transformer).eval()
            transformers_built[name] = _keep_fp32(model)
    with scope("vae"), _construct_on(device, torch.float32):
        vae = diffusers.AutoencoderKLWan(**spec.vae).eval()
    with scope("scheduler"):
        scheduler = diffusers.UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            num_train_timesteps=1000,
            flow_shift=spec.flow_shift,
        )
    components = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                      scheduler=scheduler, **transformers_built)  # fmt: skip
    pipe = _assemble(spec, image or spec.needs_image, components)
    return Built(pipe, spec.name, source, spec.task)


def _assemble(spec: ModelSpec, image: bool, components: dict[str, Any]) -> Any:
    diffusers, _ = _libraries()
    options = dict(boundary_ratio=spec.boundary_ratio, expand_timesteps=spec.expand_timesteps)
    if image:
        return diffusers.WanImageToVideoPipeline(
            **components, **options, image_processor=None, image_encoder=None
        )
    return diffusers.WanPipeline(**components, **options)


def image_variant(pipe: Any) -> Any:
    """A ``WanImageToVideoPipeline`` on the very components of a ``WanPipeline`` (no weight is
    copied or moved), so that one loaded model serves text and image requests. Not
    diffusers' ``from_pipe``: it casts the shared modules to float32."""
    diffusers, _ = _libraries()
    config = pipe.config
    return diffusers.WanImageToVideoPipeline(
        tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae,
        scheduler=pipe.scheduler, image_processor=None, image_encoder=None,
        transformer=pipe.transformer, transformer_2=getattr(pipe, "transformer_2", None),
        boundary_ratio=config.get("boundary_ratio"),
        expand_timesteps=bool(config.get("expand_timesteps")),
    )  # fmt: skip


def load_checkpoint(
    model_dir: Path, *, dtype: torch.dtype, image: bool = False, scope: ComponentScope = _no_scope
) -> Built:
    """A ``Wan2.2-*-Diffusers`` folder, one component at a time (VAE in float32)."""
    if not (model_dir / "model_index.json").is_file():
        raise WanOtelError(f"{model_dir} is not a diffusers model folder (no model_index.json)")
    diffusers, transformers = _libraries()
    with scope("tokenizer"):
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, subfolder="tokenizer")
    with scope("text_encoder"):
        text_encoder = transformers.UMT5EncoderModel.from_pretrained(
            model_dir, subfolder="text_encoder", **_transformers_dtype(dtype)
        )
    with scope("transformer"):
        transformer = diffusers.WanTransformer3DModel.from_pretrained(
            model_dir, subfolder="transformer", torch_dtype=dtype
        )
    transformer_2 = None
    if (model_dir / "transformer_2" / "config.json").is_file():
        with scope("transformer_2"):
            transformer_2 = diffusers.WanTransformer3DModel.from_pretrained(
                model_dir, subfolder="transformer_2", torch_dtype=dtype
            )
    with scope("vae"):
        vae = diffusers.AutoencoderKLWan.from_pretrained(
            model_dir, subfolder="vae", torch_dtype=torch.float32
        )
    with scope("scheduler"):
        scheduler = diffusers.UniPCMultistepScheduler.from_pretrained(
            model_dir, subfolder="scheduler"
        )
    # from_pretrained with every component given loads none of them; it reads the pipeline's
    # own config (expand_timesteps, boundary_ratio) from model_index.json.
    spec = checkpoint_spec(model_dir)
    image = image or spec.needs_image
    cls = diffusers.WanImageToVideoPipeline if image else diffusers.WanPipeline
    extra = dict(image_encoder=None, image_processor=None) if image else {}
    pipe = cls.from_pretrained(
        model_dir, tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
        transformer_2=transformer_2, vae=vae, scheduler=scheduler, **extra,
    )  # fmt: skip
    return Built(pipe, spec.name, SOURCE_CHECKPOINT, spec.task)


def _libraries() -> tuple[Any, Any]:
    """diffusers and transformers, imported when a pipeline is built (``wan-otel --help`` and
    the report never pay for them), typed loosely: their constructors are untyped."""
    return importlib.import_module("diffusers"), importlib.import_module("transformers")


def _transformers_dtype(dtype: torch.dtype) -> dict[str, Any]:
    """transformers renamed ``torch_dtype`` to ``dtype`` (4.56)."""
    _, transformers = _libraries()
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def place(pipe: Any, offload: str, device: torch.device) -> None:
    """Put the pipeline on ``device`` directly or through one of diffusers' offload modes."""
    if offload == "none":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        pipe.to("cpu")  # group offloading starts from host-resident weights
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=device.type == "cuda",
        )
    else:
        raise WanOtelError(
            f"unknown offload mode {offload!r}; choose one of {', '.join(semconv.OFFLOAD_MODES)}"
        )
