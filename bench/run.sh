#!/usr/bin/env bash
# relay-sim against a pymodbus TCP server, same client, same run, same machine.
#
#   bash bench/run.sh                 # 16 clients, 10 s per server in 5 interleaved rounds
#   CLIENTS=32 SECS=10 bash bench/run.sh
#
# Builds relay-sim and modbus-load in release mode, installs pymodbus into bench/.venv,
# starts both servers on free loopback ports, loads each in turn, prints the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-16}
SECS=${SECS:-10}

if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
fi
bench/.venv/bin/pip install -q -r bench/requirements.txt
cargo build -q --release -p relay-sim -p gridledger-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2
  return 1
}

# On two or more cores, servers run on CPU 0 and the load generator on CPU 1, so that
# neither steals the other's core and the figures hold still from run to run.
server_cpu=() client_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0) client_cpu=(taskset -c 1)
fi

SIM_PORT=$(free_port)
PY_PORT=$(free_port)
RAW_PORT=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
RUST_LOG=warn "${server_cpu[@]}" target/release/relay-sim --listen "127.0.0.1:$SIM_PORT" &
SIM_PID=$!
pids+=($SIM_PID)
"${server_cpu[@]}" bench/.venv/bin/python -W ignore bench/pymodbus_server.py --port "$PY_PORT" 2>/dev/null &
PY_PID=$!
pids+=($PY_PID)
# The loopback limit: a responder that answers a fixed frame and does nothing else.
"${server_cpu[@]}" target/release/raw-responder --listen "127.0.0.1:$RAW_PORT" &
RAW_PID=$!
pids+=($RAW_PID)
wait_port "$SIM_PORT"
wait_port "$PY_PORT"
wait_port "$RAW_PORT"

echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "pymodbus $(bench/.venv/bin/python -c 'import pymodbus; print(pymodbus.__version__)')"
"${client_cpu[@]}" target/release/modbus-load --clients "$CLIENTS" --secs "$SECS" \
  --target "relay-sim=127.0.0.1:$SIM_PORT" --target "pymodbus=127.0.0.1:$PY_PORT" \
  --target "raw-loopback=127.0.0.1:$RAW_PORT" \
  --server-pid "relay-sim=$SIM_PID" --server-pid "pymodbus=$PY_PID" --server-pid "raw-loopback=$RAW_PID"
