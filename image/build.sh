#!/usr/bin/env bash
# image/build.sh [TAG] — build the vminit Docker image (default tag vminit:latest).
#
#   1. the static vminit binary: cargo build --release --target x86_64-unknown-linux-musl;
#   2. the rootfs: image/build-rootfs.sh into $TARGET_DIR/image-context/rootfs (with
#      rootfs.manifest beside it: every file and why it is there);
#   3. docker build -f Dockerfile.scratch with that context.
#
# Needs a Docker daemon (scripts/dockerd.sh start gives one). Honours CARGO_TARGET_DIR.
set -euo pipefail

say() { printf 'build: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

[[ $# -le 1 ]] || {
    echo "usage: $0 [TAG]" >&2
    exit 2
}
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

rm -rf -- "$CONTEXT"
mkdir -p -- "$CONTEXT"
"$REPO/image/build-rootfs.sh" "$CONTEXT/rootfs" "$VMINIT" >/dev/null

say "docker build -t $TAG (context $CONTEXT)"
docker build -f "$REPO/Dockerfile.scratch" -t "$TAG" "$CONTEXT"

size=$(docker image inspect -f '{{.Size}}' "$TAG")
say "image $TAG: $(numfmt --to=iec --suffix=B "$size") ($size bytes); rootfs manifest: $CONTEXT/rootfs.manifest"
