"""wan-otel: OpenTelemetry spans, GPU metrics and performance reports for Wan2.2 video diffusion."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# Installed, ``exporter/`` and ``pipeline/`` sit inside this package (setuptools package-dir).
# Run from a source checkout (``python -m pytest`` at the repository root puts the root first on
# sys.path), this folder is the one imported and the mapped folders are its siblings: search
# the root too, so ``wan_otel.exporter`` and ``wan_otel.pipeline`` resolve to them.
_root = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "exporter").is_dir() and (_root / "exporter").is_dir():
    __path__.append(str(_root))
