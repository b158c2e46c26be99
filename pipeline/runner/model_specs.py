"""The models wan-otel builds from code: one table of presets, each with its components'
configs, its scheduler, its request defaults and the size rules its VAE and patch impose.

- ``tiny`` / ``ti2v-5b-random``: Wan2.2 TI2V-5B (one transformer, 48-channel Wan2.2 VAE at
  x16 spatial, per-token timesteps), at toy widths or full size (``reference/h100-probe.md``).
- ``tiny-a14b`` / ``t2v-a14b-random`` / ``i2v-a14b-random``: Wan2.2 A14B, two experts (a
  high-noise ``transformer`` above ``boundary_ratio`` x 1000 timesteps, a low-noise
  ``transformer_2`` below it), 40 layers of width 5120 (40 heads, FFN 13824), the Wan2.1 VAE
  (16 latent channels, x8 spatial); the I2V transformer takes 36 input channels (the noise and
  the image latents with their mask). Defaults from Wan2.2's configs: 1280x720, 81 frames at
  16 fps, 40 steps, guidance 4.0 then 3.0 (T2V) and 3.5 / 3.5 (I2V), boundary 0.875 / 0.9.

Flow shift: ``scripts/convert_wan_to_diffusers.py`` sets 5.0 for TI2V and 3.0 for the A14B
models. A checkpoint folder (``--model``) is described by ``checkpoint_spec`` from its own
config files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wan_otel.errors import WanOtelError

TASK_TI2V, TASK_T2V, TASK_I2V = "ti2v", "t2v", "i2v"
TEMPORAL_FACTOR = 4
"""Frames per latent frame of the Wan VAEs (after the first): frame counts are 4k+1."""


@dataclass(frozen=True)
class Defaults:
    """Request defaults of a model."""

    height: int
    width: int
    frames: int
    fps: int
    steps: int
    guidance: float
    max_sequence_length: int
    guidance_2: float | None = None
    """The low-noise expert's guidance scale (two-expert models)."""


@dataclass(frozen=True)
class ModelSpec:
    """What a preset builds, and the rules its requests follow."""

    name: str
    task: str
    transformer: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    flow_shift: float
    defaults: Defaults
    boundary_ratio: float | None = None
    """Set: two experts (``transformer`` and ``transformer_2``)."""
    expand_timesteps: bool = False

    @property
    def two_experts(self) -> bool:
        return self.boundary_ratio is not None

    @property
    def needs_image(self) -> bool:
        """I2V models condition every generation on a first frame."""
        return self.task == TASK_I2V

    @property
    def spatial_multiple(self) -> int:
        """Pixels per latent token along a side: the VAE's stride x the patch size."""
        patch = self.transformer.get("patch_size") or (1, 2, 2)
        return int(self.vae.get("scale_factor_spatial") or 8) * int(patch[1])

    @property
    def rope_positions(self) -> int:
        """Positions per axis the rotary embedding covers (latent frames, tokens a side)."""
        return int(self.transformer.get("rope_max_seq_len") or 1024)


_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    freq_dim=256,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
)
_TINY_TRANSFORMER = dict(
    _TRANSFORMER,
    num_attention_heads=2,
    attention_head_dim=12,
    text_dim=32,
    ffn_dim=32,
    num_layers=2,
    rope_max_seq_len=32,
)
_5B_TRANSFORMER = dict(
    _TRANSFORMER,
    num_attention_heads=24,
    attention_head_dim=128,
    text_dim=4096,
    ffn_dim=14336,
    num_layers=30,
    rope_max_seq_len=1024,
)
_A14B_TRANSFORMER = dict(
    _TRANSFORMER,
    num_attention_heads=40,
    attention_head_dim=128,
    text_dim=4096,
    ffn_dim=13824,
    num_layers=40,
    rope_max_seq_len=1024,
)

_WAN22_VAE = dict(
    z_dim=48,
    in_channels=12,
    out_channels=12,
    is_residual=True,
    patch_size=2,
    scale_factor_spatial=16,
    scale_factor_temporal=4,
    temperal_downsample=[False, True, True],
    latents_mean=[0.0] * 48,
    latents_std=[1.0] * 48,
)
_WAN21_VAE = dict(
    z_dim=16,
    scale_factor_spatial=8,
    scale_factor_temporal=4,
    temperal_downsample=[False, True, True],
)

_TEXT = dict(
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    tie_word_embeddings=False,
)
_TINY_TEXT = dict(_TEXT, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
"""Its vocabulary is the tiny tokenizer's."""
_UMT5_XXL = dict(
    _TEXT, vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64
)

_TI2V = ModelSpec(
    name="Wan2.2-TI2V-5B",
    task=TASK_TI2V,
    transformer=dict(_5B_TRANSFORMER, in_channels=48, out_channels=48),
    vae=dict(
        _WAN22_VAE, base_dim=160, decoder_base_dim=256, dim_mult=[1, 2, 4, 4], num_res_blocks=2
    ),
    text_encoder=_UMT5_XXL,
    flow_shift=5.0,
    defaults=Defaults(704, 1280, 121, 24, 50, 5.0, 512),
    expand_timesteps=True,
)
_T2V_A14B = ModelSpec(
    name="Wan2.2-T2V-A14B",
    task=TASK_T2V,
    transformer=dict(_A14B_TRANSFORMER, in_channels=16, out_channels=16),
    vae=dict(_WAN21_VAE, base_dim=96, dim_mult=[1, 2, 4, 4], num_res_blocks=2),
    text_encoder=_UMT5_XXL,
    flow_shift=3.0,
    defaults=Defaults(720, 1280, 81, 16, 40, 4.0, 512, guidance_2=3.0),
    boundary_ratio=0.875,
)

SPECS: dict[str, ModelSpec] = {
    "tiny": replace(
        _TI2V,
        name="Wan2.2-TI2V-5B-tiny",
        transformer=dict(_TINY_TRANSFORMER, in_channels=48, out_channels=48),
        vae=dict(_WAN22_VAE, base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1),
        text_encoder=_TINY_TEXT,
        defaults=Defaults(32, 32, 9, 8, 3, 5.0, 16),
    ),
    "ti2v-5b-random": _TI2V,
    "tiny-a14b": replace(
        _T2V_A14B,
        name="Wan2.2-T2V-A14B-tiny",
        transformer=dict(_TINY_TRANSFORMER, in_channels=16, out_channels=16),
        vae=dict(_WAN21_VAE, base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1),
        text_encoder=_TINY_TEXT,
        defaults=Defaults(32, 32, 9, 8, 4, 4.0, 16, guidance_2=3.0),
    ),
    "t2v-a14b-random": _T2V_A14B,
    "i2v-a14b-random": replace(
        _T2V_A14B,
        name="Wan2.2-I2V-A14B",
        task=TASK_I2V,
        transformer=dict(_A14B_TRANSFORMER, in_channels=36, out_channels=16),
        defaults=Defaults(720, 1280, 81, 16, 40, 3.5, 512, guidance_2=3.5),
        boundary_ratio=0.9,
    ),
}
"""Every preset by name."""


def checkpoint_spec(model_dir: Path) -> ModelSpec:
    """A checkpoint folder described by its own configs (``model_index.json``,
    ``transformer/config.json``, ``vae/config.json``); defaults by its kind."""
    index = _json(model_dir, "model_index.json")
    transformer = _json(model_dir, "transformer/config.json")
    vae = _json(model_dir, "vae/config.json")
    two = (model_dir / "transformer_2" / "config.json").is_file()
    image = "ImageToVideo" in str(index.get("_class_name", ""))
    base = SPECS["i2v-a14b-random" if image else "t2v-a14b-random"] if two else _TI2V
    task = base.task if two else TASK_TI2V
    ratio = index.get("boundary_ratio") if two else None
    return replace(
        base,
        name=model_dir.resolve().name.removesuffix("-Diffusers") or base.name,
        task=task,
        transformer=transformer,
        vae=vae,
        boundary_ratio=float(ratio) if isinstance(ratio, (int, float)) else base.boundary_ratio,
        expand_timesteps=bool(index.get("expand_timesteps", base.expand_timesteps)),
    )


def _json(model_dir: Path, name: str) -> dict[str, Any]:
    path = model_dir / name
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WanOtelError(f"--model {model_dir}: cannot read {name}: {exc}") from None
    if not isinstance(value, dict):
        raise WanOtelError(f"--model {model_dir}: {name} is not a JSON object")
    return value
