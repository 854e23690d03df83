#!/usr/bin/env bash
# Isolation under a sign-in storm: the signed-in path under wrk, unloaded, then while 100
# clients keep posting wrong passwords to the portal (bench/signin_storm.py), then unloaded
# again. Servers on core 0, load on core 1. Loopback only, bounded in time.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
set -euo pipefail
work=$(mktemp -d /tmp/gh-st.XXXX); port=18446; bp=18080
body=$(printf 'x%.0s' $(seq 1 99))
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,DNS:*.localhost,DNS:app.localhost,DNS:auth.localhost,IP:127.0.0.1" -keyout $work/key.pem -out $work/cert.pem 2>/dev/null
cat > $work/backend.conf <<NGINX
worker_processes 1; pid $work/backend.pid; error_log $work/backend.err warn; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$bp backlog=4096; location / { return 200 "$body\n"; } } }
NGINX
taskset -c ${SERVER_CPUS:-0} nginx -p $work -c $work/backend.conf & BP=$!
export BENCH_RUNDIR=$work BENCH_CERT=$work/cert.pem BENCH_KEY=$work/key.pem BENCH_PORT=$port BENCH_BACKEND_URL=http://127.0.0.1:$bp BENCH_USER=alice BENCH_LEVEL=3
taskset -c ${SERVER_CPUS:-0} $here/gateway.sh > $work/gw.log 2>&1 & GP=$!
for _ in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$port/" -H "Host: app.localhost" && break; sleep 0.1; done
sleep 1
cookie=$($here/signin.sh $port)
w() { taskset -c ${LOAD_CPUS:-1} wrk -t1 -c64 -d10s --latency -H "Host: app.localhost:$port" -H "Cookie: $cookie" "https://127.0.0.1:$port/" | grep -E "Requests/sec|  99%"; }
echo "unloaded:"; w
echo "during a storm of 100 clients posting wrong passwords:"
taskset -c ${LOAD_CPUS:-1} python3 $here/signin_storm.py $port 100 12 & SP=$!
sleep 1; w; wait $SP
echo "unloaded again:"; w
kill $GP $BP 2>/dev/null; wait 2>/dev/null || true
