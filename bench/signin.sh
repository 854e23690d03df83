#!/usr/bin/env bash
# GATEWAY_COOKIE_CMD: signs in through the real portal and hand-off (no back door) and
# prints the site cookie as NAME=VALUE. Usage: signin.sh [PORT] [USER] [PASSWORD]
set -euo pipefail
port=${1:-${BENCH_PORT:-18446}}
user=${2:-${BENCH_USER:-alice}}
password=${3:-${BENCH_PASSWORD:-bench-password}}
jar=$(mktemp); trap 'rm -f "$jar"' EXIT
c=(curl -sk --max-time 10 -b "$jar" -c "$jar"
   --resolve "app.localhost:$port:127.0.0.1" --resolve "auth.localhost:$port:127.0.0.1")
login=$("${c[@]}" -o /dev/null -w '%{redirect_url}' "https://app.localhost:$port/")
[[ $login == https://auth.localhost:* ]] || { echo "signin.sh: the site did not redirect to the portal ($login)" >&2; exit 1; }
form=$("${c[@]}" "$login")
field() { grep -o "name=\"$1\" value=\"[^\"]*\"" <<<"$form" | head -1 | sed 's/.*value="//; s/"$//; s/&amp;/\&/g'; }
callback=$("${c[@]}" -o /dev/null -w '%{redirect_url}' "https://auth.localhost:$port/login" \
  --data-urlencode "csrf=$(field csrf)" --data-urlencode "site=$(field site)" \
  --data-urlencode "h=$(field h)" --data-urlencode "rd=$(field rd)" \
  --data-urlencode "username=$user" --data-urlencode "password=$password")
[[ $callback == *"/.gatehouse/callback?"* ]] || { echo "signin.sh: sign-in failed (got '$callback')" >&2; exit 1; }
"${c[@]}" -o /dev/null "$callback"
value=$(awk '$1 ~ /app\.localhost$/ && $6 == "__Host-gatehouse" {print $7}' "$jar")
[[ -n $value ]] || { echo "signin.sh: no site cookie after the hand-off" >&2; exit 1; }
echo "__Host-gatehouse=$value"
