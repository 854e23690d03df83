#!/usr/bin/env bash
# gatehouse against nginx round by round, pooled over several harness tables. On a VM whose
# speed drifts by ±15 % between tables, one table's medians can meet or miss a target by
# chance; the runs of one round (each scenario once, a minute apart) are the closest pairs
# the harness gives, and pooling many rounds says how often, and by how much, gatehouse is
# ahead. Reads only the harness's runs.tsv (columns found by name in runs.tsv.header).
#   bench/pooled.sh                                  # every table in bench/results
#   bench/pooled.sh bench/results/20261127-1*        # some of them
# Per table and pooled: rounds compared; medians of the per-round ratios gateway/nginx-tls
# and gateway/nginx-authreq (req/s), gateway/nginx-tls p99 and own CPU per request; and in
# how many rounds each clause of issue 4 point 2 held (≥ 1.0× nginx-tls, ≥ 1.3×
# nginx-authreq, p99 no worse, own CPU no higher). Tables of different settings (pinned or
# not) are kept apart in the pooled lines. Reads files only; starts nothing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dirs=("$@")
[[ ${#dirs[@]} -gt 0 ]] || dirs=("$here"/results/*/)
for d in "${dirs[@]}"; do
  d=${d%/}
  [[ -s $d/runs.tsv && -s $d/runs.tsv.header ]] || continue
  placement=$(grep -o 'PIN=[01]' "$d/env.txt" 2>/dev/null || echo PIN=?)
  # One line per round: table, placement, the four ratios.
  awk -F'\t' -v table="$(basename "$d")" -v placement="$placement" '
    FNR == NR {
      for (i = 1; i <= NF; i++) col[$i] = i
      split("scenario run rps p99_us front_cpu_s requests", need, " ")
      for (i in need) if (!(need[i] in col)) { print "pooled.sh: " FILENAME " has no column " need[i] > "/dev/stderr"; exit 1 }
      next
    }
    {
      s = $col["scenario"]; r = $col["run"]
      rps[s, r] = $col["rps"]; p99[s, r] = $col["p99_us"]
      cpu[s, r] = $col["requests"] > 0 ? $col["front_cpu_s"] / $col["requests"] : 0; runs[r] = 1
    }
    END {
      for (r in runs) {
        if (!(("gateway", r) in rps) || !(("nginx-tls", r) in rps) || !(("nginx-authreq", r) in rps)) continue
        # A failed run (no requests, no latency) has nothing to compare.
        if (rps["nginx-tls", r] <= 0 || rps["nginx-authreq", r] <= 0 || p99["nginx-tls", r] <= 0 || cpu["nginx-tls", r] <= 0) continue
        printf "%s %s %.4f %.4f %.4f %.4f\n", table, placement,
          rps["gateway", r] / rps["nginx-tls", r], rps["gateway", r] / rps["nginx-authreq", r],
          p99["gateway", r] / p99["nginx-tls", r], cpu["gateway", r] / cpu["nginx-tls", r]
      }
    }' "$d/runs.tsv.header" "$d/runs.tsv" || exit 1
done | awk '
  function median(list,    n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function add(key, tls, authreq, p99, cpu) {
    n[key]++; l_tls[key] = l_tls[key] " " tls; l_auth[key] = l_auth[key] " " authreq
    l_p99[key] = l_p99[key] " " p99; l_cpu[key] = l_cpu[key] " " cpu
    ok_tls[key] += tls >= 1.0; ok_auth[key] += authreq >= 1.3; ok_p99[key] += p99 <= 1.0; ok_cpu[key] += cpu <= 1.0
  }
  function show(label, key) {
    printf "%-24s %6d %8.2f %9.2f %8.2f %8.2f    %5s %6s %6s %6s\n", label, n[key],
      median(l_tls[key]), median(l_auth[key]), median(l_p99[key]), median(l_cpu[key]),
      ok_tls[key] "/" n[key], ok_auth[key] "/" n[key], ok_p99[key] "/" n[key], ok_cpu[key] "/" n[key]
  }
  { key = $1 " " $2; if (!(key in n)) order[++tables] = key; add(key, $3, $4, $5, $6); add("pooled " $2, $3, $4, $5, $6) }
  END {
    if (!tables) { print "pooled.sh: no harness table with gateway, nginx-tls and nginx-authreq rounds" > "/dev/stderr"; exit 1 }
    printf "%-24s %6s %8s %9s %8s %8s    %5s %6s %6s %6s\n", "table", "rounds", "x tls", "x authreq", "p99/tls", "cpu/tls", ">=1.0", ">=1.3", "p99<=", "cpu<="
    for (i = 1; i <= tables; i++) show(order[i], order[i])
    for (p = 0; p <= 1; p++) if (("pooled PIN=" p) in n) show("pooled PIN=" p, "pooled PIN=" p)
  }'
