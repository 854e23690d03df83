#!/usr/bin/env bash
# User-space instructions per signed-in request, under valgrind's callgrind: a figure that
# does not move with the machine's noise, for A/B comparisons of the hot path (the harness's
# CPU figures vary by several per cent between runs). gatehouse (GATEHOUSE_BIN, default the
# release build) runs under callgrind in front of the nginx backend; after a real sign-in
# and WARM (200) requests the counters are zeroed, N (2000) signed-in requests are sent on
# one keep-alive HTTP/1.1 connection, and the instructions counted are divided by N. The
# measured requests open their own connection: its TLS handshake (a fixed cost, about
# 0.5 % of the total at N=2000) is counted with them.
# Valgrind hides the CPU's SHA extensions, so the cookie's SHA-256 runs in software there
# (about 3 400 of the instructions; a few hundred cycles on the real CPU). Compare builds
# with each other, not with the harness's µs. Needs valgrind, nginx, curl, python3.
# Loopback only.
#   bench/instructions.sh                       # prints: instructions_per_request=…
#   GATEHOUSE_BIN=/tmp/old bench/instructions.sh
#   KEEP=/tmp/cg bench/instructions.sh         # also keeps the dump for callgrind_annotate
#   H2=1 bench/instructions.sh                 # HTTP/2 (h2load, one stream at a time; needs nghttp2-client)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
n=${N:-2000} warm=${WARM:-200}
real_bin=${GATEHOUSE_BIN:-$here/../target/release/gatehouse}
[[ -n ${GATEHOUSE_BIN:-} ]] || (cd "$here/.." && cargo build --release --locked -q)
under_valgrind "$real_bin" --tool=callgrind --callgrind-out-file="$work/callgrind.out"
export CPUS=${CPUS-0}
make_cert; start_backend; start_gatehouse
requests() { # COUNT: signed-in GETs on one connection; fails unless every answer is 200
  if [[ -n ${H2:-} ]]; then # HTTP/2 (h2load): one connection, one stream at a time
    local out
    out=$(h2load -n "$1" -c 1 -m 1 -t 1 -H ":authority: app.localhost:$port" -H "cookie: $cookie" "https://127.0.0.1:$port/" 2>&1)
    grep -q "^status codes: $1 2xx" <<<"$out" || { echo "$out" >&2; echo "instructions.sh: not every HTTP/2 answer was 2xx" >&2; exit 1; }
    return
  fi
  python3 - "$port" "$cookie" "$1" <<'PY'
import http.client, ssl, sys
port, cookie, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPSConnection("127.0.0.1", port, context=ssl._create_unverified_context())
for _ in range(count):
    c.request("GET", "/", headers={"Host": "app.localhost", "Cookie": cookie})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
}
requests "$warm"
control() { callgrind_control "$@" > "$work/control.log" 2>&1 || { cat "$work/control.log" >&2; echo "instructions.sh: callgrind_control $* failed" >&2; exit 1; }; }
control -z "$gw"
requests "$n"
control -d "$gw"
dump=
for _ in $(seq 50); do
  dump=$(ls "$work"/callgrind.out.* 2>/dev/null | tail -1 || true)
  [[ -n $dump ]] && grep -q '^summary:' "$dump" && break
  sleep 0.2
done
[[ -n $dump ]] || { echo "instructions.sh: no callgrind dump in $work" >&2; exit 1; }
total=$(awk '/^summary:/{print $2}' "$dump")
echo "requests=$n instructions=$total instructions_per_request=$((total / n))"
if [[ -n ${KEEP:-} ]]; then # KEEP=DIR: keep the dump, for callgrind_annotate
  mkdir -p "$KEEP"
  cp "$dump" "$KEEP/callgrind.out"
  echo "kept: $KEEP/callgrind.out (callgrind_annotate $KEEP/callgrind.out)"
fi
