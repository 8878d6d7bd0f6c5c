#!/usr/bin/env bash
# image/build-qemu.sh — build the image's QEMU from Debian's own qemu source package, or take it
# from the cache; print the cache directory (DIR/bin/qemu-system-x86_64, DIR/bin/qemu-img,
# DIR/VERSION, DIR/configure-line, DIR/devices.mak).
#
# The source is `apt-get source qemu=VERSION` with VERSION the installed qemu-system-x86's source
# version, so the image runs the same QEMU release as Debian's binary package, with Debian's
# patches (security fixes among them) applied by dpkg-source. It is configured for one target
# (x86_64-softmmu), only the features vminit uses (CONFIGURE below) and only the devices of
# image/qemu-devices.mak, and stripped.
#
# Cache: /var/cache/vminit-qemu/KEY (VMINIT_QEMU_CACHE overrides the parent dir); KEY is a hash
# of the source package version, the configure line, the device list and the scripts. A warm
# cache costs nothing; a Debian security release changes the version, so the key, so the next
# image build rebuilds.
#
# Needs: a deb-src entry for Debian (added as /etc/apt/sources.list.d/vminit-qemu-src.sources when
# `apt-get source` finds none; the machine's own apt files are not touched) and the build deps
# below (installed with apt-get when missing). The cold build time is measured in docs/image.md.
set -euo pipefail

CACHE_ROOT=${VMINIT_QEMU_CACHE:-/var/cache/vminit-qemu}
NAME=qemu
IMAGE_DIR=$(dirname -- "$(realpath -e -- "${BASH_SOURCE[0]}")")
DEVICES=$IMAGE_DIR/qemu-devices.mak
# shellcheck source=image/debian-source.sh
. "$IMAGE_DIR/debian-source.sh"
no_arguments "$@"

# What vminit uses, and nothing else Debian enables: KVM and TCG (built in, no modules), VNC
# (DISPLAY=vnc), the seccomp sandbox (-sandbox on), device trees (needed by the x86 target's
# build), tap and stream netdevs with vhost-net, user networking (slirp: user mode's relay where
# passt cannot build its sandbox), nettle as the cipher backend (VNC_PASSWORD_FILE: VNC's
# password authentication needs DES, which QEMU has no built-in cipher for), the TPM emulator
# backend (TPM=yes), the vvfat seed driver, qemu-img (the disk feature); the devices of
# image/qemu-devices.mak only; no trace points (the nop backend: QEMU's -trace has nothing to
# print, -d still works).
# Prefix /usr and Debian's firmware path: QEMU looks for its data and firmware dirs relative to
# its binary (BIN/../share/qemu, BIN/../share/seabios, BIN/../lib/ipxe/qemu), so in the rootfs
# (/usr/bin) they are where Debian's qemu-system-data, seabios and ipxe-qemu packages put the
# keymaps and ROMs; in the cache they are symlinks to those dirs.
# Block formats qcow2 and raw are always built.
# Built smaller, with nothing left out (measured in docs/image.md): each function and object in
# its own section, and the linker drops those nothing refers to; the PIE's relative relocations
# packed (DT_RELR, glibc 2.36: most of them are QEMU's tables of pointers); libgcc's three
# helpers (128-bit division, popcount) linked in instead of libgcc_s.so.1. Not -Os (24 % slower
# under TCG), not LTO (no smaller than this).
CONFIGURE=(
    --prefix=/usr --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
    --target-list=x86_64-softmmu
    --without-default-features
    --without-default-devices --with-devices-x86_64=vminit
    --enable-trace-backends=nop
    --enable-kvm --enable-tcg
    --enable-vnc
    --enable-seccomp
    --enable-fdt=system
    --enable-vhost-net --enable-vhost-kernel
    --enable-slirp
    --enable-nettle
    --enable-tpm
    --enable-vvfat
    --enable-tools
    --disable-install-blobs --disable-docs --disable-user
    --disable-werror
    --extra-cflags='-ffunction-sections -fdata-sections'
    --extra-ldflags='-Wl,--gc-sections -Wl,-z,pack-relative-relocs -static-libgcc'
)
BUILD_DEPS=(dpkg-dev build-essential python3 python3-venv ninja-build meson pkg-config
    libglib2.0-dev libpixman-1-dev libseccomp-dev libfdt-dev zlib1g-dev libslirp-dev nettle-dev flex bison)

version=$(source_version qemu-system-x86)
OUT=$(cache_dir "$CACHE_ROOT" "$version" "${CONFIGURE[*]}" "$(cat -- "$DEVICES")")
if [[ -x $OUT/bin/qemu-system-x86_64 && -x $OUT/bin/qemu-img ]]; then
    say "cached: qemu $version in $OUT"
    echo "$OUT"
    exit 0
fi

ensure_build_deps "${BUILD_DEPS[@]}"
WORK=$(mktemp -d /var/tmp/vminit-qemu-build.XXXXXX)
trap 'rm -rf -- "$WORK"' EXIT
src=$(fetch_source qemu "$version" "$WORK")

# QEMU's meson.build links nettle's hogweed and gmp (RSA, for virtio-crypto's asymmetric
# ciphers: no such device here) whenever pkg-config finds gmp, and VNC's password needs nettle's
# DES only: configure gets a pkg-config that does not find gmp (two libraries, 0.8 MB, less).
cat >"$WORK/pkg-config" <<'EOF'
#!/bin/sh
for arg; do [ "$arg" = gmp ] && exit 1; done
exec pkg-config "$@"
EOF
chmod +x "$WORK/pkg-config"

say "configuring qemu $version: ${CONFIGURE[*]}"
cp -- "$DEVICES" "$src/configs/devices/x86_64-softmmu/vminit.mak"
mkdir -p "$src/build"
(cd "$src/build" && PKG_CONFIG=$WORK/pkg-config nice -n 5 ../configure "${CONFIGURE[@]}" >&2) ||
    die "configure failed"
say "building (nice, $(nproc) jobs)"
nice -n 5 ninja -C "$src/build" -j "$(nproc)" qemu-system-x86_64 qemu-img >&2 || die "build failed"

mkdir -p -- "$CACHE_ROOT"
tmp=$(mktemp -d "$CACHE_ROOT/.new.XXXXXX")
install -D -m 0755 "$src/build/qemu-system-x86_64" "$tmp/bin/qemu-system-x86_64"
install -D -m 0755 "$src/build/qemu-img" "$tmp/bin/qemu-img"
strip --strip-unneeded "$tmp/bin/qemu-system-x86_64" "$tmp/bin/qemu-img"
mkdir -p "$tmp/share" "$tmp/lib/ipxe"
ln -s /usr/share/qemu "$tmp/share/qemu"
ln -s /usr/share/seabios "$tmp/share/seabios"
ln -s /usr/lib/ipxe/qemu "$tmp/lib/ipxe/qemu"
echo "$version" >"$tmp/VERSION"
echo "${CONFIGURE[*]}" >"$tmp/configure-line"
cp -- "$DEVICES" "$tmp/devices.mak"
publish "$tmp" "$OUT"
echo "$OUT"
