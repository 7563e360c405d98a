# Affectline server images (docs/deployment.md). Two runtime targets from one file:
#   docker build --target cpu -t affectline:cpu .
#   docker build --target gpu -t affectline:gpu .
# Stages: client (Node: the browser bundle) -> wheel (the Python package with the bundle and the
# models inside) -> cpu / gpu-venv + gpu. Nothing is fetched at run time: models and client ship
# in the wheel (server/affectline/models, server/affectline/static).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# onnxruntime-gpu 1.31 wheels from PyPI are built for CUDA 12 with cuDNN 9.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

# --- client: the viewer bundle (scripts/build_client.sh without its up-to-date check) ---
FROM node:20-bookworm-slim AS client
WORKDIR /src/client_js
COPY client_js/package.json client_js/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY client_js/ ./
COPY protos/ /src/protos/
# build.mjs writes into ../server/affectline/static/app/
RUN mkdir -p /src/server/affectline/static && node scripts/build.mjs

# --- wheel: one pure-Python wheel holding code, models and the built client ---
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server/ server/
COPY --from=client /src/server/affectline/static/app/ server/affectline/static/app/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- cpu: the venv is built on the runtime's own base, so its interpreter paths match ---
FROM ${PYTHON_IMAGE} AS cpu-venv
COPY --from=wheel /wheels/ /wheels/
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir /wheels/affectline-*.whl

FROM ${PYTHON_IMAGE} AS cpu
# A fixed numeric uid: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 affectline \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/affectline --shell /usr/sbin/nologin affectline \
 && install -d -o 10001 -g 10001 /var/lib/affectline
COPY --from=cpu-venv /opt/venv/ /opt/venv/
# Listen on every interface (the default 127.0.0.1 is unreachable from outside the container),
# plaintext behind a TLS-terminating gateway (logged as a warning; set AFFECTLINE_TLS_CERT and
# AFFECTLINE_TLS_KEY to serve TLS from the container itself, docs/security.md);
# the data dir (SQLite fallback, kek.bin fallback) is a volume. No .pyc writes: the root
# filesystem is read-only under Kubernetes.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AFFECTLINE_HOST=0.0.0.0 \
    AFFECTLINE_ALLOW_PLAINTEXT=1 \
    AFFECTLINE_DEMO_DATA=0 \
    AFFECTLINE_DATA_DIR=/var/lib/affectline
VOLUME ["/var/lib/affectline"]
WORKDIR /var/lib/affectline
USER 10001:10001
EXPOSE 50051 8080
# /healthz answers 503 while the model, database or batcher is not ready; urlopen raises on it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AFFECTLINE_HTTP_PORT', '8080'), timeout=2)"]
# `affectline` is the entrypoint so the same image runs the migrations: args `db upgrade`.
ENTRYPOINT ["affectline"]
CMD ["serve"]

# --- gpu: CUDA + cuDNN runtime from NVIDIA, Python 3.11 from Ubuntu 22.04 ---
FROM ${CUDA_IMAGE} AS gpu-base
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11 \
 && rm -rf /var/lib/apt/lists/*

FROM gpu-base AS gpu-venv
# Optional TensorRT libraries for onnxruntime's TensorRT provider, as a pinned pip requirement
# matching onnxruntime-gpu's TensorRT major (e.g. tensorrt-cu12-libs==<version>); empty: CUDA only.
ARG TENSORRT_PIP=""
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11-venv \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels/ /wheels/
# onnxruntime and onnxruntime-gpu install the same `onnxruntime` module: remove the CPU wheel
# before the GPU one goes in (the `gpu` extra in pyproject.toml).
RUN python3.11 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir /wheels/affectline-*.whl \
 && /opt/venv/bin/pip uninstall -y onnxruntime \
 && /opt/venv/bin/pip install --no-cache-dir onnxruntime-gpu==1.31.1 \
 && if [ -n "$TENSORRT_PIP" ]; then /opt/venv/bin/pip install --no-cache-dir "$TENSORRT_PIP"; fi

FROM gpu-base AS gpu
RUN groupadd --system --gid 10001 affectline \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/affectline --shell /usr/sbin/nologin affectline \
 && install -d -o 10001 -g 10001 /var/lib/affectline
COPY --from=gpu-venv /opt/venv/ /opt/venv/
# tensorrt_libs (when installed) is found by onnxruntime through LD_LIBRARY_PATH.
ENV PATH=/opt/venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/tensorrt_libs:/usr/local/cuda/lib64 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AFFECTLINE_HOST=0.0.0.0 \
    AFFECTLINE_ALLOW_PLAINTEXT=1 \
    AFFECTLINE_DEMO_DATA=0 \
    AFFECTLINE_DATA_DIR=/var/lib/affectline
VOLUME ["/var/lib/affectline"]
WORKDIR /var/lib/affectline
USER 10001:10001
EXPOSE 50051 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AFFECTLINE_HTTP_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["affectline"]
CMD ["serve"]
