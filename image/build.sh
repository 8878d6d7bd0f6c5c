#!/usr/bin/env bash
# image/build.sh [--qemu=debian|built] [TAG] — build the vminit Docker image (default tag
# vminit:latest).
#
#   1. the static vminit binary: cargo build --release --target x86_64-unknown-linux-musl;
#   2. with --qemu=built (the default), QEMU, dnsmasq and swtpm's libcrypto built from Debian's
#      qemu, dnsmasq and openssl source packages for vminit's features only (image/build-qemu.sh,
#      image/build-dnsmasq.sh, image/build-openssl.sh; cached under /var/cache/vminit-qemu,
#      /var/cache/vminit-dnsmasq and /var/cache/vminit-openssl by source version and recipe);
#      with --qemu=debian, Debian's qemu-system-x86, qemu-utils, dnsmasq-base and libssl3 binary
#      packages as installed, with all their features and libraries;
#   3. the rootfs: image/build-rootfs.sh into $TARGET_DIR/image-context/rootfs (with
#      rootfs.manifest beside it: every file and why it is there);
#   4. docker build -f Dockerfile.scratch with that context.
#
# --qemu defaults to $VMINIT_IMAGE_QEMU, else built. Needs a Docker daemon (scripts/dockerd.sh
# start gives one). Honours CARGO_TARGET_DIR.
set -euo pipefail

say() { printf 'build: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

usage() {
    echo "usage: $0 [--qemu=debian|built] [TAG]" >&2
    exit 2
}
QEMU_FROM=${VMINIT_IMAGE_QEMU:-built}
if [[ ${1:-} == --qemu=* ]]; then
    QEMU_FROM=${1#--qemu=}
    shift
fi
[[ $QEMU_FROM == debian || $QEMU_FROM == built ]] || {
    echo "$0: --qemu (or VMINIT_IMAGE_QEMU) is '$QEMU_FROM'; use debian or built" >&2
    exit 2
}
[[ $# -le 1 ]] || usage
TAG=${1:-vminit:latest}
REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=x86_64-unknown-linux-musl
TARGET_DIR=$(realpath -m -- "${CARGO_TARGET_DIR:-$REPO/target}")
CONTEXT=$TARGET_DIR/image-context
VMINIT=$TARGET_DIR/$TARGET/release/vminit

timeout 10 docker info >/dev/null 2>&1 ||
    die "no Docker daemon answers (start one with: scripts/dockerd.sh start)"

if ! rustup target list --installed | grep -qx "$TARGET"; then
    say "adding the Rust target $TARGET"
    rustup target add "$TARGET"
fi
say "building vminit ($TARGET, release)"
(cd "$REPO" && cargo build --release --locked --target "$TARGET")
[[ -x $VMINIT ]] || die "cargo did not produce $VMINIT"

built=()
if [[ $QEMU_FROM == built ]]; then
    say "QEMU, dnsmasq and libcrypto from Debian's source packages (image/build-qemu.sh, image/build-dnsmasq.sh, image/build-openssl.sh)"
    qemu_dir=$("$REPO/image/build-qemu.sh") || die "image/build-qemu.sh failed"
    dnsmasq_dir=$("$REPO/image/build-dnsmasq.sh") || die "image/build-dnsmasq.sh failed"
    openssl_dir=$("$REPO/image/build-openssl.sh") || die "image/build-openssl.sh failed"
    built=(--qemu="$qemu_dir" --dnsmasq="$dnsmasq_dir" --openssl="$openssl_dir")
fi

rm -rf -- "$CONTEXT"
mkdir -p -- "$CONTEXT"
"$REPO/image/build-rootfs.sh" "${built[@]}" "$CONTEXT/rootfs" "$VMINIT" >/dev/null

say "docker build -t $TAG (context $CONTEXT)"
docker build -f "$REPO/Dockerfile.scratch" -t "$TAG" "$CONTEXT"

size=$(docker image inspect -f '{{.Size}}' "$TAG")
say "image $TAG: $(numfmt --to=iec --suffix=B "$size") ($size bytes); rootfs manifest: $CONTEXT/rootfs.manifest"
