#!/usr/bin/env bash
# Runs every check and test of vminit: installs what they need (Debian packages, the musl
# target), then fmt, clippy, the benchmark in quick mode (to keep it working; figures only,
# nothing asserted), and cargo test: unit tests, the namespace end-to-end tests with the real
# QEMU, dnsmasq and guest, and the Docker tests against a dockerd it starts (and stops).
# Needs root.
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

echo "== benchmark, quick mode"
BENCH_REPORT="$PWD/target/bench/BENCHMARKS-quick.md" BENCH_PLOT="$PWD/target/bench/quick.png" \
    bench/run.sh --quick
sed -n '/^## Headline/,/^## Machine/p' target/bench/BENCHMARKS-quick.md | sed '$d'

scripts/dockerd.sh start
trap 'scripts/dockerd.sh stop' EXIT

echo "== cargo test (unit, namespace end-to-end, Docker)"
log=target/test-output.log
set +e
VMINIT_BIN="$PWD/target/x86_64-unknown-linux-musl/release/vminit" \
    cargo test --locked --no-fail-fast -- --test-threads="${VMINIT_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
scripts/dockerd.sh stop
trap - EXIT
echo "== summary"
grep -E '^test result:' "$log" || true
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
