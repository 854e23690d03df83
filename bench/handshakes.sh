#!/usr/bin/env bash
# New TLS connection per request (wrk with "Connection: close"), gatehouse against nginx-tls,
# servers pinned to core 0 with an nginx backend, wrk on core 1; connections/s and server CPU
# per connection. Loopback only, 8 s per run. Needs wrk, nginx, curl, openssl, bc.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
make_cert; start_backend
start_nginx_tls "" "events { worker_connections 8000; }" "ssl_session_cache shared:SSL:10m; ssl_session_tickets on;"
start_gatehouse
run() { # NAME PID URL [wrk args]
  local name=$1 pid=$2 url=$3; shift 3
  local t0 t1 out reqs
  t0=$(ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${SECS:-8}"s --timeout 5s -H "Connection: close" "$@" "$url")
  t1=$(ticks "$pid")
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  echo "$name: conn/s=$(awk '/Requests\/sec/{print $2}' <<<"$out") cpu_us_per_conn=$(echo "scale=1; ($t1-$t0)*10000/$reqs" | bc) $(grep -E "Socket errors|Non-2xx" <<<"$out" | tr '\n' ' ' || true)"
}
for _ in 1 2; do
  run gatehouse "$gw" "https://127.0.0.1:$port/" -H "Host: app.localhost:$port" -H "Cookie: $cookie"
  run nginx-tls "$nginx_worker" "https://127.0.0.1:$nport/"
done
