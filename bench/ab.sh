#!/usr/bin/env bash
# A/B of gatehouse builds on the signed-in path, measured on the machine rather than counted
# (bench/instructions.sh counts): req/s, gatehouse's CPU µs per request and wrk's latency
# percentiles, the builds alternated round by round so that the machine's drift falls on
# all of them. Each run starts afresh (backend, gatehouse, a real sign-in), pinned like the
# harness: servers on core 0, wrk -t1 -c64 on core 1, 3 s warm-up, then SECS s measured.
# Loopback only, bounded in time.
#   cp target/release/gatehouse /tmp/gatehouse-a   # build the other variant, then:
#   bench/ab.sh /tmp/gatehouse-a target/release/gatehouse   # ROUNDS=5 SECS=10
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -ge 2 ]] || { echo "usage: bench/ab.sh BINARY BINARY [BINARY ...]" >&2; exit 2; }
bins=()
for bin in "$@"; do
  [[ -x $bin ]] || { echo "ab.sh: $bin is not an executable" >&2; exit 2; }
  bins+=("$(realpath "$bin")")
done

# One run of BINARY; its servers stop when the subshell ends (lib.sh's trap).
measure() (
  export GATEHOUSE_BIN=$1
  source "$here/lib.sh"
  make_cert; start_backend; start_gatehouse
  url="https://127.0.0.1:$port/"
  load() { taskset -c 1 wrk -t1 -c64 "$@" -H "Host: app.localhost:$port" -H "Cookie: $cookie" "$url"; }
  load -d3s > /dev/null
  before=$(ticks "$gw")
  out=$(load -d"${SECS:-10}s" --latency)
  after=$(ticks "$gw")
  grep -q "Non-2xx" <<<"$out" && { echo "ab.sh: some answers were not 2xx:" >&2; echo "$out" >&2; exit 1; }
  awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /Requests\/sec/ {rps = $2} /requests in/ {n = $1}
    $1 == "50%" {p50 = $2} $1 == "90%" {p90 = $2} $1 == "99%" {p99 = $2}
    END {printf "%8.0f req/s %6.1f µs/req  p50 %s  p90 %s  p99 %s\n", rps, t / hz * 1e6 / n, p50, p90, p99}' <<<"$out"
)

for r in $(seq "${ROUNDS:-5}"); do
  for bin in "${bins[@]}"; do
    line=$(measure "$bin")
    echo "round $r $bin: $line"
  done
done
