#!/usr/bin/env bash
# One command for the side-by-side comparison: builds gatehouse (release) and runs the
# shared harness with direct, nginx-tls, nginx-authreq, nginx-authreq-svc and gatehouse in
# one invocation. Every harness setting passes through (RUNS, DURATION, PIN, WORKERS, ...).
#   bench/run.sh                      # defaults of ../shared/bench/bench.conf
#   RUNS=5 bench/run.sh               # the figures in bench/README.md
#   SMOKE=1 bench/run.sh              # seconds: one short run each (CI)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
harness=${HARNESS:-$here/../../shared/bench}
[[ -x $harness/run.sh ]] || { echo "bench/run.sh: harness not found at $harness (set HARNESS)" >&2; exit 1; }
(cd "$here/.." && cargo build --release --locked --quiet)
port=${BENCH_GATEWAY_PORT:-18446}
export GATEWAY_URL="https://127.0.0.1:$port/"
export GATEWAY_HOST="app.localhost:$port"
export GATEWAY_CMD="$here/gateway.sh"
export GATEWAY_COOKIE_CMD="$here/signin.sh $port"
export GATEWAY_EXPECT_USER=${AUTH_USER:-alice} GATEWAY_EXPECT_LEVEL=${AUTH_LEVEL:-3}
export BENCH_OUT=${BENCH_OUT:-$here}
if [[ ${SMOKE:-0} == 1 ]]; then
  export RUNS=1 DURATION=2 WARMUP=1 STEAL_RETRIES=0
fi
if [[ $# -eq 0 ]]; then set -- direct nginx-tls nginx-authreq nginx-authreq-svc gateway; fi
exec "$harness/run.sh" "$@"
