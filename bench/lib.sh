# Shared set-up for the scripts in this folder that measure outside the harness (ab.sh,
# basic.sh, cluster-sync.sh, cpu-split.sh, full-table.sh, handshakes.sh, http2.sh,
# idle-heap.sh, idle-memory.sh, instructions.sh, signin-storm.sh). Source it; it starts
# nothing by itself. Everything listens on 127.0.0.1 and is stopped when the script exits.
#   CPUS      taskset list for the servers ("" = no pinning; default 0)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=18446 nport=18443 bp=18080
work=$(mktemp -d /tmp/gatehouse-bench.XXXXXX)
pids=()
declare -gA capped=() # cap_cpu's cgroup of each server, by name
# Every server started here has $work on its command line; stop them all (the pids kept
# are of the subshells that started them), then remove the CPU caps' cgroups (cap_cpu).
trap 'kill "${pids[@]}" 2>/dev/null || true; pkill -f -- "$work" 2>/dev/null || true; wait 2>/dev/null || true; remove_cgroups' EXIT

# Run "$@" pinned to the server CPUs (or not pinned when CPUS is empty).
on_servers() { if [[ -n ${CPUS-0} ]]; then taskset -c "${CPUS-0}" "$@"; else "$@"; fi; }

# utime+stime of a process, in clock ticks.
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# "ALL STEAL": clock ticks of all CPUs so far, and of them the hypervisor's steal.
# steal_pct BEFORE AFTER: the steal's share in percent between two such readings.
cpu_ticks() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9 }' /proc/stat; }
steal_pct() { echo "$1 $2" | awk '{ printf "%.1f", ($3 - $1 > 0) ? 100 * ($4 - $2) / ($3 - $1) : 0 }'; }

# cap_cpu PID NAME: PID (all its threads) may use only $CAP % of one core, in 20 ms
# periods, through a cgroup of its own (v1 "cpu" controller, or v2 "cpu.max"; root only).
# For client-bound scenarios: a capped server, not the client, sets the rate, and the
# servers compare by what they get done on the same share of a core.
cap_cpu() {
  local dir quota=$((CAP * 200))
  [[ $CAP =~ ^[0-9]+$ && $CAP -ge 5 && $CAP -le 100 ]] || { echo "CAP must be a percentage of one core, 5 to 100" >&2; exit 2; }
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then # cgroup v2
    dir=/sys/fs/cgroup/gatehouse-bench-$2-$$
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
    mkdir "$dir"; capped[$2]=$dir
    echo "$quota 20000" > "$dir/cpu.max"
  else # cgroup v1
    dir=/sys/fs/cgroup/cpu/gatehouse-bench-$2-$$
    mkdir "$dir"; capped[$2]=$dir
    echo 20000 > "$dir/cpu.cfs_period_us"; echo "$quota" > "$dir/cpu.cfs_quota_us"
  fi
  echo "$1" > "$dir/cgroup.procs"
}
# "PERIODS THROTTLED" so far of NAME's cgroup (cap_cpu): a capped server that sets the rate
# is throttled in nearly every period it runs in.
cap_periods() { awk '$1 == "nr_periods" {p = $2} $1 == "nr_throttled" {t = $2} END {print p, t}' "${capped[$1]}/cpu.stat"; }
remove_cgroups() { # once their processes have gone
  local dir
  for dir in "${capped[@]}"; do
    for _ in $(seq 50); do rmdir "$dir" 2>/dev/null && break; sleep 0.1; done
  done
}

# under_valgrind BINARY VALGRIND_ARGS...: sets GATEHOUSE_BIN to a wrapper that runs
# `BINARY run …` (the gateway, as gateway.sh starts it) under valgrind with those arguments,
# and everything else (`hash-password`, not measured) as it is.
under_valgrind() {
  local bin=$1; shift
  {
    echo '#!/usr/bin/env bash'
    printf '[[ $1 == run ]] || exec %q "$@"\n' "$bin"
    printf 'exec valgrind'; printf ' %q' "$@"; printf ' %q "$@"\n' "$bin"
  } > "$work/under-valgrind"
  chmod +x "$work/under-valgrind"
  export GATEHOUSE_BIN=$work/under-valgrind
}

# A throwaway ECDSA certificate for the names the scenarios use.
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,DNS:*.localhost,DNS:app.localhost,DNS:auth.localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
}

# The harness's backend: nginx answering 100 bytes, plain HTTP on $bp.
start_backend() {
  local body; body=$(printf 'x%.0s' $(seq 1 99))
  cat > "$work/backend.conf" <<NGINX
worker_processes 1; pid $work/backend.pid; error_log $work/backend.err warn; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $work/b; proxy_temp_path $work/p;
  fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$bp backlog=4096; location / { return 200 "$body\n"; } } }
NGINX
  on_servers nginx -p "$work" -c "$work/backend.conf" & pids+=($!)
}

# nginx terminating TLS on $nport and proxying to the backend, one worker. Arguments:
# extra `listen` flags (e.g. "http2"), extra main/events settings, extra http settings.
start_nginx_tls() {
  local listen_flags=${1:-} main_extra=${2:-"events { worker_connections 8000; }"} http_extra=${3:-}
  cat > "$work/front.conf" <<NGINX
worker_processes 1; pid $work/front.pid; error_log $work/front.err warn; daemon off;
$main_extra
http { access_log off; keepalive_requests 1000000; client_body_temp_path $work/b2; proxy_temp_path $work/p2;
  fastcgi_temp_path $work/f2; uwsgi_temp_path $work/u2; scgi_temp_path $work/s2; $http_extra
  upstream backend { server 127.0.0.1:$bp; keepalive 128; }
  server { listen 127.0.0.1:$nport ssl $listen_flags backlog=4096; ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
  on_servers nginx -p "$work" -c "$work/front.conf" & pids+=($!)
  for _ in $(seq 50); do [[ -s $work/front.pid ]] && break; sleep 0.1; done
  nginx_master=$(cat "$work/front.pid")
  for _ in $(seq 50); do nginx_worker=$(awk '{print $1}' "/proc/$nginx_master/task/$nginx_master/children"); [[ -n $nginx_worker ]] && break; sleep 0.1; done
}

# gatehouse on $port through gateway.sh; sets $gw (its pid) and $cookie (a real sign-in).
start_gatehouse() {
  export BENCH_RUNDIR=$work BENCH_CERT=$work/cert.pem BENCH_KEY=$work/key.pem BENCH_PORT=$port \
    BENCH_BACKEND_URL=http://127.0.0.1:$bp BENCH_USER=alice BENCH_LEVEL=3
  on_servers "$here/gateway.sh" > "$work/gateway.log" 2>&1 & pids+=($!)
  for _ in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$port/" -H "Host: app.localhost" && break; sleep 0.1; done
  cookie=$("$here/signin.sh" "$port")
  gw=$(pgrep -f "run -c $work/config.toml" | head -1)
}
