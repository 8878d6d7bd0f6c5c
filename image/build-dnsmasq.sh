#!/usr/bin/env bash
# image/build-dnsmasq.sh — build the image's dnsmasq from Debian's own dnsmasq source package, or
# take it from the cache; print the cache directory (DIR/dnsmasq, DIR/VERSION, DIR/copts).
#
# The source is `apt-get source dnsmasq=VERSION` with VERSION the installed dnsmasq-base's source
# version (Debian's patches, security fixes among them, applied by dpkg-source), built with
# Debian's hardening flags (dpkg-buildflags, hardening=+all as debian/rules sets) and upstream's
# default compile-time options instead of Debian's COPTS: no D-Bus, IDN, conntrack, nftset or
# DNSSEC, which vminit's dnsmasq configuration never uses and which pull in libdbus, libsystemd,
# libidn2, libunistring, libnftables, libgcrypt, libnettle, libgmp, ... (8 MB). What is left
# needs only libc: DHCP, DHCPv6, router advertisements, DNS forwarding, TFTP, ipset, inotify.
#
# Cache: /var/cache/vminit-dnsmasq/KEY (VMINIT_DNSMASQ_CACHE overrides the parent dir); KEY is a
# hash of the source version, the build flags and the scripts, as for image/build-qemu.sh. About
# a minute on a cold cache.
set -euo pipefail

CACHE_ROOT=${VMINIT_DNSMASQ_CACHE:-/var/cache/vminit-dnsmasq}
NAME=dnsmasq
IMAGE_DIR=$(dirname -- "$(realpath -e -- "${BASH_SOURCE[0]}")")
# shellcheck source=image/debian-source.sh
. "$IMAGE_DIR/debian-source.sh"
no_arguments "$@"

COPTS= # upstream's defaults (src/config.h); Debian's rules add -DHAVE_DBUS -DHAVE_LIBIDN2 ...
BUILD_DEPS=(dpkg-dev build-essential)

ensure_build_deps "${BUILD_DEPS[@]}"
# Without reproducible's fixfilepath and fixdebugpath: they map the caller's working directory
# (-ffile-prefix-map=$PWD=.), which would put that directory into the flags, so into the cache
# key (the build is in a directory of its own anyway).
export DEB_BUILD_MAINT_OPTIONS='hardening=+all reproducible=-fixfilepath,-fixdebugpath'
CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
LDFLAGS=$(dpkg-buildflags --get LDFLAGS)

version=$(source_version dnsmasq-base)
OUT=$(cache_dir "$CACHE_ROOT" "$version" "COPTS=$COPTS CFLAGS=$CFLAGS LDFLAGS=$LDFLAGS")
if [[ -x $OUT/dnsmasq ]]; then
    say "cached: dnsmasq $version in $OUT"
    echo "$OUT"
    exit 0
fi

WORK=$(mktemp -d /var/tmp/vminit-dnsmasq-build.XXXXXX)
trap 'rm -rf -- "$WORK"' EXIT
src=$(fetch_source dnsmasq "$version" "$WORK")

say "building dnsmasq $version (COPTS='$COPTS')"
nice -n 5 make -C "$src" -j "$(nproc)" CFLAGS="$CFLAGS" LDFLAGS="$LDFLAGS" COPTS="$COPTS" >&2 ||
    die "build failed"

mkdir -p -- "$CACHE_ROOT"
tmp=$(mktemp -d "$CACHE_ROOT/.new.XXXXXX")
install -m 0755 "$src/src/dnsmasq" "$tmp/dnsmasq"
strip --strip-unneeded "$tmp/dnsmasq"
echo "$version" >"$tmp/VERSION"
echo "$COPTS" >"$tmp/copts"
publish "$tmp" "$OUT"
echo "$OUT"
