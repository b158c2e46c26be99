"""Where a pipeline comes from: the ``tiny`` and ``ti2v-5b-random`` presets, or a checkpoint.

Presets build every component from configs in code (nothing is downloaded):

- ``tiny``: TI2V-5B-shaped components (48-channel Wan2.2 VAE with patch size 2, per-token
  timesteps) at toy widths, random weights; runs on a CPU in about a second.
- ``ti2v-5b-random``: the full Wan2.2 TI2V-5B architecture (``reference/h100-probe.md``) with
  random weights: real timings and memory, noise for a video. Built directly on the target
  device in the target dtype (random init on a GPU takes a fraction of a second; on a CPU it
  takes minutes), with the transformer's float32 modules kept float32 as ``from_pretrained``
  does.

``--model DIR`` loads a ``Wan2.2-TI2V-5B-Diffusers`` folder component by component, so that
each one gets its own ``wan.component.initialize`` span.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wan_otel import semconv
from wan_otel.errors import WanOtelError
from wan_otel.pipeline.runner.tokenizer import build_tokenizer

TINY = "tiny"
TI2V_5B_RANDOM = "ti2v-5b-random"
PRESETS = (TINY, TI2V_5B_RANDOM)
SOURCE_CHECKPOINT = "checkpoint"
MODEL_TI2V_5B = "Wan2.2-TI2V-5B"
TASK_TI2V = "ti2v"


@dataclass(frozen=True)
class Defaults:
    """Request defaults of a model: TI2V-5B's reference settings, or toy sizes for ``tiny``."""

    height: int
    width: int
    frames: int
    fps: int
    steps: int
    guidance: float
    max_sequence_length: int


TI2V_5B_DEFAULTS = Defaults(704, 1280, 121, 24, 50, 5.0, 512)
TINY_DEFAULTS = Defaults(32, 32, 9, 8, 3, 5.0, 16)
TEMPORAL_FACTOR = 4
"""Frames per latent frame of the Wan VAEs (after the first): frame counts are 4k+1."""
SPATIAL_MULTIPLE = 32
"""TI2V-5B: pixels per latent position (VAE stride 16 x patch size 2)."""
FLOW_SHIFT = 5.0
"""UniPC flow shift of TI2V models (``scripts/convert_wan_to_diffusers.py``)."""


def model_name(source: str, model_dir: Path | None = None) -> str:
    """The model's name in spans and metric labels: a checkpoint's folder name (without
    ``-Diffusers``), or the preset's architecture."""
    if model_dir is not None:
        return model_dir.resolve().name.removesuffix("-Diffusers") or MODEL_TI2V_5B
    return f"{MODEL_TI2V_5B}-tiny" if source == TINY else MODEL_TI2V_5B


def defaults_for(source: str) -> Defaults:
    return TINY_DEFAULTS if source == TINY else TI2V_5B_DEFAULTS


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


def transformer_config(source: str) -> dict[str, Any]:
    common = dict(patch_size=(1, 2, 2), in_channels=48, out_channels=48, freq_dim=256,
                  cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)  # fmt: skip
    if source == TINY:
        return dict(common, num_attention_heads=2, attention_head_dim=12, text_dim=32,
                    ffn_dim=32, num_layers=2, rope_max_seq_len=32)  # fmt: skip
    return dict(common, num_attention_heads=24, attention_head_dim=128, text_dim=4096,
                ffn_dim=14336, num_layers=30, rope_max_seq_len=1024)  # fmt: skip


def rope_positions(source: str, model_dir: Path | None = None) -> int:
    """Positions per axis the transformer's rotary embedding covers (``rope_max_seq_len``):
    latent frames, and pixels / ``SPATIAL_MULTIPLE`` along each side, must stay within."""
    if model_dir is None:
        config = transformer_config(source)
    else:
        path = model_dir / "transformer" / "config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WanOtelError(f"--model {model_dir}: cannot read {path.name}: {exc}") from None
    value = config.get("rope_max_seq_len", 1024) if isinstance(config, dict) else None
    if not isinstance(value, int) or value < 1:
        raise WanOtelError(f"--model {model_dir}: transformer rope_max_seq_len is {value!r}")
    return value


def vae_config(source: str) -> dict[str, Any]:
    common = dict(z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                  scale_factor_spatial=16, scale_factor_temporal=4,
                  temperal_downsample=[False, True, True],
                  latents_mean=[0.0] * 48, latents_std=[1.0] * 48)  # fmt: skip
    if source == TINY:
        return dict(common, base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    return dict(common, base_dim=160, decoder_base_dim=256, dim_mult=[1, 2, 4, 4],
                num_res_blocks=2)  # fmt: skip


def text_encoder_config(source: str, vocab_size: int) -> dict[str, Any]:
    common = dict(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                  feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                  relative_attention_max_distance=128, tie_word_embeddings=False)  # fmt: skip
    if source == TINY:
        return dict(common, vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                    num_heads=4)  # fmt: skip
    return dict(common, vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                num_heads=64)  # fmt: skip


def build_preset(
    source: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    image: bool = False,
    scope: ComponentScope = _no_scope,
) -> Built:
    """A pipeline of random-weight components built from the configs above."""
    diffusers, transformers = _libraries()
    if source not in PRESETS:
        raise WanOtelError(f"unknown preset {source!r}; choose one of {', '.join(PRESETS)}")
    with scope("tokenizer"):
        tokenizer = build_tokenizer()
    with scope("text_encoder"), _construct_on(device, dtype):
        config = transformers.UMT5Config(**text_encoder_config(source, len(tokenizer)))
        text_encoder = transformers.UMT5EncoderModel(config).eval()
    with scope("transformer"), _construct_on(device, dtype):
        transformer = diffusers.WanTransformer3DModel(**transformer_config(source)).eval()
        _keep_fp32(transformer)
    with scope("vae"), _construct_on(device, torch.float32):
        vae = diffusers.AutoencoderKLWan(**vae_config(source)).eval()
    with scope("scheduler"):
        scheduler = diffusers.UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            num_train_timesteps=1000,
            flow_shift=FLOW_SHIFT,
        )
    pipe = _assemble(image, tokenizer, text_encoder, transformer, None, vae, scheduler)
    return Built(pipe, model_name(source), source)


def _assemble(
    image: bool,
    tokenizer: Any,
    text_encoder: Any,
    transformer: Any,
    transformer_2: Any,
    vae: Any,
    scheduler: Any,
) -> Any:
    diffusers, _ = _libraries()
    components = dict(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
                      transformer_2=transformer_2, vae=vae, scheduler=scheduler)  # fmt: skip
    if image:
        return diffusers.WanImageToVideoPipeline(
            **components, image_processor=None, image_encoder=None, expand_timesteps=True
        )
    return diffusers.WanPipeline(**components, boundary_ratio=None, expand_timesteps=True)


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
    """A ``Wan2.2-TI2V-5B-Diffusers`` folder, one component at a time (VAE in float32)."""
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
    cls = diffusers.WanImageToVideoPipeline if image else diffusers.WanPipeline
    extra = dict(image_encoder=None, image_processor=None) if image else {}
    pipe = cls.from_pretrained(
        model_dir, tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
        transformer_2=transformer_2, vae=vae, scheduler=scheduler, **extra,
    )  # fmt: skip
    name = model_name(SOURCE_CHECKPOINT, model_dir)
    task = TASK_TI2V if pipe.config.get("expand_timesteps") and transformer_2 is None else "t2v"
    return Built(pipe, name, SOURCE_CHECKPOINT, task)


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
