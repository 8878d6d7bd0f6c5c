# image/debian-source.sh — sourced by image/build-qemu.sh, image/build-dnsmasq.sh and
# image/build-openssl.sh, which build a program or library from Debian's own source package into a
# cache directory keyed by its version and the build's recipe, and by image/build-ovmf.sh (say,
# die and ensure_build_deps only).
#
# The caller sets NAME (build-NAME names its messages) and sources this file, which gives it
#   say MESSAGE / die MESSAGE          -> a line on stderr; die exits 1
#   no_arguments "$@"                  -> exits 2 with the usage line when given any argument
# then calls, in order:
#   source_version BINARY_PACKAGE      -> prints the installed package's source version
#   (or source_versions SOURCE         -> prints every source version apt knows, newest first)
#   cache_dir ROOT VERSION RECIPE...   -> prints ROOT/KEY, KEY = sha256(version, recipe, the
#                                         calling script, this file)[:16]
#   ensure_build_deps PACKAGE...       -> apt-get installs the missing ones
#   fetch_source SOURCE VERSION WORK   -> apt-get source into WORK (dpkg-source applies Debian's
#                                         patches); prints the unpacked directory; dies on failure
#   (or download_source SOURCE VERSION WORK: one attempt, into $SOURCE_DIR, 1 on failure;
#    refresh_apt: adds the deb-src entry, or updates apt's lists if it is there)
#   publish TMP OUT                    -> makes the finished TMP readable by all and moves it
#                                         into place as OUT (a half-built directory is never OUT)
# `apt-get source` needs a deb-src entry: when none answers, ensure_deb_src adds its own file,
# /etc/apt/sources.list.d/vminit-qemu-src.sources (deb822, deb-src only, Debian and Debian
# security of this release); the machine's own apt files are not touched. When `apt-get source`
# fails and that file is there already, apt's lists may be old: fetch_source updates them and
# tries again.
# shellcheck shell=bash

say() { printf 'build-%s: %s\n' "$NAME" "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}
no_arguments() {
    [[ $# -eq 0 ]] || {
        echo "usage: $0" >&2
        exit 2
    }
}

source_version() {
    dpkg-query -W -f='${source:Version}' "$1" 2>/dev/null ||
        die "$1 is not installed; its version picks the source (apt-get install $1)"
}

cache_dir() {
    local root=$1 version=$2 key
    shift 2
    key=$( {
        echo "$version"
        echo "$*"
        cat -- "$(realpath -e -- "$0")" "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16)
    echo "$root/$key"
}

ensure_build_deps() {
    local pkg missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [[ ${#missing[@]} -gt 0 ]] || return 0
    say "installing build deps: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
}

ensure_deb_src() {
    [[ ! -e /etc/apt/sources.list.d/vminit-qemu-src.sources ]] || return 0
    say "adding a deb-src entry for Debian's source packages"
    # shellcheck disable=SC1091 # the machine's release, read at run time
    . /etc/os-release
    cat >/etc/apt/sources.list.d/vminit-qemu-src.sources <<EOF
# Added by vminit image/debian-source.sh: Debian's source packages (deb-src only).
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
}

source_versions() {
    local source=$1 versions=() v sorted=() i
    [[ -n $(apt-cache showsrc --only-source "$source" 2>/dev/null) ]] || ensure_deb_src
    mapfile -t versions < <(apt-cache showsrc --only-source "$source" 2>/dev/null | awk '/^Version:/ { print $2 }')
    [[ ${#versions[@]} -gt 0 ]] || die "apt knows no source package $source (run apt-get update)"
    # Insertion sort in Debian's version order, newest first.
    for v in "${versions[@]}"; do
        for ((i = 0; i < ${#sorted[@]}; i++)); do
            dpkg --compare-versions "$v" gt "${sorted[i]}" && break
        done
        sorted=("${sorted[@]:0:i}" "$v" "${sorted[@]:i}")
    done
    printf '%s\n' "${sorted[@]}"
}

# download_source sets SOURCE_DIR instead of printing it (one attempt, no refresh of apt's lists).
download_source() {
    local source=$1 version=$2 work=$3
    (cd "$work" && apt-get source --only-source "$source=$version" >&2) || return 1
    SOURCE_DIR=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name "$source-*" | head -n 1)
    [[ -n $SOURCE_DIR ]]
}

refresh_apt() {
    if [[ -e /etc/apt/sources.list.d/vminit-qemu-src.sources ]]; then
        apt-get update >&2 || die "apt-get update failed"
    else
        ensure_deb_src
    fi
}

fetch_source() {
    download_source "$@" || { refresh_apt && download_source "$@"; } ||
        die "apt-get source $1=$2 failed (is that version still in the archive?)"
    echo "$SOURCE_DIR"
}

publish() {
    local tmp=$1 out=$2
    # mktemp made it 0700; the programs are run by other users too (USER in the tests, as in the
    # image, where they are 0755).
    chmod 0755 -- "$tmp"
    rm -rf -- "$out"
    mv -- "$tmp" "$out"
    say "built $NAME into $out"
}
