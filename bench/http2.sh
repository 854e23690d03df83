#!/usr/bin/env bash
# HTTP/2 towards the client: h2load (Debian nghttp2-client) against gatehouse and nginx with
# `http2` on, same backend, servers pinned to core 0, h2load on core 1; N requests (default
# 300 000), 16 connections x 16 streams. Loopback only, bounded by N.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
make_cert; start_backend; start_nginx_tls http2; start_gatehouse
run() { # NAME PID URL [h2load args]
  local name=$1 pid=$2 url=$3; shift 3
  local t0 t1 out reqs
  t0=$(ticks "$pid")
  out=$(taskset -c 1 h2load -n "${N:-300000}" -c 16 -m 16 -t 1 "$@" "$url" 2>&1)
  t1=$(ticks "$pid")
  reqs=$(awk '/^requests:/{print $8}' <<<"$out")
  echo "$name: req/s=$(awk '/^finished in/{print $4}' <<<"$out") succeeded=$reqs cpu_us_per_req=$(echo "scale=1; ($t1-$t0)*10000/$reqs" | bc) $(grep -E '^status codes' <<<"$out")"
}
for _ in 1 2; do
  run gatehouse "$gw" "https://127.0.0.1:$port/" -H ":authority: app.localhost:$port" -H "cookie: $cookie"
  run nginx-tls-h2 "$nginx_worker" "https://127.0.0.1:$nport/"
done
