#!/usr/bin/env bash
# Runs every check and test of vminit: installs what they need (Debian packages, the
# musl target), then fmt, clippy, unit tests, the namespace end-to-end tests with real
# QEMU/dnsmasq/guest, the Docker tests against a dockerd it starts (and stops), and the
# benchmark in quick mode (figures are written, never asserted). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: the end-to-end tests need root (network namespaces, mknod, dockerd)" >&2
    exit 1
fi

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== build the static binary"
cargo build --release --locked --target x86_64-unknown-linux-musl

scripts/dockerd.sh start
trap 'scripts/dockerd.sh stop' EXIT

echo "== cargo test (unit, namespace end-to-end, Docker)"
VMINIT_BIN="$PWD/target/x86_64-unknown-linux-musl/release/vminit" \
    cargo test --locked -- --test-threads="${VMINIT_TEST_THREADS:-4}"

if [ -x bench/run.sh ]; then
    echo "== benchmark, quick mode (figures only, nothing asserted)"
    bench/run.sh --quick
fi
