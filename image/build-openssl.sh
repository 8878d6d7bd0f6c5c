#!/usr/bin/env bash
# image/build-openssl.sh — build the image's libcrypto from Debian's own openssl source package,
# with only the algorithms swtpm and libtpms use, or take it from the cache; print the cache
# directory (DIR/libcrypto.so.3, DIR/VERSION, DIR/configure-line).
#
# libcrypto is in the image for swtpm (TPM=yes) alone: libtpms and swtpm's libswtpm_libtpms are
# its only users (image/check-rootfs.sh proves that every shipped file is opened). Debian's build
# carries every algorithm and protocol OpenSSL has (4.7 MB); a TPM 2.0 needs RSA, prime-curve ECC
# (ECDSA, ECDH, ECDAA on its own code), AES, Camellia, triple DES, SHA-1 and SHA-2, HMAC and
# PBKDF2 (swtpm's state encryption). CONFIGURE below turns off the rest; the result keeps the
# soname, the symbol versions and the ABI of Debian's, so Debian's libtpms and swtpm binaries load
# it unchanged. The build fails when a symbol those binaries import is missing from it.
#
# The source: the newest openssl source version apt knows for this release (a security release
# changes it, so the cache key, so the next image build rebuilds), with Debian's patches applied
# by dpkg-source. A version the archive lists but does not serve (a mirror behind the security
# archive) is skipped with a warning, for the next newest.
#
# Cache: /var/cache/vminit-openssl/KEY (VMINIT_OPENSSL_CACHE overrides the parent dir); KEY is a
# hash of the source version, the configure line, the flags and the scripts, as for
# image/build-qemu.sh. About two minutes on a cold cache (docs/image.md).
set -euo pipefail

CACHE_ROOT=${VMINIT_OPENSSL_CACHE:-/var/cache/vminit-openssl}
NAME=openssl
IMAGE_DIR=$(dirname -- "$(realpath -e -- "${BASH_SOURCE[0]}")")
# shellcheck source=image/debian-source.sh
. "$IMAGE_DIR/debian-source.sh"
no_arguments "$@"

# Debian's paths (the soname and symbol versions come from the source), then what is turned off:
# every TLS/DTLS protocol and the socket code (libssl is not shipped), engines, loadable modules
# and the legacy provider, and every algorithm a TPM 2.0 does not have. Kept: RSA, EC on prime
# curves, AES, Camellia, DES (triple DES), SHA-1/2, HMAC, CMAC, PBKDF2, the DRBG, BIO base64,
# error strings (swtpm's log names OpenSSL's errors, without their source file names), and the
# deprecated low-level API (AES_encrypt, SHA1_Init, RSA_sign, ...: libtpms calls it).
CONFIGURE=(
    --prefix=/usr --openssldir=/usr/lib/ssl --libdir=lib/x86_64-linux-gnu
    shared no-tests no-ssl no-tls no-dtls no-sock no-srp no-psk no-srtp no-ct no-ocsp
    no-ts no-cms no-cmp no-engine no-module no-legacy no-async no-ui-console no-comp no-zlib
    no-aria no-bf no-blake2 no-cast no-chacha no-poly1305 no-idea no-md4 no-mdc2 no-rc2 no-rc4
    no-rc5 no-rmd160 no-seed no-sm2 no-sm3 no-sm4 no-whirlpool no-gost no-siphash no-siv
    no-ocb no-scrypt no-dh no-dsa no-ec2m no-rdrand no-multiblock no-dso no-filenames
    debian-amd64
)
# swtpm's binaries, whose libcrypto imports the result must define.
USERS=(/usr/lib/x86_64-linux-gnu/libtpms.so.0 /usr/lib/x86_64-linux-gnu/swtpm/libswtpm_libtpms.so.0)
BUILD_DEPS=(dpkg-dev build-essential perl swtpm)

ensure_build_deps "${BUILD_DEPS[@]}"
export DEB_BUILD_MAINT_OPTIONS='hardening=+all reproducible=-fixfilepath,-fixdebugpath'
# Debian's hardening flags, then built for size: -Os and no unwind tables for the C code (0.6 MB
# of the 4.7; OpenSSL's assembly, where its time goes, keeps its own), the relative relocations
# packed (DT_RELR). RSA and ECDSA signing measured 4 % slower than at -O2, SHA-256 the same
# (docs/image.md); a TPM is no hot path.
CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS) -Os -fno-asynchronous-unwind-tables -fno-unwind-tables"
LDFLAGS="$(dpkg-buildflags --get LDFLAGS) -Wl,-z,pack-relative-relocs"

WORK=$(mktemp -d /var/tmp/vminit-openssl-build.XXXXXX)
trap 'rm -rf -- "$WORK"' EXIT
# Newest first; when no listed version downloads, apt's lists may be old: updated once, and the
# versions listed again.
src=""
for pass in listed refreshed; do
    for version in $(source_versions openssl); do
        OUT=$(cache_dir "$CACHE_ROOT" "$version" "${CONFIGURE[*]} CFLAGS=$CFLAGS LDFLAGS=$LDFLAGS")
        if [[ -f $OUT/libcrypto.so.3 ]]; then
            say "cached: openssl $version in $OUT"
            echo "$OUT"
            exit 0
        fi
        mkdir -p "$WORK/$pass/$version"
        if download_source openssl "$version" "$WORK/$pass/$version"; then
            src=$SOURCE_DIR
            break 2
        fi
        say "warning: the archive lists openssl $version but does not serve it; trying the next newest"
    done
    [[ $pass == refreshed ]] || refresh_apt
done
[[ -n $src ]] || die "none of the openssl source versions apt lists could be downloaded (apt-cache showsrc openssl; is the archive reachable?)"

say "building libcrypto of openssl $version (${CONFIGURE[*]})"
mkdir -p "$src/build"
(cd "$src/build" && CFLAGS=$CFLAGS LDFLAGS=$LDFLAGS ../Configure "${CONFIGURE[@]}" >&2) ||
    die "Configure failed"
nice -n 5 make -C "$src/build" -j "$(nproc)" build_generated >&2 || die "build failed (generated files)"
nice -n 5 make -C "$src/build" -j "$(nproc)" libcrypto.so >&2 || die "build failed (libcrypto.so)"
lib=$src/build/libcrypto.so.3
[[ -f $lib ]] || die "the build left no $lib"

# Every libcrypto symbol swtpm's libraries import, at its version, is defined.
absent=$(comm -23 \
    <(nm -D --undefined-only "${USERS[@]}" | awk '$2 ~ /@OPENSSL_/ { print $2 }' | sort -u) \
    <(nm -D --defined-only "$lib" | awk '{ sub(/@@/, "@", $3); print $3 }' | sort -u) | tr '\n' ' ')
[[ -z $absent ]] || die "the trimmed libcrypto lacks what swtpm's libraries import: ${absent% }; turn their algorithms back on in CONFIGURE"

mkdir -p -- "$CACHE_ROOT"
tmp=$(mktemp -d "$CACHE_ROOT/.new.XXXXXX")
install -m 0644 "$lib" "$tmp/libcrypto.so.3"
strip --strip-unneeded "$tmp/libcrypto.so.3"
echo "$version" >"$tmp/VERSION"
echo "${CONFIGURE[*]}" >"$tmp/configure-line"
publish "$tmp" "$OUT"
echo "$OUT"
