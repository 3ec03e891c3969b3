# The DDE app and library on a CUDA PyTorch base (GPU hosts with the NVIDIA container toolkit; it
# also runs without a GPU, on the CPU). Not built in CI: no Docker engine there. Build and run:
#
#   docker build -t dde .
#   docker run --gpus all -p 127.0.0.1:7860:7860 -v dde-data:/data dde
#   docker run --gpus all -p 127.0.0.1:7860:7860 -v dde-data:/data -v /models:/models:ro dde \
#       python -m app --host 0.0.0.0 --out /data/outputs --backend sd --model /models/stable-diffusion-v1-5
#
# The base's torch must equal requirements.txt's pin (torch==2.14.1, a CUDA 13.0 build on PyPI), so
# pip keeps it instead of downloading another; pass --build-arg BASE=... to use another tag.
ARG BASE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HOME=/data/hf-cache \
    HF_HUB_OFFLINE=1

WORKDIR /opt/dde
COPY requirements.txt .
RUN python -m pip install -r requirements.txt \
    && python -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1'), torch.__version__"

# a non-root user owns the data volume; the code stays read-only to it
RUN useradd --create-home --uid 1000 dde && mkdir -p /data/hf-cache /data/outputs /data/runs \
    && chown -R dde:dde /data
COPY dde dde
COPY analysis analysis
COPY app app
COPY bench bench
COPY configs configs
COPY assets assets
COPY docs docs
USER dde

# /data: the hub cache (HF_HOME; put model snapshots there or mount /models), the app's outputs
# (runs, evaluations, Gradio's file cache) and training runs
VOLUME ["/data"]
# inside the container the app listens on all interfaces; publish it on the host's loopback
# (-p 127.0.0.1:7860:7860) unless you add --auth
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)" || exit 1
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "7860", "--out", "/data/outputs"]
