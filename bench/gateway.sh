#!/usr/bin/env bash
# GATEWAY_CMD for ../../shared/bench/run.sh: writes a gatehouse config from the harness's
# BENCH_* variables (one site, app.localhost, in front of the harness backend; one user)
# and runs the gateway in the foreground, as the harness requires.
set -euo pipefail
: "${BENCH_RUNDIR:?run me through the harness (scenario gateway)}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${GATEHOUSE_BIN:-$here/../target/release/gatehouse}
password=${BENCH_PASSWORD:-bench-password}
hash=$(printf '%s' "$password" | "$bin" hash-password)
conf=$BENCH_RUNDIR/config.toml
cat > "$conf" <<TOML
[server]
listen = "127.0.0.1:$BENCH_PORT"
log = "warn"            # no per-request logging (there is none at info either)
${BENCH_SERVER_EXTRA:-}

[tls]
cert = "$BENCH_CERT"
key = "$BENCH_KEY"

[portal]
host = "auth.localhost"
store = "$BENCH_RUNDIR/gatehouse.db"
${BENCH_PORTAL_EXTRA:-}

[[users]]
name = "$BENCH_USER"
password_hash = "$hash"
level = $BENCH_LEVEL

[[sites]]
id = "app"
host = "app.localhost"
backend = "$BENCH_BACKEND_URL"
${BENCH_EXTRA_SITE:-}
TOML
exec "$bin" run -c "$conf"
