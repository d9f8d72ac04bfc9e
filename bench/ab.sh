#!/usr/bin/env bash
# Two natbus-bench builds against one nats-server, alternately, PAIRS pairs per mode: how a
# change to a hot path is measured (compare the ratios of the medians, never single runs).
#   bench/ab.sh OLD_BENCH NEW_BENCH            e.g. ../base/build/bench/natbus-bench build/bench/natbus-bench
# Env: MODES (default: js_pub_async js_push_consume js_pull_consume core_pub_sub), N (200000;
# core_pub_sub 500000), SIZE (128), PAIRS (3), PORT (14222). Prints one line per run, prefixed
# with A (old) or B (new).
set -euo pipefail
old=$(readlink -f "$1")
new=$(readlink -f "$2")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
server=${BENCH_SERVER_SH:-$here/../../shared/bench-peers/server.sh}
dir=$(mktemp -d "${TMPDIR:-/tmp}/natbus-ab-XXXXXX")
port=${PORT:-14222}
trap '"$server" stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
"$server" start "$dir" "$port" >/dev/null
BENCH_SERVER_PID=$(cat "$dir/server.pid")
export BENCH_SERVER_PID
for mode in ${MODES:-js_pub_async js_push_consume js_pull_consume core_pub_sub}; do
  n=${N:-200000}
  [[ $mode == core_pub_sub && -z "${N:-}" ]] && n=500000
  for ((pair = 1; pair <= ${PAIRS:-3}; pair++)); do
    echo "A $("$old" "$mode" "$port" "$n" "${SIZE:-128}" 2>&1 | tail -1)"
    echo "B $("$new" "$mode" "$port" "$n" "${SIZE:-128}" 2>&1 | tail -1)"
  done
done
