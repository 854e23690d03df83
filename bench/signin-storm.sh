#!/usr/bin/env bash
# Isolation under a sign-in storm: the signed-in path under wrk, unloaded, then while 100
# clients keep posting wrong passwords to the portal (bench/signin_storm.py), then unloaded
# again. Servers on core 0, load on core 1. Loopback only, bounded in time.
#   THROTTLE=off   raise the sign-in throttle's counts out of reach, so that every attempt
#                  is checked with argon2id (the worst case for isolation); by default the
#                  shipped throttle answers most of the storm with 429 before any hashing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [[ ${THROTTLE:-on} == off ]]; then
  export BENCH_PORTAL_EXTRA="signin_throttle = { failures = 1000000, address_failures = 1000000, user_failures = 1000000 }"
fi
make_cert; start_backend; start_gatehouse
# The hypervisor's steal during each wrk run is printed beside it: a p99 tail in a run with
# steal says more about the machine than about gatehouse (the harness discards runs over 3 %).
# w NAME: one wrk run; its req/s is kept in rps_NAME.
w() {
  local before out; before=$(cpu_ticks)
  out=$(taskset -c 1 wrk -t1 -c64 -d10s --latency -H "Host: app.localhost:$port" -H "Cookie: $cookie" "https://127.0.0.1:$port/")
  grep -E "Requests/sec|  99%" <<<"$out"
  echo "    steal: $(steal_pct "$before" "$(cpu_ticks)") %"
  printf -v "rps_$1" '%s' "$(awk '/Requests\/sec/{print $2}' <<<"$out")"
}
echo "unloaded:"; w before
echo "during a storm of 100 clients posting wrong passwords:"
taskset -c 1 python3 "$here/signin_storm.py" "$port" 100 12 & storm=$!
sleep 1; w storm; wait "$storm"
echo "unloaded again:"; w after
# Against the mean of both unloaded runs: one run alone moves with the machine's noise.
echo "share of unloaded req/s during the storm: $(echo "$rps_storm $rps_before $rps_after" | awk '{printf "%.1f", 200 * $1 / ($2 + $3)}') %"
