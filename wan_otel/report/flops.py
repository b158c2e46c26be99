"""Model FLOPs of a Wan2.2 generation: one transformer forward and one VAE decode, from the
model's configuration and the request's size (a pure function, no torch).

A FLOP is one multiply or one add (a multiply-add is 2), counted for what torch's
``FlopCounterMode`` counts: matrix products (linear layers, attention's two products) and
convolutions. Element-wise work (norms, activations, rotary embedding, the scheduler) is left
out, as it is by every MFU figure. For a forward over ``T`` video tokens of width ``d`` with
FFN width ``f`` and ``L`` text tokens, per layer: self-attention projections ``8 T d^2``, its
scores and weighted sum ``4 T^2 d``; cross-attention projections ``4 T d^2 + 4 L d^2``, its
products ``4 T L d``; the MLP ``4 T d f``. Outside the layers: the patch embedding (a
convolution), the timestep embedding (per token for TI2V-5B, whose timesteps are per token),
the text projection and the output projection. ``tests/report/test_flops.py`` checks the
count against ``FlopCounterMode`` over the real diffusers modules (the tiny models run on the
CPU; the full ones are built on the meta device): they agree exactly.

The VAE decode (``AutoencoderKLWan.decode``, one latent frame at a time through causal
convolutions) is a sum of convolutions whose outputs scale with the pixels of a frame and the
frames of each stage, and one spatial attention per latent frame in the middle block:
``P (A n + B) + K N^2 n`` for ``P`` output pixels a frame, ``n`` latent frames and ``N``
latent pixels a frame. ``A``, ``B`` and ``K`` are fitted exactly to ``FlopCounterMode``
counts of diffusers 0.42's VAEs (``benchmarks/flops_check.py --fit`` prints them); the test
checks the formula at other sizes.

The configurations mirror ``pipeline/runner/model_specs.py`` (keyed by the model name the
root span records); a test keeps them in step. The text length is the model's default
``max_sequence_length`` (diffusers pads the prompt embeddings to it): no span records it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DitConfig:
    """The transformer's shape (``WanTransformer3DModel``'s config)."""

    layers: int
    heads: int
    head_dim: int
    ffn_dim: int
    text_dim: int
    in_channels: int
    out_channels: int
    patch: tuple[int, int, int] = (1, 2, 2)
    freq_dim: int = 256
    per_token_timesteps: bool = False
    """TI2V-5B embeds one timestep per video token (``expand_timesteps``), others one a
    video."""
    text_tokens: int = 512
    """The model's default ``max_sequence_length``: the text tokens cross-attention reads."""

    @property
    def width(self) -> int:
        return self.heads * self.head_dim


@dataclass(frozen=True)
class VaeConfig:
    """The VAE's strides and its decode's FLOP coefficients (see the module docstring)."""

    spatial: int
    temporal: int
    per_pixel_latent_frame: float
    """``A``: FLOPs per output pixel per latent frame."""
    per_pixel: float
    """``B``: FLOPs per output pixel once a video (the first frame's shorter path)."""
    attention: float
    """``K``: FLOPs per squared latent pixel per latent frame (the middle block's attention,
    4 x its channels)."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    dit: DitConfig
    vae: VaeConfig


_WAN22_VAE = VaeConfig(16, 4, 73_576_594, -50_800_128, 4096)
_WAN21_VAE = VaeConfig(8, 4, 33_779_528, -23_031_360, 1536)
_TI2V_5B = DitConfig(30, 24, 128, 14336, 4096, 48, 48, per_token_timesteps=True)
_A14B = DitConfig(40, 40, 128, 13824, 4096, 16, 16)
_TINY = DitConfig(2, 2, 12, 32, 32, 48, 48, per_token_timesteps=True, text_tokens=16)

MODELS: dict[str, ModelConfig] = {
    m.name: m
    for m in (
        ModelConfig("Wan2.2-TI2V-5B", _TI2V_5B, _WAN22_VAE),
        ModelConfig("Wan2.2-T2V-A14B", _A14B, _WAN21_VAE),
        ModelConfig("Wan2.2-I2V-A14B", DitConfig(40, 40, 128, 13824, 4096, 36, 16), _WAN21_VAE),
        ModelConfig("Wan2.2-TI2V-5B-tiny", _TINY, VaeConfig(16, 4, 301437 / 64, -222021 / 64, 12)),
        ModelConfig(
            "Wan2.2-T2V-A14B-tiny",
            DitConfig(2, 2, 12, 32, 32, 16, 16, text_tokens=16),
            VaeConfig(8, 4, 170873 / 16, -126051 / 16, 12),
        ),
    )
}
"""Model name (``wan.model.name``) -> configuration. A checkpoint folder is named by its
folder (``Wan2.2-TI2V-5B-Diffusers`` records ``Wan2.2-TI2V-5B``)."""


def model_config(name: str | None) -> ModelConfig | None:
    return MODELS.get(name) if name else None


@dataclass(frozen=True)
class LatentGrid:
    """The latent video and its tokens (after the transformer's patching)."""

    frames: int
    height: int
    width: int
    tokens: int
    token_grid: tuple[int, int, int]


def latent_grid(model: ModelConfig, width: int, height: int, frames: int) -> LatentGrid:
    """The latent size of a ``width`` x ``height`` x ``frames`` video (frames 4k+1)."""
    vae, (pt, ph, pw) = model.vae, model.dit.patch
    n = (frames - 1) // vae.temporal + 1
    h, w = height // vae.spatial, width // vae.spatial
    grid = (n // pt, h // ph, w // pw)
    return LatentGrid(n, h, w, grid[0] * grid[1] * grid[2], grid)


@dataclass(frozen=True)
class ForwardFlops:
    """One transformer forward's FLOPs by part."""

    self_attention: float
    """Projections (q, k, v, out) and the two products over the video tokens."""
    cross_attention: float
    """Projections and products against the text tokens."""
    mlp: float
    embeddings: float
    """Patch embedding, timestep and text embeddings, output projection."""

    @property
    def total(self) -> float:
        return self.self_attention + self.cross_attention + self.mlp + self.embeddings


def forward_flops(dit: DitConfig, tokens: int, text_tokens: int | None = None) -> ForwardFlops:
    """FLOPs of one forward over ``tokens`` video tokens (batch 1; the whole sequence: a
    sequence-parallel run splits the same work over its ranks)."""
    t, d, f = float(tokens), float(dit.width), float(dit.ffn_dim)
    text = float(dit.text_tokens if text_tokens is None else text_tokens)
    patch = dit.patch[0] * dit.patch[1] * dit.patch[2]
    layers = dit.layers
    self_attention = layers * (8 * t * d * d + 4 * t * t * d)
    cross_attention = layers * (4 * t * d * d + 4 * text * d * d + 4 * t * text * d)
    mlp = layers * 4 * t * d * f
    time_tokens = t if dit.per_token_timesteps else 1.0
    embeddings = (
        2 * t * d * dit.in_channels * patch  # patch embedding (a strided convolution)
        + 2 * time_tokens * (dit.freq_dim * d + d * d + 6 * d * d)  # timestep MLP, projection
        + 2 * text * (dit.text_dim * d + d * d)  # text projection
        + 2 * t * d * dit.out_channels * patch  # output projection
    )
    return ForwardFlops(self_attention, cross_attention, mlp, embeddings)


def vae_decode_flops(model: ModelConfig, width: int, height: int, frames: int) -> float:
    """FLOPs of ``vae.decode`` of the whole video (batch 1)."""
    vae, grid = model.vae, latent_grid(model, width, height, frames)
    pixels = float(width * height)
    latent_pixels = float(grid.height * grid.width)
    return (
        pixels * (vae.per_pixel_latent_frame * grid.frames + vae.per_pixel)
        + vae.attention * latent_pixels * latent_pixels * grid.frames
    )
