#!/usr/bin/env bash
# End-to-end test of baton's Docker deployment (docker-compose.yml), run by `make compose-test`.
#
#  1. makes sure a Docker engine runs (starts dockerd when root and it is installed);
#  2. makes sure the base images exist (docker/build-base.sh, the air-gapped path) and the
#     local build inputs are in place (docker/prepare-context.sh); builds baton's image;
#  3. `up -d` under a unique project name: Redis healthy, every worker healthy, the one-shot
#     `seed` service exits 0 with a result in its logs;
#  4. one `submit --wait` through `run --rm` returns a non-empty result;
#  5. scales researcher to 3, submits 9 runs and proves that each of the three researcher
#     containers committed work: every scratchpad entry records the consumer that wrote it
#     (`<role>-<hostname>-<pid>-<suffix>`, hostname = container hostname), and each researcher
#     container's hostname must appear there; XINFO CONSUMERS must show no pending entries;
#  6. always tears down with `down -v` (trap), prints the duration;
#  7. then, on the same images, the Redis Cluster phase: docker/compose-cluster-test.sh
#     (docker-compose.cluster.yml under its own project; COMPOSE_TEST_CLUSTER=0 skips it).
#
# Environment: BATON_BASE_IMAGE / BATON_REDIS_IMAGE (default here: the air-gapped path, the
# baton-base:bookworm / baton-redis:bookworm images that docker/build-base.sh makes; the compose
# file's own defaults are the official python:3.11-slim / redis:7), BATON_IMAGE (default
# baton:local; give each concurrent checkout its own tag), COMPOSE_PROJECT_NAME (default: a
# unique baton-test-<time>-<pid>; torn down with `down -v` at the end), COMPOSE_TEST_TIMEOUT
# (seconds per wait, default 300), KEEP_UP=1 to skip teardown for debugging.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
T0=$SECONDS
TIMEOUT=${COMPOSE_TEST_TIMEOUT:-300}
SCALE=3
RUNS=9

log() { printf '[compose-test %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# ---------------------------------------------------------------- Docker engine
ensure_dockerd() {
  command -v docker >/dev/null || {
    echo "compose-test: the docker CLI is not installed (Debian: apt-get install docker.io docker-compose)" >&2
    exit 2
  }
  docker info >/dev/null 2>&1 && return 0
  if [[ $(id -u) == 0 ]] && command -v dockerd >/dev/null; then
    log "no Docker engine answering; starting dockerd (log: /tmp/baton-dockerd.log)"
    nohup dockerd >/tmp/baton-dockerd.log 2>&1 &
    local i
    for i in $(seq 60); do
      docker info >/dev/null 2>&1 && { log "dockerd is up"; return 0; }
      sleep 0.5
    done
    tail -n 20 /tmp/baton-dockerd.log >&2 || true
  fi
  echo "compose-test: cannot reach a Docker engine and cannot start one" \
    "(start dockerd as root, or run as a user in the docker group). Skipping is not a pass." >&2
  exit 2
}
ensure_dockerd

if docker compose version >/dev/null 2>&1; then
  COMPOSE_BIN=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE_BIN=(docker-compose)
else
  echo "compose-test: neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 2
fi

# ---------------------------------------------------------------- images
# The air-gapped path: locally built bases, no registry needed.
export BATON_BASE_IMAGE=${BATON_BASE_IMAGE:-baton-base:bookworm}
export BATON_REDIS_IMAGE=${BATON_REDIS_IMAGE:-baton-redis:bookworm}
export BATON_IMAGE=${BATON_IMAGE:-baton:local}
need_local=0
for img in "$BATON_BASE_IMAGE" "$BATON_REDIS_IMAGE"; do
  if ! docker image inspect "$img" >/dev/null 2>&1; then
    case $img in
      baton-base:bookworm | baton-redis:bookworm) need_local=1 ;;
      *) log "pulling $img"; docker pull -q "$img" >/dev/null ;;
    esac
  fi
done
if [[ $need_local == 1 ]]; then
  t=$SECONDS
  log "building local base images (docker/build-base.sh)"
  docker/build-base.sh
  log "base images built in $((SECONDS - t))s"
fi
docker/prepare-context.sh

PROJECT=${COMPOSE_PROJECT_NAME:-baton-test-$(date +%s)-$$}
export REDIS_PASSWORD=${REDIS_PASSWORD:-pw-$RANDOM$RANDOM}
BATON_DASHBOARD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export BATON_DASHBOARD_PORT
COMPOSE=("${COMPOSE_BIN[@]}" -p "$PROJECT" -f "$ROOT/docker-compose.yml")
log "project $PROJECT, compose: ${COMPOSE_BIN[*]}, image $BATON_IMAGE on $BATON_BASE_IMAGE"

DOWN=0
down_project() {
  ((DOWN == 0)) || return 0
  DOWN=1
  if [[ ${KEEP_UP:-0} == 1 ]]; then
    log "KEEP_UP=1: leaving project $PROJECT up (${COMPOSE[*]} down -v)"
  else
    log "tearing down (down -v)"
    "${COMPOSE[@]}" down -v --remove-orphans --timeout 30 >/dev/null 2>&1 \
      || "${COMPOSE[@]}" down -v --remove-orphans --timeout 30 >&2 || true
  fi
}

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ $rc != 0 && $DOWN == 0 ]]; then
    log "--- diagnostics (exit $rc) ---"
    "${COMPOSE[@]}" ps >&2 || true
    "${COMPOSE[@]}" logs --no-color --tail=40 >&2 || true
  fi
  down_project
  if [[ $rc == 0 ]]; then
    log "PASS in $((SECONDS - T0))s"
  else
    log "FAILED after $((SECONDS - T0))s"
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

t=$SECONDS
log "building $BATON_IMAGE"
"${COMPOSE[@]}" build planner >&2
log "image built in $((SECONDS - t))s: $(docker image inspect -f '{{.Size}}' "$BATON_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

# ---------------------------------------------------------------- helpers
ids() { "${COMPOSE[@]}" ps -q "$1" 2>/dev/null; }
state() { docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"; }

# wait_healthy SERVICE COUNT: until COUNT containers of SERVICE report healthy.
wait_healthy() {
  local svc=$1 want=$2 deadline=$((SECONDS + TIMEOUT)) id n states
  while :; do
    n=0 states=()
    for id in $(ids "$svc"); do
      states+=("$(state "$id")")
      [[ ${states[-1]} == running/healthy ]] && n=$((n + 1))
    done
    ((n >= want)) && { log "$svc: $n healthy"; return 0; }
    ((SECONDS < deadline)) || die "$svc: $n of $want healthy after ${TIMEOUT}s (${states[*]:-no containers})"
    sleep 2
  done
}

redis_id() { ids redis | head -n1; }
# Redis commands run inside the redis container; redis-cli takes the password from REDISCLI_AUTH.
rcli() { docker exec "$(redis_id)" redis-cli --no-auth-warning "$@"; }

# Who did the work: every scratchpad entry's meta.consumer is "<role>-<hostname>-<pid>-<suffix>".
researcher_pads() {
  docker exec "$(redis_id)" sh -c \
    'for k in $(redis-cli --no-auth-warning --scan --pattern "*:pad:*"); do redis-cli --no-auth-warning hvals "$k"; done' \
    | grep -o '"consumer": *"researcher-[^"]*"' | sed 's/.*"researcher-/researcher-/; s/"$//' || true
}
count_for() { grep -c -- "^researcher-$1-" <<<"$2" || true; }

# ---------------------------------------------------------------- up
t=$SECONDS
log "up -d (redis, planner, researcher, summarizer, dashboard, seed)"
"${COMPOSE[@]}" up -d >&2
wait_healthy redis 1
for role in planner researcher summarizer; do wait_healthy "$role" 1; done
log "all services healthy $((SECONDS - t))s after up"
[[ $(rcli CONFIG GET appendonly | tail -n1) == yes ]] || die "Redis runs without AOF"

seed=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
  --filter "label=com.docker.compose.service=seed" | head -n1)
[[ -n $seed ]] || die "the seed container was not created"
seed_rc=$(timeout "$TIMEOUT" docker wait "$seed") || die "seed did not finish within ${TIMEOUT}s"
seed_out=$(docker logs "$seed" 2>/dev/null)
[[ $seed_rc == 0 ]] || die "seed exited $seed_rc: $(docker logs --tail 20 "$seed" 2>&1)"
[[ -n $(tail -n +2 <<<"$seed_out" | tr -d '[:space:]') ]] || die "seed printed no result: $seed_out"
log "seed run finished; result: $(head -c 200 <<<"$seed_out" | tr '\n' ' ')"

# ---------------------------------------------------------------- one submit through `run --rm`
t=$SECONDS
out=$(timeout "$TIMEOUT" "${COMPOSE[@]}" run --rm -T --no-deps seed \
  submit "Explain the importance of unsupervised learning." --wait 2>/tmp/"$PROJECT".err) \
  || die "run --rm submit --wait failed: $(tail -n 20 /tmp/"$PROJECT".err)"
rm -f /tmp/"$PROJECT".err
# stdout: the run id on the first line, then the result
result=$(tail -n +2 <<<"$out")
[[ -n ${result//[[:space:]]/} ]] || die "submit --wait printed no result (stdout: $out)"
log "submit --wait via run --rm in $((SECONDS - t))s; result: $(head -c 200 <<<"$result" | tr '\n' ' ')"

# dashboard answers on its published port (only reported: the dashboard is optional here)
if code=$(python3 - "$BATON_DASHBOARD_PORT" <<'EOF'
import sys, urllib.request
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=5).status)
except Exception as exc:  # noqa: BLE001
    print(exc); sys.exit(1)
EOF
); then
  log "dashboard answered HTTP $code on port $BATON_DASHBOARD_PORT"
else
  log "WARNING: dashboard not answering on port $BATON_DASHBOARD_PORT ($code)"
fi

# ---------------------------------------------------------------- scale researcher to 3
t=$SECONDS
log "scaling researcher to $SCALE"
"${COMPOSE[@]}" up -d --no-recreate --scale researcher="$SCALE" researcher >&2
wait_healthy researcher "$SCALE"
mapfile -t researchers < <(ids researcher)
((${#researchers[@]} == SCALE)) || die "expected $SCALE researcher containers, got ${#researchers[@]}"
declare -A host_of=()
for id in "${researchers[@]}"; do host_of[$id]=$(docker inspect -f '{{.Config.Hostname}}' "$id"); done
log "researcher hosts: ${host_of[*]} (healthy after $((SECONDS - t))s)"

planner=$(ids planner | head -n1)
before=$(researcher_pads)
topics=("supervised learning" "unsupervised learning" "reinforcement learning" "transfer learning"
  "gradient descent" "overfitting" "regularization" "cross-validation" "feature scaling"
  "decision trees" "ensembles" "embeddings")
t=$SECONDS
log "submitting $RUNS runs (staggered 0.3s, each with --wait)"
tmp=$(mktemp -d)
pids=()
for i in $(seq 1 "$RUNS"); do
  topic=${topics[$(((i - 1) % ${#topics[@]}))]}
  (rc=0; timeout "$TIMEOUT" docker exec "$planner" baton submit "Explain the importance of $topic." \
    --wait >"$tmp/$i.out" 2>"$tmp/$i.err" || rc=$?; echo "$rc" >"$tmp/$i.rc") &
  pids+=($!)
  sleep 0.3
done
wait "${pids[@]}" || true
failed=0
for i in $(seq 1 "$RUNS"); do
  rc=$(cat "$tmp/$i.rc")
  if [[ $rc != 0 || -z $(tail -n +2 "$tmp/$i.out" | tr -d '[:space:]') ]]; then
    log "run $i: exit $rc, stdout $(wc -c <"$tmp/$i.out") bytes: $(tail -n 5 "$tmp/$i.err")"
    failed=$((failed + 1))
  fi
done
rm -rf "$tmp"
((failed == 0)) || die "$failed of $RUNS submissions failed"
log "$RUNS runs done in $((SECONDS - t))s"

# Each researcher container must have committed scratchpad entries during these runs.
after=$(researcher_pads)
missing=0
for id in "${researchers[@]}"; do
  h=${host_of[$id]}
  n=$(($(count_for "$h" "$after") - $(count_for "$h" "$before")))
  log "researcher container $h committed $n of the $RUNS runs' research steps"
  ((n > 0)) || missing=$((missing + 1))
done

stream=$(rcli --scan --pattern '*:stream:researcher' | head -n1)
[[ -n $stream ]] || die "no researcher stream in Redis"
log "XINFO CONSUMERS $stream researcher:"
rcli XINFO CONSUMERS "$stream" researcher \
  | awk '$0 == "name" && NR > 1 {print ""} {printf "%s ", $0} END {print ""}' >&2 || true
pending=$(rcli XPENDING "$stream" researcher | head -n1)
if docker exec -e COLUMNS=200 "$planner" baton streams >/tmp/"$PROJECT".streams 2>&1; then
  log "baton streams:"; cat /tmp/"$PROJECT".streams >&2
else
  log "WARNING: 'baton streams' failed: $(tail -n 3 /tmp/"$PROJECT".streams)"
fi
rm -f /tmp/"$PROJECT".streams
((missing == 0)) || die "$missing of $SCALE researcher containers did no work"
[[ $pending == 0 ]] || die "researcher group still has $pending pending entries"
log "all $SCALE researcher containers did work; nothing pending"

# ---------------------------------------------------------------- phase 2: Redis Cluster
# The same images on docker-compose.cluster.yml, under its own project; COMPOSE_TEST_CLUSTER=0 skips it.
log "phase 1 (single Redis) passed in $((SECONDS - T0))s"
if [[ ${COMPOSE_TEST_CLUSTER:-1} == 1 ]]; then
  down_project
  t=$SECONDS
  "$ROOT/docker/compose-cluster-test.sh"
  log "phase 2 (Redis Cluster) passed in $((SECONDS - t))s"
fi
