#!/usr/bin/env bash
# Where each server's CPU per request goes: user space (the server's own code and its TLS
# library) and kernel (loopback TCP, system calls, scheduling), gatehouse against nginx-tls.
# The harness reports their sum; this says which half a change has to come from.
# Servers and the nginx backend on core 0, wrk -t1 -c64 on core 1 (the harness's pinned
# placement), ROUNDS alternated pairs of SECS-second runs after a short warm-up of each.
# SYSCALLS=1 then counts each server's system calls per request in one more 4 s run each,
# under `perf stat` (its tracepoints slow the server, so those runs are not timed).
# SEGMENTS=1 counts the loopback TCP segments sent per request in one more 4 s run each
# (all sockets of the machine, from /proc/net: keep it otherwise idle): four is the least a
# proxy can send (request in, to the backend, its answer, the answer out); more would be
# pure ACKs, each a trip through the kernel's TCP stack.
# Loopback only, bounded in time. Needs wrk, nginx, curl, openssl (and perf for SYSCALLS=1).
#   bench/cpu-split.sh            # ROUNDS=3 SECS=8
#   SYSCALLS=1 bench/cpu-split.sh
#   SEGMENTS=1 ROUNDS=0 bench/cpu-split.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds=${ROUNDS:-3} secs=${SECS:-8}
make_cert; start_backend; start_nginx_tls; start_gatehouse

# One wrk run against PID's URL: req/s, then its user, kernel and total CPU µs per request.
run() { # PID URL
  local pid=$1 url=$2 before after out
  before=$(awk '{print $14, $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" -H "Host: app.localhost:$port" -H "Cookie: $cookie" "$url")
  after=$(awk '{print $14, $15}' "/proc/$pid/stat")
  grep -q "Non-2xx" <<<"$out" && { echo "cpu-split.sh: some answers were not 2xx:" >&2; echo "$out" >&2; exit 1; }
  awk -v before="$before" -v after="$after" -v hz="$(getconf CLK_TCK)" '
    /Requests\/sec/ {rps = $2} /requests in/ {n = $1}
    END {split(before, b); split(after, a); us = 1e6 / hz / n
         printf "%8.0f req/s  user %5.1f µs  kernel %5.1f µs  total %5.1f µs/req\n",
           rps, (a[1] - b[1]) * us, (a[2] - b[2]) * us, (a[1] + a[2] - b[1] - b[2]) * us}' <<<"$out"
}
gateway_url="https://127.0.0.1:$port/" nginx_url="https://127.0.0.1:$nport/"
taskset -c 1 wrk -t1 -c64 -d2s -H "Host: app.localhost:$port" -H "Cookie: $cookie" "$gateway_url" > /dev/null
taskset -c 1 wrk -t1 -c64 -d2s "$nginx_url" > /dev/null
for r in $(seq "$rounds"); do
  echo "round $r gatehouse: $(run "$gw" "$gateway_url")"
  echo "round $r nginx-tls: $(run "$nginx_worker" "$nginx_url")"
done

# System calls per request, by name (those made at least once per 100 requests).
syscalls() { # NAME PID URL
  local name=$1 pid=$2 url=$3 stat=$work/syscalls.txt perf_pid out n
  perf stat -x, -e 'syscalls:sys_enter_*' -p "$pid" -o "$stat" & perf_pid=$!
  sleep 0.5
  out=$(taskset -c 1 wrk -t1 -c64 -d4s -H "Host: app.localhost:$port" -H "Cookie: $cookie" "$url")
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -F, -v n="$n" -v name="$name" '$3 ~ /^syscalls:sys_enter_/ && $1 + 0 >= n / 100 {
      sub("syscalls:sys_enter_", "", $3); total += $1; line = line sprintf(" %s %.3f", $3, $1 / n) }
    END {printf "%s: %.1f system calls per request:%s\n", name, total / n, line}' "$stat"
}
if [[ -n ${SYSCALLS:-} ]]; then
  syscalls gatehouse "$gw" "$gateway_url"
  syscalls nginx-tls "$nginx_worker" "$nginx_url"
fi

# The machine's TCP counters so far: "segments sent, pure ACKs received, delayed ACKs sent".
tcp_counters() {
  awk '$1 == "Tcp:" && $2 ~ /^[0-9]+$/ { segs = $12 }
       $1 == "TcpExt:" && !names { for (i = 2; i <= NF; i++) col[$i] = i; names = 1; next }
       $1 == "TcpExt:" { pure = $col["TCPPureAcks"]; delayed = $col["DelayedACKs"] }
       END { print segs, pure, delayed }' /proc/net/snmp /proc/net/netstat
}
segments() { # NAME URL
  local name=$1 url=$2 before after out
  before=$(tcp_counters)
  out=$(taskset -c 1 wrk -t1 -c64 -d4s -H "Host: app.localhost:$port" -H "Cookie: $cookie" "$url")
  after=$(tcp_counters)
  awk -v before="$before" -v after="$after" -v name="$name" '/requests in/ {n = $1}
    END {split(before, b); split(after, a)
         printf "%s: %.3f TCP segments sent per request, of them pure ACKs %.3f, delayed ACKs %.3f\n",
           name, (a[1] - b[1]) / n, (a[2] - b[2]) / n, (a[3] - b[3]) / n}' <<<"$out"
}
if [[ -n ${SEGMENTS:-} ]]; then
  segments gatehouse "$gateway_url"
  segments nginx-tls "$nginx_url"
fi
