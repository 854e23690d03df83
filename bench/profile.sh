#!/usr/bin/env bash
# CPU profile of the signed-in path: gatehouse pinned to core 0 with an nginx backend,
# wrk on core 1 (HTTP/1.1 keep-alive, -c64), `perf record` on the gateway for a few
# seconds, then a flame graph (inferno) at bench/flamegraph.svg. Loopback only, bounded.
#   bench/profile.sh            # needs: perf (linux-perf), wrk, nginx, inferno (cargo install inferno)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d /tmp/gatehouse-profile.XXXXXX)
port=18446 backend_port=18080 secs=${SECS:-8}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

(cd "$here/.." && cargo build --release --locked --quiet)
body=$(printf 'x%.0s' $(seq 1 99))
cat > "$work/backend.conf" <<NGINX
worker_processes 1; pid $work/backend.pid; error_log $work/backend.err warn; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $work/b; proxy_temp_path $work/p;
  fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$backend_port backlog=4096; default_type text/plain;
    location / { return 200 "$body\n"; } } }
NGINX
taskset -c 0 nginx -p "$work" -c "$work/backend.conf" & pids+=($!)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,DNS:*.localhost,DNS:app.localhost,DNS:auth.localhost,IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
export BENCH_RUNDIR=$work BENCH_CERT=$work/cert.pem BENCH_KEY=$work/key.pem BENCH_PORT=$port \
  BENCH_BACKEND_URL=http://127.0.0.1:$backend_port BENCH_USER=alice BENCH_LEVEL=3
taskset -c 0 "$here/gateway.sh" > "$work/gateway.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$port/" -H "Host: app.localhost" && break; sleep 0.1; done
cookie=$("$here/signin.sh" "$port")
gw=$(pgrep -f "gatehouse run -c $work/config.toml" | head -1)
wrk_cmd=(taskset -c 1 wrk -t1 -c64 -d"$((secs + 2))"s -H "Host: app.localhost:$port" -H "Cookie: $cookie" "https://127.0.0.1:$port/")
"${wrk_cmd[@]}" > "$work/wrk.txt" & pids+=($!)
sleep 1
perf record -F 1999 ${PERF_CALLGRAPH:---call-graph dwarf,16384} -p "$gw" -o "$work/perf.data" -- sleep "$secs" 2> "$work/perf.log"
wait "${pids[-1]}" || true
grep -E "Requests/sec|Latency" "$work/wrk.txt"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$work/collapsed.txt"
inferno-flamegraph --title "gatehouse signed-in path (HTTP/1.1 keep-alive, TLS, 1 core)" < "$work/collapsed.txt" > "$here/flamegraph.svg"
# awk, not head: head would leave the pipe early and pipefail would end the script there.
{
  echo "# share of samples by binary"
  perf report -i "$work/perf.data" --no-children -g none --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]'
  echo "# share of samples under the kernel's system-call entry, by the function it called (from the call"
  echo "# graphs; exit_to_user_mode_loop is scheduling on the way back to user space)"
  awk '{ n = $NF; total += n; k = split($0, f, ";")
         for (i = 1; i < k; i++) if (f[i] == "do_syscall_64") { sys[f[i + 1]] += n; break } }
       END { for (s in sys) if (sys[s] / total >= 0.001) printf "    %5.2f%%  %s\n", 100 * sys[s] / total, s }' \
    "$work/collapsed.txt" | sort -rn
  echo "# top symbols"
  perf report -i "$work/perf.data" --no-children -g none --percent-limit 0.3 --sort dso,symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | cut -c1-160 | awk -v top="${TOP:-40}" 'NR <= top'
} > "$here/profile-top.txt"
cat "$here/profile-top.txt"
echo "flame graph: $here/flamegraph.svg; raw data: $work"
