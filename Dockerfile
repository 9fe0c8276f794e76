# The serving image: `deepdive deploy serve` (the Open Inference Protocol v2 over HTTP, dynamic batching,
# Prometheus /metrics) on CPU torch, for an export folder mounted at /models/model:
#
#   deepdive deploy export SCRIPT --model MODEL --out export --forms onnx,torchscript
#   docker build -t deepdive-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/export:/models/model:ro" deepdive-serve
#
# Another folder or options: `docker run ... deepdive-serve /models/other --max-batch 16` (the arguments after
# the image replace CMD and follow `deepdive deploy serve --host 0.0.0.0 --port 8000`). GPU images: build
# with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (and run with --gpus all).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY server ./server
# torch first from its CPU index (PyPI's default wheel carries CUDA, ~2 GB more); then deepdive with the
# engine (torch, numpy) and deploy (onnxruntime, starlette, uvicorn, prometheus-client...) extras. The
# checkpoint store's optional C extension is skipped without a compiler: serving does not use it.
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}" \
 && pip install ".[engine,deploy]" \
 && rm -rf /src

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin deepdive \
 && mkdir -p /models && chown deepdive /models
USER deepdive
WORKDIR /home/deepdive

EXPOSE 8000
# ready = the model is loaded and warmed (the protocol's /v2/health/ready); python's urllib: the slim base has no curl
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["deepdive", "deploy", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["/models/model"]
