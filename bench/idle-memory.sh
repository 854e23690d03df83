#!/usr/bin/env bash
# RSS of gatehouse and of nginx-tls at idle and holding N (default 10 000) used, idle
# keep-alive TLS connections (bench/idle_conns.py). Loopback only. Needs nginx, curl, python3.
CPUS=""   # memory does not depend on placement
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ulimit -n 20000
N=${N:-10000}
make_cert; start_backend
start_nginx_tls "" "worker_rlimit_nofile 20000; events { worker_connections 19000; }" "keepalive_timeout 300s;"
# Idle keep-alive connections must outlive the run on both sides: nginx gets
# keepalive_timeout 300s above; gatehouse's equivalent is header_read_timeout (default 15 s,
# shorter than a 10 000-connection run on a busy machine, which would close the first ones).
BENCH_SERVER_EXTRA='header_read_timeout = "300s"' start_gatehouse
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
echo "gatehouse idle RSS: $(rss "$gw") kB"
echo "nginx-tls idle RSS (master+worker): $(( $(rss "$nginx_master") + $(rss "$nginx_worker") )) kB"
echo -n "gatehouse: "; python3 "$here/idle_conns.py" "$port" "$gw" "$N" "app.localhost:$port" "$cookie"
echo -n "nginx-tls: "; python3 "$here/idle_conns.py" "$nport" "$nginx_master" "$N" "127.0.0.1"
