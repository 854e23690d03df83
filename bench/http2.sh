#!/usr/bin/env bash
# HTTP/2 towards the client: h2load (Debian nghttp2-client) against gatehouse and nginx with
# `http2` on, same backend, servers pinned to core 0, h2load on core 1; N requests (default
# 300 000), 16 connections x 16 streams. Loopback only, bounded by N.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
set -euo pipefail
ulimit -n 20000
work=$(mktemp -d /tmp/gh-hs.XXXX); port=18446; nport=18443; bp=18080
body=$(printf 'x%.0s' $(seq 1 99))
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,DNS:*.localhost,DNS:app.localhost,DNS:auth.localhost,IP:127.0.0.1" -keyout $work/key.pem -out $work/cert.pem 2>/dev/null
cat > $work/backend.conf <<NGINX
worker_processes 1; pid $work/backend.pid; error_log $work/backend.err warn; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$bp backlog=4096; location / { return 200 "$body\n"; } } }
NGINX
cat > $work/front.conf <<NGINX
worker_processes 1; pid $work/front.pid; error_log $work/front.err warn; daemon off;
events { worker_connections 8000; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $work/b2; proxy_temp_path $work/p2; fastcgi_temp_path $work/f2; uwsgi_temp_path $work/u2; scgi_temp_path $work/s2;
  ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
  upstream backend { server 127.0.0.1:$bp; keepalive 128; }
  server { listen 127.0.0.1:$nport ssl http2 backlog=4096; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
taskset -c 0 nginx -p $work -c $work/backend.conf & BP=$!
taskset -c 0 nginx -p $work -c $work/front.conf & FP=$!
export BENCH_RUNDIR=$work BENCH_CERT=$work/cert.pem BENCH_KEY=$work/key.pem BENCH_PORT=$port BENCH_BACKEND_URL=http://127.0.0.1:$bp BENCH_USER=alice BENCH_LEVEL=3
taskset -c 0 $here/gateway.sh > $work/gw.log 2>&1 & GP=$!
for _ in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$port/" -H "Host: app.localhost" && break; sleep 0.1; done
sleep 1
cookie=$($here/signin.sh $port)
gw=$(pgrep -f "run -c $work/config.toml" | head -1)
fm=$(cat $work/front.pid); fw=$(cat /proc/$fm/task/$fm/children | awk '{print $1}')
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
run() { # name pid url headers...
  local name=$1 pid=$2 url=$3; shift 3
  local t0 t1 out reqs rps
  t0=$(ticks $pid)
  out=$(taskset -c 1 h2load -n ${N:-300000} -c 16 -m 16 -t 1 "$@" "$url" 2>&1)
  t1=$(ticks $pid)
  reqs=$(echo "$out" | awk '/^requests:/{print $8}'); rps=$(echo "$out" | awk '/^finished in/{print $4}')
  echo "$name: req/s=$rps succeeded=$reqs cpu_us_per_req=$(echo "scale=1; ($t1-$t0)*10000/$reqs" | bc) $(echo "$out" | grep -E '^status codes' )"
}
for i in 1 2; do
  run gatehouse $gw "https://127.0.0.1:$port/" -H ":authority: app.localhost:$port" -H "cookie: $cookie"
  run nginx-tls-h2 $fw "https://127.0.0.1:$nport/"
done
kill $GP $FP $BP 2>/dev/null; wait 2>/dev/null || true
