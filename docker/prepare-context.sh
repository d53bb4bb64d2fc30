#!/usr/bin/env bash
# Copy the machine-local build inputs into docker/local/ (see docker/local/README.md):
# the CPU torch wheel (found through the host's pip find-links, e.g. /opt/wheels) and the
# host's CA bundle. Idempotent; cheap on a second run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docker/local
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PY=${PY:-python3}
log() { printf '[prepare-context] %s\n' "$*" >&2; }

mkdir -p "$out"
if [[ -r $CA_BUNDLE ]]; then
  cmp -s "$CA_BUNDLE" "$out/ca-certificates.crt" || cp "$CA_BUNDLE" "$out/ca-certificates.crt"
else
  log "no CA bundle at $CA_BUNDLE; the build will use the base image's certificates"
  rm -f "$out/ca-certificates.crt"
fi

# Only the CPU build is acceptable: a local version label (+cpu) proves it did not come from
# PyPI's default (CUDA) torch. --no-index: look only at find-links (PIP_FIND_LINKS / pip config).
if ! ls "$out"/torch-*+cpu-*.whl >/dev/null 2>&1; then
  if "$PY" -m pip download -q --no-deps --no-index --only-binary=:all: -d "$out" "$TORCH_SPEC" 2>/dev/null \
    && ls "$out"/torch-*+cpu-*.whl >/dev/null 2>&1; then
    log "torch wheel: $(basename "$out"/torch-*+cpu-*.whl)"
  else
    rm -f "$out"/torch-*.whl
    log "no local CPU torch wheel for $TORCH_SPEC; the image will install torch from TORCH_INDEX_URL"
  fi
else
  log "torch wheel cached: $(basename "$out"/torch-*+cpu-*.whl)"
fi
