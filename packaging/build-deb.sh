#!/usr/bin/env bash
# Builds target/debian/gridledger_*.deb (the node), gridledger-gateway_*.deb and
# gridledger-relay-sim_*.deb: the release binaries, then the node's manual page and
# completions it generates from its own command line, then cargo-deb around them.
# Needs cargo-deb (cargo install cargo-deb --locked).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p node --bin gridledger -p gateway --bin gateway -p relay-sim --bin relay-sim
mkdir -p target/debian-assets
target/release/gridledger print man | gzip -9n > target/debian-assets/gridledger.1.gz
target/release/gridledger print completions-bash > target/debian-assets/gridledger.bash
cargo deb -p node --no-build --no-strip
cargo deb -p gateway --no-build --no-strip
cargo deb -p relay-sim --no-build --no-strip
ls target/debian/gridledger*.deb
