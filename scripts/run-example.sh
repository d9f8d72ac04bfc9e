#!/usr/bin/env bash
# One command from a fresh Debian bookworm machine to the running example service:
# installs the dependencies, builds natbus and the orders service, starts a local nats-server
# with JetStream and the example's user (nats-user / changeme) on 127.0.0.1, and runs the
# service until Ctrl-C; then the service drains and the server is stopped.
#   RUN_SECONDS=N  stop the service by itself after N seconds (SIGTERM)
#   NATS_PORT=P    port for the local server (default 4222, or a free one if 4222 is taken)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/deps.sh" build

build="$root/build/example"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNATBUS_BUILD_TESTS=OFF -DNATBUS_BUILD_BENCH=OFF -DNATBUS_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" --target orders_service

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${NATS_PORT:-4222}
if port_open "$port"; then
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    port_open "$port" || break
  done
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/natbus-example.XXXXXX")
cat >"$tmp/nats.conf" <<CONF
listen: 127.0.0.1:$port
server_name: natbus_example
jetstream { store_dir: "$tmp/store" }
authorization { user: "nats-user", password: "changeme" }
CONF
nats-server -c "$tmp/nats.conf" -l "$tmp/nats.log" &
server=$!
service=""
cleanup() {
  [[ -n "$service" ]] && kill -TERM "$service" 2>/dev/null && wait "$service" 2>/dev/null
  kill -TERM "$server" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 100); do port_open "$port" && break; sleep 0.1; done
port_open "$port" || { echo "nats-server did not start; log:" >&2; cat "$tmp/nats.log" >&2; exit 1; }
echo "nats-server with JetStream on 127.0.0.1:$port (user nats-user); starting orders_service, Ctrl-C to stop"

export NATS_SERVER="nats://127.0.0.1:$port" NATS_USERNAME=nats-user NATS_PASSWORD=changeme
"$build/examples/orders_service" &
service=$!
if [[ -n "${RUN_SECONDS:-}" ]]; then
  (sleep "$RUN_SECONDS"; kill -TERM "$service" 2>/dev/null) &
fi
trap 'kill -TERM "$service" 2>/dev/null' INT TERM
rc=0
wait "$service" || rc=$?
# `wait` returns early when a trapped signal arrives: wait for the drained exit too.
while kill -0 "$service" 2>/dev/null; do wait "$service" || rc=$?; done
service=""
exit "$rc"
