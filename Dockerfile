# One image for every baton role (planner, researcher, summarizer, dashboard, submit...).
#
#   docker/prepare-context.sh   # copies the local CPU torch wheel + host CA bundle to docker/local/
#   docker build -t baton .     # or: docker compose build
#
# Base image: python:3.11-slim. Air-gapped (no registry): docker/build-base.sh builds
# baton-base:bookworm with debootstrap; then docker build --build-arg BASE_IMAGE=baton-base:bookworm.
# torch: the CPU wheel in docker/local/ when there is one; else from TORCH_INDEX_URL (the PyTorch
# CPU wheel index, e.g. --build-arg TORCH_INDEX_URL=...); else pip's configured index.
# The legacy builder (docker-compose 1.29) is enough: no BuildKit-only syntax is used.
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- builder: the dependencies
FROM ${BASE_IMAGE} AS builder
ARG TORCH_VERSION=2.13.0+cpu
# Only used when docker/local/ holds no torch wheel. No default: the repository names no index
# host, and the default index's torch is not the +cpu build.
ARG TORCH_INDEX_URL=
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=180

# Local inputs (torch wheel, CA bundle); when the CA bundle is there, pip trusts it.
# This layer, like the whole builder stage, never reaches the final image.
COPY docker/local/ /opt/build/
RUN set -eu; \
    if [ -s /opt/build/ca-certificates.crt ]; then \
        printf '[global]\ncert = /opt/build/ca-certificates.crt\n' > /etc/pip.conf; \
    fi; \
    python3 -m venv "$VIRTUAL_ENV"; \
    pip install -q --upgrade pip "setuptools>=68" wheel

# Layer 1 (largest, changes least): torch, from the local wheel when there is one.
RUN set -eu; \
    if ls /opt/build/torch-*.whl >/dev/null 2>&1; then \
        pip install -q --find-links /opt/build "torch==${TORCH_VERSION}"; \
    elif [ -n "${TORCH_INDEX_URL}" ]; then \
        pip install -q --extra-index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; \
    elif ! pip install -q "torch==${TORCH_VERSION}"; then \
        echo "torch==${TORCH_VERSION} is not on pip's configured index: put the CPU wheel in docker/local/" \
             "(docker/prepare-context.sh) or pass --build-arg TORCH_INDEX_URL=<PyTorch CPU wheel index>" >&2; \
        exit 1; \
    fi; \
    python -c "import torch; assert not torch.version.cuda, torch.version.cuda; print('torch', torch.__version__)"

# Layer 2: the project's dependencies, read from pyproject.toml (re-run only when it changes).
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# The dependencies and the `local` extra (in-process models: the compose stack runs the twin).
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['local']))" \
        > /tmp/requirements.txt \
    && pip install -q -c constraints.txt --find-links /opt/build -r /tmp/requirements.txt \
    && (python -m compileall -q -j 0 "$VIRTUAL_ENV" >/dev/null || true)

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    OMP_NUM_THREADS=1 \
    BATON_TORCH_THREADS=1

RUN useradd --create-home --home-dir /home/baton --uid 10001 --user-group \
        --shell /usr/sbin/nologin baton
# Dependencies only: this big layer (~940 MB) changes only when pyproject.toml does.
COPY --from=builder /opt/venv /opt/venv

# Layer 3: baton itself (small; re-run on every source change). No network needed:
# setuptools is already in the venv and every dependency is installed.
COPY pyproject.toml constraints.txt README* /tmp/src/
COPY protocol/ /tmp/src/protocol/
COPY broker/ /tmp/src/broker/
COPY agents/ /tmp/src/agents/
RUN pip install -q --no-cache-dir --no-deps --no-build-isolation --no-index /tmp/src \
    && pip check \
    && rm -rf /tmp/src

USER baton
ENV HOME=/home/baton
WORKDIR /home/baton
# The offline twin model is built into the image, so containers never reach the hub.
RUN baton model build

ENTRYPOINT ["baton"]
CMD ["--help"]
