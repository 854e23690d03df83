#!/usr/bin/env bash
# Where each server's CPU per request goes: user space (the server's own code and its TLS
# library) and kernel (loopback TCP, system calls, scheduling), gatehouse against nginx-tls.
# The harness reports their sum; this says which half a change has to come from.
# Servers and the nginx backend on core 0, wrk -t1 -c64 on core 1 (the harness's pinned
# placement), ROUNDS alternated pairs of SECS-second runs after a short warm-up of each.
# Loopback only, bounded in time. Needs wrk, nginx, curl, openssl.
#   bench/cpu-split.sh            # ROUNDS=3 SECS=8
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds=${ROUNDS:-3} secs=${SECS:-8}
make_cert; start_backend; start_nginx_tls; start_gatehouse

# One wrk run against PID's URL: req/s, then its user, kernel and total CPU µs per request.
run() { # PID URL
  local pid=$1 url=$2 before after out
  before=$(awk '{print $14, $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" -H "Host: app.localhost:$port" -H "Cookie: $cookie" "$url")
  after=$(awk '{print $14, $15}' "/proc/$pid/stat")
  grep -q "Non-2xx" <<<"$out" && { echo "cpu-split.sh: some answers were not 2xx:" >&2; echo "$out" >&2; exit 1; }
  awk -v before="$before" -v after="$after" -v hz="$(getconf CLK_TCK)" '
    /Requests\/sec/ {rps = $2} /requests in/ {n = $1}
    END {split(before, b); split(after, a); us = 1e6 / hz / n
         printf "%8.0f req/s  user %5.1f µs  kernel %5.1f µs  total %5.1f µs/req\n",
           rps, (a[1] - b[1]) * us, (a[2] - b[2]) * us, (a[1] + a[2] - b[1] - b[2]) * us}' <<<"$out"
}
gateway_url="https://127.0.0.1:$port/" nginx_url="https://127.0.0.1:$nport/"
taskset -c 1 wrk -t1 -c64 -d2s -H "Host: app.localhost:$port" -H "Cookie: $cookie" "$gateway_url" > /dev/null
taskset -c 1 wrk -t1 -c64 -d2s "$nginx_url" > /dev/null
for r in $(seq "$rounds"); do
  echo "round $r gatehouse: $(run "$gw" "$gateway_url")"
  echo "round $r nginx-tls: $(run "$nginx_worker" "$nginx_url")"
done
