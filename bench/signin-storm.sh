#!/usr/bin/env bash
# Isolation under a sign-in storm: the signed-in path under wrk, unloaded, then while 100
# clients keep posting wrong passwords to the portal (bench/signin_storm.py), then unloaded
# again. Servers on core 0, load on core 1. Loopback only, bounded in time.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
make_cert; start_backend; start_gatehouse
w() { taskset -c 1 wrk -t1 -c64 -d10s --latency -H "Host: app.localhost:$port" -H "Cookie: $cookie" "https://127.0.0.1:$port/" | grep -E "Requests/sec|  99%"; }
echo "unloaded:"; w
echo "during a storm of 100 clients posting wrong passwords:"
taskset -c 1 python3 "$here/signin_storm.py" "$port" 100 12 & storm=$!
sleep 1; w; wait "$storm"
echo "unloaded again:"; w
