#!/usr/bin/env bash
# scripts/test.sh [unit|ns|docker|browser|distro|all] — vminit's checks and tests, by tier.
#
#   unit     cargo fmt --check, clippy, every unit test (`cargo test --bins`) and the tree checks
#            (tests/unit: the architecture and the documentation's links). No root needed.
#   ns       the namespace end-to-end tests (tests/ns): real QEMU, dnsmasq, the test guest.
#   docker   the image in a real dockerd this script starts and stops (tests/docker).
#   browser  the VNC console in headless Chromium (tests/browser).
#   distro   Debian 12 guests with three network stacks (tests/distro; images cached).
#   all      (the default; what .ci/run runs) every tier above, and the benchmark in quick mode
#            (to keep it working; figures only, nothing asserted).
#
# Installs what the tier needs first (Debian packages, the musl target). All tiers but unit
# need root; they run against the static release binary.
#
# VMINIT_IMAGE_QEMU=built (the default) runs every tier on the QEMU, dnsmasq, OVMF and libcrypto
# the image ships: image/build-qemu.sh, image/build-dnsmasq.sh and image/build-openssl.sh build
# QEMU, dnsmasq and swtpm's libcrypto from Debian's source packages (or take them from their
# caches) first, image/build-ovmf.sh compresses Debian's OVMF into target/ovmf, target/swtpm/swtpm
# runs Debian's swtpm on that libcrypto, the ns, browser and distro tiers give them to vminit
# (VMINIT_TEST_QEMU, VMINIT_TEST_DNSMASQ, VMINIT_TEST_OVMF_DIR, VMINIT_TEST_SWTPM) and the docker
# tier's image ships them (image/build.sh --qemu=built). VMINIT_IMAGE_QEMU=debian runs all on
# Debian's qemu-system-x86, dnsmasq-base, ovmf and swtpm as installed.
set -euo pipefail
cd "$(dirname "$0")/.."

tier=${1:-all}
case $tier in
unit | ns | docker | browser | distro | all) ;;
*)
    echo "usage: scripts/test.sh [unit|ns|docker|browser|distro|all]" >&2
    exit 64
    ;;
esac

if [ "$tier" != unit ] && [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: the $tier tier needs root (network namespaces, mknod, dockerd)" >&2
    exit 1
fi

scripts/install-deps.sh

if [ "$tier" = unit ] || [ "$tier" = all ]; then
    echo "== cargo fmt --check"
    cargo fmt --check
    echo "== cargo clippy --all-targets -- -D warnings"
    cargo clippy --all-targets --locked -- -D warnings
fi

binary=$PWD/target/x86_64-unknown-linux-musl/release/vminit
if [ "$tier" != unit ]; then
    echo "== build the static binary"
    cargo build --release --locked --target x86_64-unknown-linux-musl
fi

case ${VMINIT_IMAGE_QEMU:=built} in
debian) ;;
built)
    if [ "$tier" != unit ]; then
        echo "== QEMU, dnsmasq and libcrypto from Debian's source packages (image/build-qemu.sh, image/build-dnsmasq.sh, image/build-openssl.sh)"
        VMINIT_TEST_QEMU=$(image/build-qemu.sh)/bin/qemu-system-x86_64
        VMINIT_TEST_DNSMASQ=$(image/build-dnsmasq.sh)/dnsmasq
        VMINIT_TEST_OVMF_DIR=$PWD/target/ovmf
        image/build-ovmf.sh "${VMINIT_TEST_QEMU%/*}/qemu-img" "$VMINIT_TEST_OVMF_DIR" >/dev/null
        openssl_dir=$(image/build-openssl.sh)
        VMINIT_TEST_SWTPM=$PWD/target/swtpm/swtpm
        mkdir -p target/swtpm
        cat >"$VMINIT_TEST_SWTPM" <<EOF
#!/bin/sh
# Made by scripts/test.sh: Debian's swtpm on the libcrypto the image ships (image/build-openssl.sh).
LD_LIBRARY_PATH=$openssl_dir exec /usr/bin/swtpm "\$@"
EOF
        chmod 0755 "$VMINIT_TEST_SWTPM"
        export VMINIT_TEST_QEMU VMINIT_TEST_DNSMASQ VMINIT_TEST_OVMF_DIR VMINIT_TEST_SWTPM
    fi
    ;;
*)
    echo "scripts/test.sh: VMINIT_IMAGE_QEMU is '$VMINIT_IMAGE_QEMU'; use debian or built" >&2
    exit 64
    ;;
esac
export VMINIT_IMAGE_QEMU

if [ "$tier" = all ]; then
    echo "== benchmark, quick mode"
    BENCH_REPORT="$PWD/target/bench/BENCHMARKS-quick.md" BENCH_PLOT="$PWD/target/bench/quick.png" \
        BENCH_QEMU=${VMINIT_TEST_QEMU:-} BENCH_DNSMASQ=${VMINIT_TEST_DNSMASQ:-} bench/run.sh --quick
    sed -n '/^## Headline/,/^## Machine/p' target/bench/BENCHMARKS-quick.md | sed '$d'
fi

if [ "$tier" = docker ] || [ "$tier" = all ]; then
    scripts/dockerd.sh start
    trap 'scripts/dockerd.sh stop' EXIT
fi

case $tier in
unit) targets=(--bins --test unit) ;;
all) targets=() ;;
*) targets=(--test "$tier") ;;
esac

echo "== cargo test ${targets[*]:-(every tier)}"
mkdir -p target
log=target/test-output.log
set +e
VMINIT_BIN=$binary cargo test --locked --no-fail-fast "${targets[@]}" \
    -- --test-threads="${VMINIT_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$tier" = docker ] || [ "$tier" = all ]; then
    scripts/dockerd.sh stop
    trap - EXIT
fi
echo "== summary"
grep -E '^test result:' "$log" || true
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
