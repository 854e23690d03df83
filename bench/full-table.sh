#!/usr/bin/env bash
# Issue 4 point 6: the signed-in path with a full gate table. Two gatehouse processes from a
# benchmark build (cargo build --release --features bench-seed; see src/bench_seed.rs) are
# seeded at start through the portal's sign-in, code and hand-off calls: one with a single
# session, one with SEED (1 000 000) sessions. wrk (core 1) sends each signed-in requests
# whose cookie is picked at random from its file (10 000 cookies for the full table, the one
# cookie for the other), RUNS interleaved rounds; the servers are pinned to core 0 (CPUS).
# Prints req/s, p99, server CPU per request and the hypervisor's steal of each run, and the
# resident memory the seed logged per portal session and per gate-table entry. Loopback
# only, SECS s per run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
seed=${SEED:-1000000} runs=${RUNS:-5} secs=${SECS:-10}
bin=${GATEHOUSE_BIN:-$here/../target/release/gatehouse}
(cd "$here/.." && cargo build --release --locked --features bench-seed -q)
make_cert; start_backend

start_seeded() { # NAME PORT SESSIONS -> sets pid_NAME
  local name=$1 p=$2 n=$3 dir=$work/$1
  mkdir -p "$dir"
  BENCH_RUNDIR=$dir BENCH_CERT=$work/cert.pem BENCH_KEY=$work/key.pem BENCH_PORT=$p \
    BENCH_BACKEND_URL=http://127.0.0.1:$bp BENCH_USER=alice BENCH_LEVEL=3 GATEHOUSE_BIN=$bin \
    GATEHOUSE_BENCH_SEED=$n GATEHOUSE_BENCH_SEED_USER=alice GATEHOUSE_BENCH_SEED_PASSWORD=bench-password \
    GATEHOUSE_BENCH_SEED_COOKIES=$dir/cookies \
    on_servers "$here/gateway.sh" > "$dir/log" 2>&1 & pids+=($!)
  # The listener accepts at once but serves only once the seed is done.
  for _ in $(seq 300); do curl -sk --max-time 2 -o /dev/null "https://127.0.0.1:$p/" -H "Host: app.localhost" && break; sleep 0.5; done
  grep -q "bench seed done" "$dir/log" || { cat "$dir/log"; echo "full-table.sh: $name did not start" >&2; exit 1; }
  printf -v "pid_$name" '%s' "$(pgrep -f "run -c $dir/config.toml" | head -1)"
  grep -o 'sessions=.*' "$dir/log" | sed "s/^/$name seed: /"
}
start_seeded one 18501 1
start_seeded full 18502 "$seed"

run() { # NAME PORT PID
  local name=$1 p=$2 pid=$3 t0 t1 out reqs before
  before=$(cpu_ticks); t0=$(ticks "$pid")
  out=$(COOKIES=$work/$name/cookies HOST=app.localhost:$p taskset -c 1 \
    wrk -t1 -c64 -d"${secs}"s --latency -s "$here/random-cookie.lua" "https://127.0.0.1:$p/")
  t1=$(ticks "$pid")
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  echo "$name: req/s=$(awk '/Requests\/sec/{print $2}' <<<"$out") p99=$(awk '$1=="99%"{print $2}' <<<"$out") cpu_us_per_req=$(echo "scale=2; ($t1-$t0)*10000/$reqs" | bc) steal=$(steal_pct "$before" "$(cpu_ticks)")% $(grep -E "Socket errors|Non-2xx" <<<"$out" | tr '\n' ' ' || true)"
}
# Measure only once each process is idle (a seed's leftover work would count as the
# requests' CPU), then one warm-up round that is not counted.
for name in one full; do
  pid_var=pid_$name
  for _ in $(seq 60); do
    t0=$(ticks "${!pid_var}"); sleep 2; t1=$(ticks "${!pid_var}")
    (( t1 - t0 <= 4 )) && break
    echo "$name is still busy ($((t1 - t0)) ticks in 2 s); waiting"
  done
done
run one 18501 "$pid_one" > /dev/null
run full 18502 "$pid_full" > /dev/null
for _ in $(seq "$runs"); do
  run one 18501 "$pid_one"
  run full 18502 "$pid_full"
done
# PERF=1: one more run of each under `perf record`, and each one's top symbols side by side.
if [[ ${PERF:-0} == 1 ]]; then
  command -v perf >/dev/null || { echo "full-table.sh: PERF=1 needs perf (linux-perf)" >&2; exit 1; }
  keep=${BENCH_OUT:-/tmp}/full-table-perf-$(date +%Y%m%d-%H%M%S); mkdir -p "$keep"
  for name in one full; do
    pid_var=pid_$name
    perf record -F 1999 -p "${!pid_var}" -o "$keep/$name.perf" -- sleep "$secs" 2>"$keep/$name.perf.log" &
    run "$name" "$([[ $name == one ]] && echo 18501 || echo 18502)" "${!pid_var}"
    wait $! || { cat "$keep/$name.perf.log" >&2; echo "full-table.sh: perf record failed" >&2; exit 1; }
    perf report -i "$keep/$name.perf" --no-children --percent-limit 0.2 --sort symbol --stdio 2>/dev/null |
      { grep -E '^ +[0-9]' || true; } | cut -c1-120 > "$keep/$name.top"
  done
  echo "perf, share of samples (one | full), kept in $keep:"
  paste -d'|' <(head -40 "$keep/one.top") <(head -40 "$keep/full.top")
fi
echo "rss of the full process: $(awk '/VmRSS/{print $2, $3}' "/proc/$pid_full/status"), of it in huge pages: $(awk '/AnonHugePages/{print $2, $3}' "/proc/$pid_full/smaps_rollup")"
