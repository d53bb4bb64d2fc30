#!/usr/bin/env bash
# End-to-end test of the Redis Cluster deployment (docker-compose.yml + docker-compose.cluster.yml),
# the second phase of `make compose-test`: docker/compose-test.sh runs it after its own phase,
# on the images that phase built. Run alone, it needs those images (it builds nothing).
#
#  1. `up -d` with both files under a unique project name: six cluster nodes, the one-shot
#     `redis-cluster-init` job exits 0, and the cluster reports cluster_state:ok with 3 primaries
#     and 3 replicas;
#  2. every worker healthy, the `seed` service exits 0;
#  3. one `submit --wait` through `run --rm` returns a non-empty result;
#  4. RUNS more runs (one client process inside the planner container) all finish, and their run
#     records are found by `redis-cli --scan` on more than one primary; the base file's single
#     `redis` service (still started, unused) holds no keys;
#  5. always tears down with `down -v` (trap) and prints the time of each step.
#
# Environment: BATON_IMAGE / BATON_REDIS_IMAGE (default baton:local / baton-redis:bookworm, what
# docker/compose-test.sh builds), COMPOSE_TEST_TIMEOUT (seconds per wait, default 300),
# CLUSTER_TEST_RUNS (default 12), KEEP_UP=1 to skip teardown for debugging. Exit 2 when no Docker
# engine answers.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
T0=$SECONDS
TIMEOUT=${COMPOSE_TEST_TIMEOUT:-300}
# random run ids over 3 primaries: all of 6 runs land on one primary 3/3^6 = 0.4% of the time (seen
# once in CI), all of 12 3/3^12 = 0.0006%
RUNS=${CLUSTER_TEST_RUNS:-12}
NODES=(redis-node-1 redis-node-2 redis-node-3 redis-node-4 redis-node-5 redis-node-6)

log() { printf '[compose-cluster %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

docker info >/dev/null 2>&1 || { echo "compose-cluster-test: no Docker engine answers" >&2; exit 2; }
if docker compose version >/dev/null 2>&1; then
  COMPOSE_BIN=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE_BIN=(docker-compose)
else
  echo "compose-cluster-test: neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 2
fi

export BATON_REDIS_IMAGE=${BATON_REDIS_IMAGE:-baton-redis:bookworm}
export BATON_IMAGE=${BATON_IMAGE:-baton:local}
for img in "$BATON_IMAGE" "$BATON_REDIS_IMAGE"; do
  docker image inspect "$img" >/dev/null 2>&1 \
    || die "image $img is missing: docker/compose-test.sh builds it (make compose-test)"
done

PROJECT=${CLUSTER_PROJECT_NAME:-baton-cluster-test-$(date +%s)-$$}
export REDIS_PASSWORD=${REDIS_PASSWORD:-pw-$RANDOM$RANDOM}
BATON_DASHBOARD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export BATON_DASHBOARD_PORT
COMPOSE=("${COMPOSE_BIN[@]}" -p "$PROJECT" -f "$ROOT/docker-compose.yml" -f "$ROOT/docker-compose.cluster.yml")
log "project $PROJECT, compose: ${COMPOSE_BIN[*]}, image $BATON_IMAGE, redis $BATON_REDIS_IMAGE"

TIMINGS=()
mark() { TIMINGS+=("$1 $(($SECONDS - $2))s"); log "$1 in $((SECONDS - $2))s"; }

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ $rc != 0 ]]; then
    log "--- diagnostics (exit $rc) ---"
    "${COMPOSE[@]}" ps >&2 || true
    "${COMPOSE[@]}" logs --no-color --tail=30 redis-cluster-init redis-node-1 planner researcher summarizer seed >&2 || true
  fi
  if [[ ${KEEP_UP:-0} == 1 ]]; then
    log "KEEP_UP=1: leaving project $PROJECT up (${COMPOSE[*]} down -v)"
  else
    local t=$SECONDS
    "${COMPOSE[@]}" down -v --remove-orphans --timeout 30 >/dev/null 2>&1 \
      || "${COMPOSE[@]}" down -v --remove-orphans --timeout 30 >&2 || true
    TIMINGS+=("down -v $((SECONDS - t))s")
  fi
  log "timings: $(IFS=,; echo "${TIMINGS[*]}" | sed 's/,/, /g')"
  if [[ $rc == 0 ]]; then log "PASS in $((SECONDS - T0))s"; else log "FAILED after $((SECONDS - T0))s"; fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
ids() { "${COMPOSE[@]}" ps -q "$1" 2>/dev/null; }
# Containers of a service, stopped ones included (one-shot jobs).
all_ids() {
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1"
}
state() { docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"; }

# wait_healthy SERVICE: until its container reports healthy.
wait_healthy() {
  local svc=$1 deadline=$((SECONDS + TIMEOUT)) id s
  while :; do
    id=$(ids "$svc" | head -n1)
    s=$([[ -n $id ]] && state "$id" || echo "no container")
    [[ $s == running/healthy ]] && return 0
    ((SECONDS < deadline)) || die "$svc not healthy after ${TIMEOUT}s ($s)"
    sleep 2
  done
}

# ncli NODE ARGS...: redis-cli inside a node's container (password from REDISCLI_AUTH).
ncli() { local node=$1; shift; docker exec "$(ids "$node" | head -n1)" redis-cli --no-auth-warning "$@"; }

# wait_one_shot SERVICE: its exit code, once the container has stopped; its log on failure.
wait_one_shot() {
  local svc=$1 id rc
  id=$(all_ids "$svc" | head -n1)
  [[ -n $id ]] || die "the $svc container was not created"
  rc=$(timeout "$TIMEOUT" docker wait "$id") || die "$svc did not finish within ${TIMEOUT}s"
  [[ $rc == 0 ]] || die "$svc exited $rc: $(docker logs --tail 20 "$id" 2>&1)"
}

# ---------------------------------------------------------------- up: nodes, init job, workers
t=$SECONDS
log "up -d (6 cluster nodes, redis-cluster-init, planner, researcher, summarizer, dashboard, seed)"
"${COMPOSE[@]}" up -d >&2
mark "up -d" "$t"

wait_one_shot redis-cluster-init
log "redis-cluster-init exited 0: $(docker logs "$(all_ids redis-cluster-init | head -n1)" 2>&1 | tail -n1)"
deadline=$((SECONDS + TIMEOUT))
until [[ $(ncli redis-node-1 CLUSTER INFO | tr -d '\r' | grep -c -e '^cluster_state:ok$' -e '^cluster_size:3$') == 2 ]]; do
  ((SECONDS < deadline)) || die "cluster not ok after ${TIMEOUT}s: $(ncli redis-node-1 CLUSTER INFO | tr '\r\n' '  ')"
  sleep 1
done
# CLUSTER NODES lists each node's address and role; the containers are matched by address.
masters=$(ncli redis-node-1 CLUSTER NODES | awk '$3 ~ /master/ {split($2, a, ":"); print a[1]}')
primaries=()
for node in "${NODES[@]}"; do
  ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(ids "$node" | head -n1)")
  grep -qx -- "$ip" <<<"$masters" && primaries+=("$node")
done
((${#primaries[@]} == 3)) || die "expected 3 primaries among the nodes, got ${primaries[*]:-none} (masters: $masters)"
log "cluster_state:ok, primaries ${primaries[*]}"

t=$SECONDS
for role in planner researcher summarizer; do wait_healthy "$role"; done
mark "workers healthy" "$t"

# ---------------------------------------------------------------- one submit through `run --rm`
t=$SECONDS
err=$(mktemp)
out=$(timeout "$TIMEOUT" "${COMPOSE[@]}" run --rm -T --no-deps seed \
  submit "Explain the importance of unsupervised learning." --wait 2>"$err") \
  || die "run --rm submit --wait failed: $(tail -n 20 "$err")"
rm -f "$err"
result=$(tail -n +2 <<<"$out")
[[ -n ${result//[[:space:]]/} ]] || die "submit --wait printed no result (stdout: $out)"
mark "submit --wait via run --rm" "$t"
log "result: $(head -c 160 <<<"$result" | tr '\n' ' ')"
wait_one_shot seed
log "seed exited 0"

# ---------------------------------------------------------------- runs spread over the primaries
t=$SECONDS
planner=$(ids planner | head -n1)
run_ids=$(timeout "$TIMEOUT" docker exec -i -e RUNS="$RUNS" -e WAIT_S="$TIMEOUT" "$planner" python - <<'EOF'
import os
import baton

topics = ["supervised learning", "gradient descent", "overfitting", "regularization",
          "cross-validation", "embeddings", "decision trees", "ensembles", "feature scaling"]
with baton.Client() as client:
    runs = [client.submit(f"Explain the importance of {topics[i % len(topics)]}.") for i in range(int(os.environ["RUNS"]))]
    for run in runs:
        if not run.wait(timeout=float(os.environ["WAIT_S"])).strip():
            raise SystemExit(f"run {run.id} finished with an empty result")
        print(run.id)
EOF
) || die "the $RUNS runs did not all finish with a result (exit $?)"
mapfile -t submitted <<<"$run_ids"
((${#submitted[@]} == RUNS)) || die "expected $RUNS run ids, got: $run_ids"
mark "$RUNS runs submitted and done" "$t"

# Each run record lives in its partition's slot, so on exactly one primary: find them there.
declare -A on_primary=()
used=0
for node in "${primaries[@]}"; do
  keys=$(ncli "$node" --scan --pattern 'baton:{*}:run:*')
  n=0
  for id in "${submitted[@]}"; do
    if grep -q -- ":run:$id\$" <<<"$keys"; then on_primary[$id]=$node; n=$((n + 1)); fi
  done
  log "$node (primary): $n of the $RUNS runs, $(grep -c . <<<"$keys" || true) run records in all"
  ((n > 0)) && used=$((used + 1))
done
for id in "${submitted[@]}"; do
  [[ -n ${on_primary[$id]:-} ]] || die "run $id's record is on no primary"
done
((used > 1)) || die "all $RUNS runs landed on one primary"
stray=$(docker exec "$(ids redis | head -n1)" redis-cli --no-auth-warning DBSIZE)
[[ $stray == 0 ]] || die "the unused single redis service holds $stray keys: some service bypassed the cluster"
log "runs spread over $used of 3 primaries; the single redis service is empty"

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
