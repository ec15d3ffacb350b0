# FastAPI target: sentence-transformers/all-MiniLM-L6-v2 behind uvicorn, CPU only.
#
#   docker build -t embedding-server .                              # ONNX backend (default)
#   docker build --build-arg BACKEND=torch -t embedding-server:torch .
#   docker run --rm -p 8000:8000 embedding-server                   # http://localhost:8000/docs
#
# The model files are not downloaded here: `make setup` prepares models/all-MiniLM-L6-v2/
# (Hub layout + onnx/model.onnx + onnx/model_int8.onnx) on the host and this file copies what the
# backend needs: the onnx image carries both files, so `-e EMBEDDING_PRECISION=int8` works.
# Plain `docker build` (legacy builder) compatible: no BuildKit-only syntax.
# uvicorn always listens on 8000 inside the container (exec-form CMD, so uvicorn is PID 1 and
# gets SIGTERM directly); publish it on any host port with `-p HOST:8000`. PORT is informational.

ARG BASE_IMAGE=python:3.11-slim

# --- dependencies: a venv in /opt/venv (pip and its caches stay in this stage) ---------------
FROM ${BASE_IMAGE} AS build
ARG BACKEND=onnx
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY package/requirements.txt package/requirements-lambda.txt package/requirements-torch.txt /tmp/req/
# torch (BACKEND=torch only) comes first, from the CPU-only wheel index, and is then pinned by a
# constraint so resolving sentence-transformers can never swap in the CUDA build from PyPI.
# pip itself (and, for onnx, setuptools/wheel: torch's extension tooling may want setuptools)
# and numpy's test suites (~20 MB) are not needed at run time.
RUN set -eu; \
    python -m venv /opt/venv; \
    case "$BACKEND" in \
      onnx) set -- -r /tmp/req/requirements.txt ;; \
      torch) \
        /opt/venv/bin/pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"; \
        echo "torch==$TORCH_VERSION" > /tmp/req/torch-constraint.txt; \
        set -- -c /tmp/req/torch-constraint.txt -r /tmp/req/requirements.txt -r /tmp/req/requirements-torch.txt ;; \
      *) echo "BACKEND must be onnx or torch, got '$BACKEND'" >&2; exit 1 ;; \
    esac; \
    /opt/venv/bin/pip install --no-cache-dir "$@"; \
    if [ "$BACKEND" = onnx ]; then /opt/venv/bin/pip uninstall -q -y setuptools wheel; fi; \
    /opt/venv/bin/pip uninstall -q -y pip; \
    rm -rf /opt/venv/lib/python3*/site-packages/numpy/tests /opt/venv/lib/python3*/site-packages/numpy/*/tests
# Application code, byte-compiled now (unchecked-hash .pyc: valid whatever the file times, and
# nothing has to be written at run time).
COPY package/src/embedding_service/ /app/embedding_service/
RUN python -m compileall -q -f --invalidation-mode unchecked-hash /app

# --- model files: keep only what BACKEND reads ------------------------------------------------
FROM ${BASE_IMAGE} AS model
ARG BACKEND=onnx
COPY models/ /src-models/
RUN set -eu; \
    src=/src-models/all-MiniLM-L6-v2; \
    if [ ! -f "$src/config.json" ] || [ ! -f "$src/tokenizer.json" ]; then \
      echo "ERROR: models/all-MiniLM-L6-v2/ is missing or incomplete: run make setup first" >&2; exit 1; \
    fi; \
    case "$BACKEND" in \
      onnx) \
        if [ ! -f "$src/onnx/model.onnx" ]; then \
          echo "ERROR: models/all-MiniLM-L6-v2/onnx/model.onnx is missing: run make setup first" >&2; exit 1; \
        fi; \
        rm -f "$src/model.safetensors" "$src/pytorch_model.bin"; \
        for f in "$src"/onnx/* "$src"/onnx/.[!.]*; do \
          case "$f" in "$src/onnx/model.onnx" | "$src/onnx/model_int8.onnx") ;; *) rm -rf "$f" ;; esac; \
        done ;; \
      torch) \
        if [ ! -f "$src/model.safetensors" ]; then \
          echo "ERROR: models/all-MiniLM-L6-v2/model.safetensors is missing: run make setup first" >&2; exit 1; \
        fi; \
        rm -rf "$src/onnx" ;; \
      *) echo "BACKEND must be onnx or torch, got '$BACKEND'" >&2; exit 1 ;; \
    esac; \
    if [ ! -f /src-models/encodings/cl100k_base.tiktoken.gz ]; then \
      echo "ERROR: models/encodings/ (tiktoken rank files for token-id arrays) is missing: run make setup first" >&2; exit 1; \
    fi; \
    mkdir -p /models; \
    mv "$src" /models/all-MiniLM-L6-v2; \
    mv /src-models/encodings /models/encodings; \
    chmod -R a+rX,go-w /models

# --- runtime ----------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG BACKEND=onnx
ENV MODEL_DIR=/models/all-MiniLM-L6-v2 \
    EMBEDDING_BACKEND=${BACKEND} \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    PORT=8000
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=model /models /models
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# /status, not /health: it stays open when API_KEY is set, and uvicorn answers it only once the
# lifespan has loaded the model, so it is a readiness check here too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/status', timeout=4)"]
CMD ["uvicorn", "embedding_service.main:app", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "30"]
