#!/usr/bin/env bash
# Builds target/debian/gridledger_*.deb: the release binary, then the manual page and
# completions it generates from its own command line, then cargo-deb around them.
# Needs cargo-deb (cargo install cargo-deb --locked).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p node --bin gridledger
mkdir -p target/debian-assets
target/release/gridledger print man | gzip -9n > target/debian-assets/gridledger.1.gz
target/release/gridledger print completions-bash > target/debian-assets/gridledger.bash
cargo deb -p node --no-build --no-strip
ls target/debian/gridledger_*.deb
