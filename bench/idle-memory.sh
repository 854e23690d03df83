#!/usr/bin/env bash
# RSS of gatehouse and of nginx-tls at idle and holding N (default 10 000) used, idle
# keep-alive TLS connections (bench/idle_conns.py). Loopback only. Needs nginx, curl, python3.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
set -euo pipefail
ulimit -n 20000
N=${N:-10000}
work=$(mktemp -d /tmp/gh-mem.XXXX); port=18446; nport=18443; bp=18080
body=$(printf 'x%.0s' $(seq 1 99))
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,DNS:*.localhost,DNS:app.localhost,DNS:auth.localhost,IP:127.0.0.1" -keyout $work/key.pem -out $work/cert.pem 2>/dev/null
cat > $work/backend.conf <<NGINX
worker_processes 1; pid $work/backend.pid; error_log $work/backend.err warn; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$bp backlog=4096; location / { return 200 "$body\n"; } } }
NGINX
cat > $work/front.conf <<NGINX
worker_processes 1; worker_rlimit_nofile 20000; pid $work/front.pid; error_log $work/front.err warn; daemon off;
events { worker_connections 19000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s; client_body_temp_path $work/b2; proxy_temp_path $work/p2; fastcgi_temp_path $work/f2; uwsgi_temp_path $work/u2; scgi_temp_path $work/s2;
  upstream backend { server 127.0.0.1:$bp; keepalive 128; }
  server { listen 127.0.0.1:$nport ssl backlog=4096; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
nginx -p $work -c $work/backend.conf & BP=$!
nginx -p $work -c $work/front.conf & FP=$!
export BENCH_RUNDIR=$work BENCH_CERT=$work/cert.pem BENCH_KEY=$work/key.pem BENCH_PORT=$port BENCH_BACKEND_URL=http://127.0.0.1:$bp BENCH_USER=alice BENCH_LEVEL=3
$here/gateway.sh > $work/gw.log 2>&1 & GP=$!
for _ in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$port/" -H "Host: app.localhost" && break; sleep 0.1; done
sleep 1
cookie=$($here/signin.sh $port)
gw=$(pgrep -f "run -c $work/config.toml" | head -1)
fm=$(cat $work/front.pid)
echo "gatehouse idle RSS: $(grep VmRSS /proc/$gw/status)"
echo "nginx-tls idle RSS (master+worker): $(( $(grep VmRSS /proc/$fm/status | awk '{print $2}') + $(grep VmRSS /proc/$(cat /proc/$fm/task/$fm/children | awk '{print $1}')/status | awk '{print $2}') )) kB"
echo -n "gatehouse: "; python3 $here/idle_conns.py $port $gw $N "app.localhost:$port" "$cookie"
echo -n "nginx-tls: "; python3 $here/idle_conns.py $nport $fm $N "127.0.0.1"
kill $GP $FP $BP 2>/dev/null; wait 2>/dev/null || true
