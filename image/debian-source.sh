# image/debian-source.sh — sourced by image/build-qemu.sh and image/build-dnsmasq.sh: build a
# program from Debian's own source package, at the version of the installed binary package, into
# a cache directory keyed by that version and the build's recipe.
#
# The caller sets NAME (build-NAME names its messages) and sources this file, which gives it
#   say MESSAGE / die MESSAGE          -> a line on stderr; die exits 1
#   no_arguments "$@"                  -> exits 2 with the usage line when given any argument
# then calls, in order:
#   source_version BINARY_PACKAGE      -> prints the installed package's source version
#   cache_dir ROOT VERSION RECIPE...   -> prints ROOT/KEY, KEY = sha256(version, recipe, the
#                                         calling script, this file)[:16]
#   ensure_build_deps PACKAGE...       -> apt-get installs the missing ones
#   fetch_source SOURCE VERSION WORK   -> apt-get source into WORK (dpkg-source applies Debian's
#                                         patches); prints the unpacked directory
#   publish TMP OUT                    -> makes the finished TMP readable by all and moves it
#                                         into place as OUT (a half-built directory is never OUT)
# `apt-get source` needs a deb-src entry: when none answers, fetch_source adds its own file,
# /etc/apt/sources.list.d/vminit-qemu-src.sources (deb822, deb-src only, Debian and Debian
# security of this release); the machine's own apt files are not touched.
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

fetch_source() {
    local source=$1 version=$2 work=$3 dir
    if ! (cd "$work" && apt-get source --only-source "$source=$version" >&2); then
        say "apt-get source found no $source $version; adding a deb-src entry for Debian"
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
        (cd "$work" && apt-get source --only-source "$source=$version" >&2) ||
            die "apt-get source $source=$version failed (is that version still in the archive?)"
    fi
    dir=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name "$source-*" | head -n 1)
    [[ -n $dir ]] || die "apt-get source left no $source-* directory in $work"
    echo "$dir"
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
