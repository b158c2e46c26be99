"""Dense tensor-core peaks of the GPUs the report knows, each with its source.

MFU divides the model's FLOPs by the time and by the GPU's *dense* peak for the precision the
work ran in. Datasheets print the peaks with 2:4 structured sparsity, twice the dense figure
(marked ``*`` there); these are the dense ones. BF16 and FP16 have one peak (with FP32
accumulation, which PyTorch uses). The VAE runs in float32: its convolutions run as TF32 on the
tensor cores (PyTorch's default ``torch.backends.cudnn.allow_tf32 = True``), so its MFU is
against the TF32 peak. A GPU not in the table gives n/a; ``--peak-tflops`` sets the BF16 peak.
Variants with other clocks and power (H100 NVL, H200 NVL, H800, ...) are left out rather than
guessed.

For scale: an 8192^3 bf16 matmul on an H200 reaches 769-798 TFLOP/s, about 80 % of its peak
(``/work/shared/research/limits-energy-serving.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HOPPER = "NVIDIA Hopper architecture whitepaper (dense figures of the SXM5 table)"


@dataclass(frozen=True)
class GpuPeak:
    family: str
    """What the report calls the GPU (``H100 SXM``)."""
    tokens: frozenset[str]
    """Words of the NVML product name that all must appear (``h100``)."""
    excluded: frozenset[str]
    """Words that must not (``pcie``, ``nvl``: other variants)."""
    bf16_tflops: float
    tf32_tflops: float
    source: str


def _peak(family: str, words: str, excluded: str, bf16: float, tf32: float, source: str) -> GpuPeak:
    return GpuPeak(
        family, frozenset(words.split()), frozenset(excluded.split()), bf16, tf32, source
    )


PEAKS: tuple[GpuPeak, ...] = (
    _peak(
        "H100 SXM",
        "h100",
        "pcie nvl",
        989.4,
        494.7,
        "NVIDIA H100 datasheet: BF16 1,979 and TF32 989 TFLOPS with sparsity; " + _HOPPER,
    ),
    _peak(
        "H100 PCIe",
        "h100 pcie",
        "nvl",
        756.5,
        378.0,
        "NVIDIA H100 datasheet: BF16 1,513 and TF32 756 TFLOPS with sparsity, halved",
    ),
    _peak(
        "H200 SXM",
        "h200",
        "nvl",
        989.4,
        494.7,
        "NVIDIA H200 datasheet: BF16 1,979 and TF32 989 TFLOPS with sparsity (the H100's "
        "GH100 at the same clocks); " + _HOPPER,
    ),
    _peak(
        "H20",
        "h20",
        "",
        148.0,
        74.0,
        "NVIDIA H20 specifications as published by NVIDIA's partners (no public datasheet): "
        "BF16 148, TF32 74 TFLOPS dense",
    ),
    _peak(
        "A100",
        "a100",
        "",
        312.0,
        156.0,
        "NVIDIA A100 datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4): BF16 312 | 624*, "
        "TF32 156 | 312* TFLOPS",
    ),
    _peak(
        "L40S",
        "l40s",
        "",
        362.05,
        183.0,
        "NVIDIA L40S datasheet: BF16 362.05 | 733*, TF32 183 | 366* TFLOPS",
    ),
    _peak(
        "RTX 4090",
        "rtx 4090",
        "",
        165.2,
        82.6,
        "NVIDIA Ada Lovelace architecture whitepaper: GeForce RTX 4090 peak BF16 tensor with "
        "FP32 accumulate 165.2 | 330.4*, TF32 82.6 | 165.2* TFLOPS",
    ),
)
"""Every GPU with a known peak; the first whose words match the product name is taken."""


def _words(name: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", name.lower())) - {""}


def gpu_peak(gpu_name: str | None) -> GpuPeak | None:
    """The peak of the GPU NVML calls ``gpu_name`` (``NVIDIA H100 80GB HBM3``), or None."""
    if not gpu_name:
        return None
    words = _words(gpu_name)
    for peak in PEAKS:
        if peak.tokens <= words and not peak.excluded & words:
            return peak
    return None


def gpu_family(gpu_name: str | None) -> str | None:
    """The GPU's family in the table (``H100 SXM``), or None for one it does not know."""
    peak = gpu_peak(gpu_name)
    return peak.family if peak is not None else None
