#!/usr/bin/env bash
# image/build-qemu.sh — build the image's QEMU from Debian's own qemu source package, or take it
# from the cache; print the cache directory (DIR/bin/qemu-system-x86_64, DIR/bin/qemu-img,
# DIR/KEY, DIR/configure-line).
#
# The source is `apt-get source qemu=VERSION` with VERSION the installed qemu-system-x86's source
# version, so the image runs the same QEMU release as Debian's binary package, with Debian's
# patches (security fixes among them) applied by dpkg-source. It is configured for one target
# (x86_64-softmmu) and only the features vminit uses (CONFIGURE below), and stripped.
#
# Cache: /var/cache/vminit-qemu/KEY (VMINIT_QEMU_CACHE overrides the parent dir); KEY is a hash
# of the source package version, the configure line and this script. A warm cache costs nothing;
# a Debian security release changes the version, so the key, so the next image build rebuilds.
#
# Needs: a deb-src entry for Debian (added as /etc/apt/sources.list.d/vminit-qemu-src.sources when
# `apt-get source` finds none; the machine's own apt files are not touched) and the build deps
# below (installed with apt-get when missing). About 5 minutes on 2 cores on a cold cache.
set -euo pipefail

say() { printf 'build-qemu: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}
[[ $# -eq 0 ]] || {
    echo "usage: $0" >&2
    exit 2
}

CACHE_ROOT=${VMINIT_QEMU_CACHE:-/var/cache/vminit-qemu}
SELF=$(realpath -e -- "${BASH_SOURCE[0]}")

# What vminit uses, and nothing else Debian enables: KVM and TCG (built in, no modules), VNC
# (DISPLAY=vnc; std VGA and usb-tablet are default devices), the seccomp sandbox (-sandbox on),
# device trees (needed by the x86 target's build), tap and stream netdevs with vhost-net,
# the TPM emulator backend (TPM=yes), the vvfat seed driver, qemu-img (the disk feature).
# Prefix /usr and Debian's firmware path: QEMU looks for its data and firmware dirs relative to
# its binary (BIN/../share/qemu, BIN/../share/seabios, BIN/../lib/ipxe/qemu), so in the rootfs
# (/usr/bin) they are where Debian's qemu-system-data, seabios and ipxe-qemu packages put the
# keymaps and ROMs; in the cache they are symlinks to those dirs.
# Block formats qcow2 and raw are always built. The x86_64 default device set is kept: it holds
# pc and q35 (SMM, pflash), virtio-net/blk, e1000e, IDE CD-ROM, std VGA, USB, tpm-crb/tpm-tis.
CONFIGURE=(
    --prefix=/usr --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
    --target-list=x86_64-softmmu
    --without-default-features
    --enable-kvm --enable-tcg
    --enable-vnc
    --enable-seccomp
    --enable-fdt=system
    --enable-vhost-net --enable-vhost-kernel
    --enable-tpm
    --enable-vvfat
    --enable-tools
    --disable-install-blobs --disable-docs --disable-user
    --disable-werror
)
BUILD_DEPS=(dpkg-dev build-essential python3 python3-venv ninja-build meson pkg-config
    libglib2.0-dev libpixman-1-dev libseccomp-dev libfdt-dev zlib1g-dev flex bison)

version=$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null) ||
    die "qemu-system-x86 is not installed; its version picks the source (apt-get install qemu-system-x86)"
key=$( {
    echo "$version"
    echo "${CONFIGURE[*]}"
    cat -- "$SELF"
} | sha256sum | cut -c1-16)
OUT=$CACHE_ROOT/$key

if [[ -x $OUT/bin/qemu-system-x86_64 && -x $OUT/bin/qemu-img ]]; then
    say "cached: qemu $version in $OUT"
    echo "$OUT"
    exit 0
fi

missing=()
for pkg in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing build deps: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
fi

WORK=$(mktemp -d /var/tmp/vminit-qemu-build.XXXXXX)
trap 'rm -rf -- "$WORK"' EXIT
if ! (cd "$WORK" && apt-get source --only-source "qemu=$version" >&2); then
    say "apt-get source found no qemu $version; adding a deb-src entry for Debian"
    . /etc/os-release
    cat >/etc/apt/sources.list.d/vminit-qemu-src.sources <<EOF
# Added by vminit image/build-qemu.sh: Debian's source packages (deb-src only).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $VERSION_CODENAME $VERSION_CODENAME-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $VERSION_CODENAME-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update >&2 || die "apt-get update failed"
    (cd "$WORK" && apt-get source --only-source "qemu=$version" >&2) ||
        die "apt-get source qemu=$version failed (is that version still in the archive?)"
fi
src=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' | head -n 1)
[[ -n $src ]] || die "apt-get source left no qemu-* directory in $WORK"

say "configuring qemu $version: ${CONFIGURE[*]}"
mkdir -p "$src/build"
(cd "$src/build" && nice -n 5 ../configure "${CONFIGURE[@]}" >&2) || die "configure failed"
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
rm -rf -- "$OUT"
mv -- "$tmp" "$OUT"
say "built qemu $version into $OUT"
echo "$OUT"
