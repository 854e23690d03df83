#!/usr/bin/env bash
# Issue 8 point 4: the size and time of one edge's sync with SEED (100 000) active entries.
# A portal process (role = "portal") from a benchmark build is seeded with SEED signed-in
# sessions through its own sign-in and hand-off code (src/bench_seed.rs); an edge process
# (role = "edge") then checks every one of those site cookies with the portal over the
# signed HTTPS API, as table misses would, admits them, counts one request on each, and times
# one sync reporting them all (then an empty one). Loopback only; nothing is served to wrk.
# Prints the edge's "bench sync" figures. Both processes are pinned to CPUS (default: none).
# STORE=postgres runs the portal on a PostgreSQL store (a throwaway server on loopback,
# started here with scripts/postgres-for-tests) instead of SQLite.
CPUS=${CPUS-}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
seed=${SEED:-100000}
bin=${GATEHOUSE_BIN:-$here/../target/release/gatehouse}
(cd "$here/.." && cargo build --release --locked --features bench-seed -q)
# The project's dev certificate and its CA (webpki refuses a self-signed end certificate).
certs=$here/../certs
head -c 48 /dev/urandom | base64 > "$work/cluster.key"
hash=$(printf 'bench-password' | "$bin" hash-password)
pport=18601 eport=18602
store="$work/gatehouse.db"
if [[ ${STORE:-sqlite} == postgres ]]; then
  pg_dir=$(mktemp -d /tmp/gatehouse-bench-pg.XXXXXX)
  trap '"$here/../scripts/postgres-for-tests" stop "$pg_dir"; kill "${pids[@]}" 2>/dev/null || true; pkill -f -- "$work" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
  store=$("$here/../scripts/postgres-for-tests" start "$pg_dir")
fi

common() { # the [tls], [portal] and [[sites]] every process shares
  cat <<TOML
[tls]
cert = "$certs/localhost.crt"
key = "$certs/localhost.key"

[portal]
host = "auth.localhost"
store = "$store"

[[sites]]
id = "app"
host = "app.localhost"
backend = "http://127.0.0.1:1"
TOML
}
{ printf '[server]\nlisten = "127.0.0.1:%s"\nlog = "warn"\n\n' "$pport"; common
  printf '\n[[users]]\nname = "alice"\npassword_hash = "%s"\nlevel = 3\n' "$hash"
  printf '\n[cluster]\nrole = "portal"\nsecret_file = "%s"\n' "$work/cluster.key"; } > "$work/portal.toml"
{ printf '[server]\nlisten = "127.0.0.1:%s"\nlog = "warn"\n\n' "$eport"; common
  printf '\n[cluster]\nrole = "edge"\nportal_url = "https://auth.localhost:%s"\nsecret_file = "%s"\nca_file = "%s"\n' \
    "$pport" "$work/cluster.key" "$certs/dev-ca.crt"; } > "$work/edge.toml"

GATEHOUSE_BENCH_SEED=$seed GATEHOUSE_BENCH_SEED_USER=alice GATEHOUSE_BENCH_SEED_PASSWORD=bench-password \
  GATEHOUSE_BENCH_SEED_COOKIES=$work/cookies GATEHOUSE_BENCH_SEED_HASHES=$work/hashes \
  on_servers "$bin" run -c "$work/portal.toml" > "$work/portal.log" 2>&1 & pids+=($!)
for _ in $(seq "${SEED_WAIT:-600}"); do grep -q "bench seed done" "$work/portal.log" && break; sleep 0.2; done
grep -q "bench seed done" "$work/portal.log" || { cat "$work/portal.log"; echo "cluster-sync.sh: the portal did not seed" >&2; exit 1; }
sleep 1   # serving starts right after the seed

GATEHOUSE_BENCH_EDGE_HASHES=$work/hashes on_servers "$bin" run -c "$work/edge.toml" > "$work/edge.log" 2>&1 & pids+=($!)
for _ in $(seq 600); do grep -q "bench sync" "$work/edge.log" && break; sleep 0.2; done
grep -q "bench sync" "$work/edge.log" || { cat "$work/edge.log"; echo "cluster-sync.sh: the edge did not sync" >&2; exit 1; }
grep -o 'entries=.*' "$work/edge.log" | head -1 | sed 's/^/edge: /'
