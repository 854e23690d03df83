#!/usr/bin/env bash
# Where an idle keep-alive TLS connection's memory goes in gatehouse, by allocation site
# (point 9 reports the total; this says what it is made of). gatehouse, built with the
# system allocator (valgrind's massif sees only malloc: the `system-allocator` feature, in
# target/system-allocator), runs under massif in front of the nginx backend. After a real
# sign-in a first heap snapshot; then N used, idle keep-alive TLS connections
# (idle_conns.py, as in idle-memory.sh) and a second snapshot while all are open;
# massif_sites.py prints the heap bytes per connection by site. The backend pool's
# connections count too (at most 256 idle ones per worker thread, shared by all browser
# connections; the script prints how many there were).
# Slow under valgrind (a few minutes for 1 000). Loopback only. Needs valgrind, nginx,
# curl, python3, ss.
#   bench/idle-heap.sh           # N=1000
CPUS="" # memory does not depend on placement
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ulimit -n 20000
N=${N:-1000}
target=$here/../target/system-allocator
(cd "$here/.." && CARGO_TARGET_DIR=$target cargo build --release --locked -q --features system-allocator)
under_valgrind "$target/release/gatehouse" --tool=massif --vgdb=yes --threshold=0.1 --massif-out-file="$work/massif.out"
make_cert; start_backend
# Idle connections must outlive the run (gatehouse's default header_read_timeout is 15 s).
BENCH_SERVER_EXTRA='header_read_timeout = "300s"' start_gatehouse
snapshot() { # FILE: a detailed heap snapshot of the running gatehouse
  vgdb --pid="$gw" detailed_snapshot "$1" > "$work/vgdb.log" 2>&1 && [[ -s $1 ]] ||
    { cat "$work/vgdb.log" >&2; echo "idle-heap.sh: no heap snapshot from vgdb" >&2; exit 1; }
}
snapshot "$work/before.massif"
HOLD_SECONDS=600 python3 "$here/idle_conns.py" "$port" "$gw" "$N" "app.localhost:$port" "$cookie" > "$work/idle.log" &
holder=$! pids+=($!)
for _ in $(seq 600); do
  grep -qs connections= "$work/idle.log" && break
  kill -0 "$holder" 2>/dev/null || break
  sleep 1
done
grep -q "connections=$N " "$work/idle.log" || { cat "$work/idle.log" >&2; echo "idle-heap.sh: the $N connections did not all open" >&2; exit 1; }
snapshot "$work/after.massif"
echo "backend connections held by gatehouse's pool: $(ss -tnH state established "( dport = :$bp )" | wc -l)"
kill "$holder"
python3 "$here/massif_sites.py" "$work/before.massif" "$work/after.massif" "$N"
