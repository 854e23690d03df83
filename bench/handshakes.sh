#!/usr/bin/env bash
# New TLS connection per request, gatehouse against nginx-tls (session cache and tickets on),
# servers pinned to core 0 with an nginx backend, clients on core 1; connections/s and
# server CPU per connection. Two clients:
#   - wrk with "Connection: close" (64 connections; OpenSSL client);
#   - tls_connections.py, PROCS processes, once never offering a session ("full": a full
#     handshake every time) and once offering the previous connection's ticket ("resumed",
#     as a returning browser does); it prints the share actually resumed.
# The clients on core 1 cannot keep a server on core 0 busy (a TLS client's handshake costs
# about what the server's does), so uncapped the clients set the rate. CAP=PERCENT caps each
# server under test (gatehouse's process, nginx-tls's worker) at that share of one core
# (bench/lib.sh's cap_cpu: a cgroup, root only), so that the server sets it; each line then
# says in how many of the cgroup's 20 ms periods the server ran out of its quota.
# Loopback only, SECS s per run. Needs wrk, nginx, curl, openssl, bc, python3.
#   bench/handshakes.sh          # uncapped
#   CAP=10 bench/handshakes.sh   # each server on a tenth of core 0
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
make_cert; start_backend
start_nginx_tls "" "events { worker_connections 8000; }" "ssl_session_cache shared:SSL:10m; ssl_session_tickets on;"
start_gatehouse
if [[ -n ${CAP:-} ]]; then
  cap_cpu "$gw" gatehouse
  cap_cpu "$nginx_worker" nginx-tls
fi
secs=${SECS:-8}
per_conn() { echo "scale=1; ($2-$1)*10000/$3" | bc; } # T0 T1 CONNECTIONS
# Share of NAME's cgroup periods throttled since BEFORE ("PERIODS THROTTLED"); "" uncapped.
throttled_since() {
  [[ -n ${CAP:-} ]] || return 0
  local before=$1 name=$2
  awk -v b="$before" -v a="$(cap_periods "$name")" 'BEGIN {
    split(b, x, " "); split(a, y, " "); periods = y[1] - x[1]
    printf "throttled in %.0f%% of periods", periods ? 100 * (y[2] - x[2]) / periods : 0 }'
}
periods() { [[ -z ${CAP:-} ]] || cap_periods "$1"; }
wrk_run() { # NAME PID URL [wrk args]
  local name=$1 pid=$2 url=$3; shift 3
  local t0 t1 out reqs p0
  t0=$(ticks "$pid") p0=$(periods "$name")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}"s --timeout 5s -H "Connection: close" "$@" "$url")
  t1=$(ticks "$pid")
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  echo "wrk $name: conn/s=$(awk '/Requests\/sec/{print $2}' <<<"$out") cpu_us_per_conn=$(per_conn "$t0" "$t1" "$reqs") $(throttled_since "$p0" "$name") $(grep -E "Socket errors|Non-2xx" <<<"$out" | tr '\n' ' ' || true)"
}
py_run() { # MODE NAME PID PORT [COOKIE]
  local mode=$1 name=$2 pid=$3 p=$4 t0 t1 out n p0
  t0=$(ticks "$pid") p0=$(periods "$name")
  out=$(taskset -c 1 python3 "$here/tls_connections.py" "$p" app.localhost "$secs" "${PROCS:-4}" "$mode" "${5-}")
  t1=$(ticks "$pid")
  n=$(sed 's/connections=\([0-9]*\).*/\1/' <<<"$out")
  echo "$mode $name: $out cpu_us_per_conn=$(per_conn "$t0" "$t1" "$n") $(throttled_since "$p0" "$name")"
}
for _ in 1 2; do
  wrk_run gatehouse "$gw" "https://127.0.0.1:$port/" -H "Host: app.localhost:$port" -H "Cookie: $cookie"
  wrk_run nginx-tls "$nginx_worker" "https://127.0.0.1:$nport/"
  for mode in full resumed; do
    py_run "$mode" gatehouse "$gw" "$port" "$cookie"
    py_run "$mode" nginx-tls "$nginx_worker" "$nport"
  done
done
