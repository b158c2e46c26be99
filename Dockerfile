# syntax=docker/dockerfile:1
# wan-otel images (docs/deploy.md):
#   docker build --target pipeline -t wan-otel-pipeline:0.1.0 .   # wan-otel serve/run, torch + CUDA
#   docker build --target exporter -t wan-otel-exporter:0.1.0 .   # GPU exporter only, no torch
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG PYTORCH_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime

# ---- exporter: build a virtualenv with the exporter extra (nvidia-ml-py, prometheus-client) ----
FROM ${PYTHON_IMAGE} AS exporter-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY wan_otel ./wan_otel
COPY exporter ./exporter
COPY pipeline ./pipeline
RUN python -m venv /opt/wan-otel \
    && /opt/wan-otel/bin/pip install --no-cache-dir ".[exporter]"

# ---- exporter: slim runtime ----
FROM ${PYTHON_IMAGE} AS exporter
ENV PATH=/opt/wan-otel/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=utility
COPY --from=exporter-build /opt/wan-otel /opt/wan-otel
RUN groupadd --system --gid 10001 wan \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin wan
USER 10001:10001
EXPOSE 9435
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9435/healthz', timeout=2)"]
ENTRYPOINT ["wan-otel", "exporter"]
CMD ["--port", "9435"]

# ---- pipeline: the PyTorch CUDA runtime image (torch, CUDA, cuDNN) plus wan-otel ----
FROM ${PYTORCH_IMAGE} AS pipeline
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    WAN_OTEL_STORE=/var/lib/wan-otel/runs
WORKDIR /src
COPY pyproject.toml README.md ./
COPY wan_otel ./wan_otel
COPY exporter ./exporter
COPY pipeline ./pipeline
# The base image's torch satisfies the pipeline extra, so pip keeps it (no second CUDA build).
# Versions: this project's own bounds in pyproject.toml (DL3013 asks for pins on named packages).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[pipeline,exporter]" \
    && python -c "import torch, diffusers, wan_otel.pipeline" \
    && groupadd --system --gid 10001 wan \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin wan \
    && mkdir -p /var/lib/wan-otel \
    && chown 10001:10001 /var/lib/wan-otel
WORKDIR /
USER 10001:10001
EXPOSE 8000 9435
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["wan-otel"]
CMD ["serve", "--preset", "ti2v-5b-random", "--port", "8000"]
