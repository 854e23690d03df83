#!/usr/bin/env bash
# API clients (issue 4 point 7): the signed-in path with the site cookie against the same
# path with `Authorization: Basic` on an `allow_basic` site, after its first request; and
# how long that first request of a new credential takes (one argon2id verification).
# gatehouse and the nginx backend on core 0, wrk -t1 -c64 on core 1; ROUNDS alternated
# pairs of SECS-second runs. Loopback only, bounded in time.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds=${ROUNDS:-3} secs=${SECS:-8}
export BENCH_EXTRA_SITE="allow_basic = true"
make_cert; start_backend; start_gatehouse
basic="Basic $(printf 'alice:%s' "${BENCH_PASSWORD:-bench-password}" | base64 -w0)"
url="https://127.0.0.1:$port/"

# Server time of one request (first byte minus TLS done), in ms, and its status.
once() {
  curl -sk -o /dev/null -w '%{http_code} %{time_appconnect} %{time_starttransfer}\n' \
    -H "Host: app.localhost:$port" -H "Authorization: $basic" "$url" |
    awk '{printf "%s, %.1f ms\n", $1, ($3 - $2) * 1000}'
}
echo "first Basic request of the credential: $(once)"
echo "second Basic request:                  $(once)"

# One wrk run with the given header: req/s and gatehouse's CPU µs per request.
run() {
  local before after out
  before=$(ticks "$gw")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" -H "Host: app.localhost:$port" -H "$1" "$url")
  after=$(ticks "$gw")
  grep -q "Non-2xx" <<<"$out" && { echo "basic.sh: some answers were not 2xx:" >&2; echo "$out" >&2; exit 1; }
  awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /Requests\/sec/ {rps = $2} /requests in/ {n = $1}
    END {printf "%9.0f req/s %6.1f µs/req\n", rps, t / hz * 1e6 / n}' <<<"$out"
}
for r in $(seq "$rounds"); do
  echo "round $r cookie: $(run "Cookie: $cookie")"
  echo "round $r Basic:  $(run "Authorization: $basic")"
done
