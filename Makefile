# baton: `make demo` runs the seed workflow, `make test` runs the test suite.
# Each target sets up what it needs (.venv, dependencies); Redis is started by baton or the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINKED := $(VENV)/.linked
PIP := $(BIN)/pip install -q -c constraints.txt
# Strict editable install: a link tree of the repository's folders under the `baton` namespace.
EDITABLE := --config-settings editable_mode=strict
SOURCES := $(shell find agents broker protocol -type f -not -name '*.pyc' -not -path '*/__pycache__/*' 2>/dev/null)
TASK ?= Explain the importance of supervised learning.
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: bench-check scale soak chaos-cluster chaos-outages demo test test-replicated browser-deps docker-deps lint typecheck openapi chaos bench compose-test compose-lint packaging-test model clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) -e '.[local,dev,bench,semantic]' $(EDITABLE)
	touch $(STAMP) $(LINKED)

# A file added to agents/, broker/ or protocol/ joins the link tree here (a few seconds).
$(LINKED): $(STAMP) $(SOURCES)
	$(PIP) --no-deps --no-build-isolation -e . $(EDITABLE)
	touch $(LINKED)

venv: $(LINKED)

model: $(LINKED)
	$(BIN)/baton model build

demo: $(LINKED)
	$(BIN)/baton run "$(TASK)"

# The suite in TEST_JOBS processes (pytest-xdist): each has its own redis-server, ports, data dirs
# and cache dir (tests/conftest.py); tests of one xdist_group share a process (and its fixtures).
TEST_JOBS ?= 6
test: $(LINKED) browser-deps
	$(BIN)/pytest -q -n $(TEST_JOBS) --dist loadgroup

# The suites on a real Redis Cluster (six servers) and Sentinel group (the `replicated` marker,
# tests/conftest.py): left out of `make test`, run on their own by .ci/run (about 2 min).
test-replicated: $(LINKED)
	$(BIN)/pytest -q -m 'replicated and not chaos and not compose' -n 2 --dist loadgroup

# The dashboard's browser test drives Debian's chromium; install it when missing and we are root.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || { \
	  echo "installing chromium for the dashboard's browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "could not install chromium: the browser test will be skipped"

lint: $(LINKED)
	$(BIN)/ruff check protocol broker agents tests bench examples
	$(BIN)/mypy --strict -p baton.protocol -p baton.broker -m baton -m baton.client -m baton.aio -m baton.errors

# The HTTP API's OpenAPI document; tests/ops/test_api.py fails when docs/openapi.json is stale.
openapi: $(LINKED)
	$(BIN)/baton api openapi > docs/openapi.json

# Side-by-side benchmark (seed notebook, baton, Celery, ceiling); rewrites its sections of BENCHMARKS.md. Not part of `make test`.
bench: $(LINKED)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The hot path's speed ratios side by side with the Celery chain and the notebook (a few minutes);
# fails only far below the targets (bench/check.py). Run by .ci/run, not by `make test`.
bench-check: $(LINKED)
	$(BIN)/python -m bench.check

# The scale curve: 1,000 to 100,000 runs; writes its BENCHMARKS.md section and docs/scale.png.
scale: $(LINKED)
	$(BIN)/python -m bench.scale --write $(SCALE_ARGS)

# 200 runs through the three roles, 2 workers per role, SIGKILLed workers and one Redis restart;
# exits non-zero if a run was lost or duplicated (see docs/RELIABILITY.md).
chaos: $(LINKED)
	$(BIN)/python -m bench.chaos --runs 200 --workers 2 --model twin

# 30 minutes of steady mixed load (seed chain on the twin, research_fanout on echo, 2 workers per
# role, one SIGTERMed and restarted every 150 s); exit 1 if anything grows, p99 doubles or a run is lost.
soak: $(LINKED)
	$(BIN)/python -m bench.soak --minutes 30

# The wheel as a user installs it: builds it, installs it with its dependencies and openai-agents
# into a fresh venv, checks `import agents` is the OpenAI SDK and runs the seed workflow there.
packaging-test: $(LINKED)
	$(BIN)/pytest -q -m packaging tests/packaging

# Outages are not poison (fault kinds beside worker kills; each alone here): the model server killed and restarted under 200 runs of HTTP-backed
# workers, then Redis at maxmemory (lowered under load, then raised); exit 1 unless all are done.
chaos-cluster: $(LINKED)
	$(BIN)/python -m bench.chaos --runs 200 --workers 2 --model twin --cluster

chaos-outages: $(LINKED)
	$(BIN)/python -m bench.chaos --runs 200 --workers 2 --model twin --model-outages --no-kills --no-redis-restart
	$(BIN)/python -m bench.chaos --runs 200 --workers 2 --model twin --redis-oom --no-kills --no-redis-restart

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

# Builds local base images (debootstrap, no registry), the baton image, brings the stack up,
# submits a run, scales researcher to 3 and checks all three consumed work, tears down; then the
# same images on the Redis Cluster override (docker/compose-cluster-test.sh).
compose-test: docker-deps
	docker/compose-test.sh

# Debian's Docker engine, compose v1 and debootstrap (for the local base images), when missing and root.
docker-deps:
	@command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 \
	  && { command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; } \
	  || [ "$$(id -u)" != 0 ] || { \
	  echo "installing docker.io, docker-compose and debootstrap for the compose test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    docker.io docker-compose debootstrap >/dev/null; } \
	  || echo "could not install Docker: compose-test will say so"

compose-lint:
	$(COMPOSE) -f docker-compose.yml config -q
	$(COMPOSE) -f docker-compose.yml -f docker-compose.cluster.yml config -q
	for f in docker/*.sh; do bash -n "$$f" || exit 1; done
	@if command -v shellcheck >/dev/null; then shellcheck docker/*.sh; else echo "shellcheck not installed: skipped"; fi

clean:
	rm -rf $(VENV) build *.egg-info
