#!/usr/bin/env bash
# image/build-rootfs.sh [--qemu=DIR] [--dnsmasq=DIR] [--openssl=DIR] ROOTFS VMINIT_BINARY —
# assemble the root filesystem of the `FROM scratch` vminit image from this machine's Debian
# packages.
#
# --qemu=DIR ships DIR/bin/qemu-system-x86_64 and DIR/bin/qemu-img (an output of
# image/build-qemu.sh: QEMU built from Debian's source package for vminit's features only, TCG
# built in) instead of the binaries of Debian's qemu-system-x86 and qemu-utils packages; the
# firmware, ROMs and keymap still come from Debian's packages. --dnsmasq=DIR ships DIR/dnsmasq
# (an output of image/build-dnsmasq.sh: libc only) instead of dnsmasq-base's. --openssl=DIR ships
# DIR/libcrypto.so.3 (an output of image/build-openssl.sh: only the algorithms a TPM uses) as the
# libcrypto that swtpm's libraries load, instead of libssl3's.
#
# The rootfs holds QEMU (x86_64 system emulator), qemu-img, swtpm, dnsmasq and passt with exactly
# the shared libraries they load, OVMF (UEFI firmware, BOOT_MODE; compressed by
# image/build-ovmf.sh), the firmware and option ROMs QEMU opens for a default `pc` machine with
# virtio-net-pci NICs, the TCG accelerator module, a two-line /etc/passwd and /etc/group for
# dnsmasq, the empty mount points vminit and Docker use, and the static vminit binary as /vminit.
# Nothing else: every file has a reason, written to ROOTFS.manifest and printed at the end.
# image/check-rootfs.sh verifies the list by running QEMU and dnsmasq in the rootfs under strace.
#
# qemu-system-x86, qemu-utils, ovmf, swtpm, dnsmasq-base and passt are installed with apt-get
# when missing (Debian/Ubuntu host).
set -euo pipefail

usage() {
    echo "usage: $0 [--qemu=DIR] [--dnsmasq=DIR] [--openssl=DIR] ROOTFS VMINIT_BINARY" >&2
    exit 2
}
QEMU_BUILT='' DNSMASQ_BUILT='' OPENSSL_BUILT=''
while [[ ${1:-} == --* ]]; do
    case $1 in
    --qemu=*) QEMU_BUILT=${1#--qemu=} ;;
    --dnsmasq=*) DNSMASQ_BUILT=${1#--dnsmasq=} ;;
    --openssl=*) OPENSSL_BUILT=${1#--openssl=} ;;
    *) usage ;;
    esac
    shift
done
[[ $# -eq 2 ]] || usage

say() { printf 'build-rootfs: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

ROOTFS=$(realpath -m -- "$1")
VMINIT_BINARY=$2
MANIFEST=$ROOTFS.manifest

QEMU=/usr/bin/qemu-system-x86_64 # in the rootfs, and Debian's on this machine
QEMU_IMG=/usr/bin/qemu-img        # likewise
QEMU_SRC=$QEMU                    # the binaries shipped there
QEMU_IMG_SRC=$QEMU_IMG
SWTPM=/usr/bin/swtpm
OVMF_DIR=/usr/share/OVMF

DNSMASQ=/usr/sbin/dnsmasq # in the rootfs, and Debian's on this machine
DNSMASQ_SRC=$DNSMASQ
PASST=/usr/bin/passt

# Firmware and option ROMs, by the name QEMU asks for, each with the reason QEMU opens it.
# They are found through QEMU's own data-dir search order (`qemu-system-x86_64 -L help`) and land
# at the same place in the rootfs, with symlinks resolved. Measured with strace for
# `-machine pc` (the default), `-accel kvm` and `-accel tcg`, `-device virtio-net-pci`, with and
# without `-kernel` (see image/check-rootfs.sh). Not opened, so not shipped: bios.bin,
# pxe-virtio.rom and linuxboot.bin (old machine types only), multiboot*.bin and pvh.bin (other
# -kernel formats), the other keymaps (-k; noVNC sends raw key codes), the other NICs' and VGAs' ROMs.
FIRMWARE=(
    "bios-256k.bin|SeaBIOS, the BIOS of the default pc machine"
    "vgabios-stdvga.bin|option ROM of the default VGA device (std VGA), created even with -display none"
    "efi-virtio.rom|iPXE option ROM that QEMU loads for every virtio-net-pci NIC"
    "efi-e1000e.rom|iPXE option ROM that QEMU loads for every e1000e NIC (NIC_MODEL=e1000e)"
    "kvmvapic.bin|option ROM of the kvmvapic device the x86 APIC creates (under KVM and TCG alike)"
    "linuxboot_dma.bin|option ROM for direct kernel boot (-kernel in CMD), used by the tests and by users who boot a kernel without a bootloader"
    "keymaps/en-us|the keymap QEMU's VNC server loads at start (DISPLAY=vnc), for viewers that send key symbols rather than raw key codes"
)

# QEMU modules (Debian builds some parts of QEMU as loadable modules), with their reason.
MODULES=(
    "accel-tcg-x86_64.so|TCG accelerator: Debian builds it as a module, QEMU dlopens it for -accel tcg (ACCEL=tcg, or auto without a usable /dev/kvm)"
)

# Empty directories, with their mode and reason.
DIRS=(
    "/image|0755|mount point of the VM disk volume (-v DIR:/image, /image/image.qcow2)"
    "/vnc|0750|mount point of the graphical console's socket directory (DISPLAY=vnc: -v DIR:/vnc, /vnc/vnc.sock)"
    "/run|0755|vminit's run dir /run/vminit (dnsmasq conf, leases, pid, QMP, health and passt sockets, qemu.sh)"
    "/tmp|1777|scratch space for QEMU (e.g. -snapshot) and debug shells"
    "/dev|0755|mount point: Docker mounts /dev; vminit mknods /dev/tapN there"
    "/proc|0755|mount point: Docker mounts procfs"
    "/sys|0755|mount point: Docker mounts sysfs; vminit reads /sys/class/net"
    "/etc|0755|holds passwd and group; Docker bind-mounts resolv.conf, hosts and hostname here"
)

declare -A REASON=() # rootfs path -> reason

# --- preconditions ---------------------------------------------------------------------------

[[ -f $VMINIT_BINARY ]] || die "vminit binary '$VMINIT_BINARY' not found (build it with: cargo build --release --target x86_64-unknown-linux-musl)"
readelf -h "$VMINIT_BINARY" >/dev/null 2>&1 || die "'$VMINIT_BINARY' is not an ELF binary"
if readelf -l "$VMINIT_BINARY" | grep -q 'program interpreter'; then
    die "'$VMINIT_BINARY' is dynamically linked; the image has no libc for it (build with --target x86_64-unknown-linux-musl)"
fi

ensure_package() {
    local pkg=$1
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "package $pkg is missing and apt-get is not available"
    say "installing $pkg with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >&2 ||
        die "apt-get install $pkg failed"
}
ensure_package qemu-system-x86
ensure_package dnsmasq-base
ensure_package qemu-utils
ensure_package ovmf
ensure_package swtpm
[[ -x $SWTPM ]] || die "$SWTPM missing after installing swtpm"
ensure_package passt
[[ -x $QEMU ]] || die "$QEMU missing after installing qemu-system-x86"
[[ -x $QEMU_IMG ]] || die "$QEMU_IMG missing after installing qemu-utils"
[[ -x $DNSMASQ ]] || die "$DNSMASQ missing after installing dnsmasq-base"
[[ -x $PASST && -x $PASST.avx2 ]] || die "$PASST or $PASST.avx2 missing after installing passt"
if [[ -n $QEMU_BUILT ]]; then
    QEMU_SRC=$QEMU_BUILT/bin/qemu-system-x86_64
    QEMU_IMG_SRC=$QEMU_BUILT/bin/qemu-img
    [[ -x $QEMU_SRC && -x $QEMU_IMG_SRC ]] ||
        die "--qemu=$QEMU_BUILT holds no bin/qemu-system-x86_64 and bin/qemu-img (build them with image/build-qemu.sh)"
    MODULES=() # built without module support: TCG is in the binary
fi
if [[ -n $DNSMASQ_BUILT ]]; then
    DNSMASQ_SRC=$DNSMASQ_BUILT/dnsmasq
    [[ -x $DNSMASQ_SRC ]] || die "--dnsmasq=$DNSMASQ_BUILT holds no dnsmasq (build it with image/build-dnsmasq.sh)"
fi
# Shared libraries shipped from a build of their own instead of where ldd finds them: name ->
# file|what it is.
declare -A BUILT_LIBRARY=() BUILT_USED=()
if [[ -n $OPENSSL_BUILT ]]; then
    [[ -f $OPENSSL_BUILT/libcrypto.so.3 ]] ||
        die "--openssl=$OPENSSL_BUILT holds no libcrypto.so.3 (build it with image/build-openssl.sh)"
    BUILT_LIBRARY[libcrypto.so.3]="$OPENSSL_BUILT/libcrypto.so.3|shared library libcrypto.so.3 (built by image/build-openssl.sh from Debian's openssl $(cat "$OPENSSL_BUILT/VERSION") source package, with only the algorithms a TPM uses)"
fi

# --- a fresh ROOTFS ------------------------------------------------------------------------

[[ $ROOTFS != / ]] || die "refusing to build into /"
if [[ -e $ROOTFS ]]; then
    if [[ -n $(ls -A -- "$ROOTFS") ]]; then
        # Only ever wipe something that looks like an earlier output of this script.
        [[ -e $ROOTFS/vminit && -e $ROOTFS$QEMU && -e $ROOTFS/etc/passwd ]] ||
            die "$ROOTFS exists, is not empty and is not an earlier rootfs; remove it yourself"
        rm -rf -- "$ROOTFS"
    fi
fi
mkdir -p -- "$ROOTFS"

# copy SRC DEST MODE REASON: install SRC (symlinks resolved) at DEST inside the rootfs.
copy() {
    local src=$1 dest=$2 mode=$3 reason=$4
    [[ -z ${REASON[$dest]:-} ]] || die "internal: $dest copied twice"
    install -D -m "$mode" -- "$(realpath -e -- "$src")" "$ROOTFS$dest"
    REASON[$dest]=$reason
}

# --- executables and their shared libraries --------------------------------------------------

copy "$VMINIT_BINARY" /vminit 0755 "the init: PID 1 and ENTRYPOINT (static musl binary)"
if [[ -n $QEMU_BUILT ]]; then
    built="built from Debian's qemu $(cat "$QEMU_BUILT/VERSION") source package by image/build-qemu.sh"
    copy "$QEMU_SRC" "$QEMU" 0755 "the VM (VMINIT_QEMU default), $built"
    copy "$QEMU_IMG_SRC" "$QEMU_IMG" 0755 "creates and grows the VM disk (DISK_SIZE, DISK_BASE; VMINIT_QEMU_IMG default), $built"
else
    copy "$QEMU" "$QEMU" 0755 "the VM (VMINIT_QEMU default)"
    copy "$QEMU_IMG" "$QEMU_IMG" 0755 "creates and grows the VM disk (DISK_SIZE, DISK_BASE; VMINIT_QEMU_IMG default), from the same QEMU build"
fi
copy "$SWTPM" "$SWTPM" 0755 "the guest's TPM 2.0 (TPM=yes; VMINIT_SWTPM default)"
if [[ -n $DNSMASQ_BUILT ]]; then
    copy "$DNSMASQ_SRC" "$DNSMASQ" 0755 "DHCP server for the guest and DNS forwarder (VMINIT_DNSMASQ default), built from Debian's dnsmasq $(cat "$DNSMASQ_BUILT/VERSION") source package by image/build-dnsmasq.sh"
else
    copy "$DNSMASQ" "$DNSMASQ" 0755 "DHCP server for the guest and DNS forwarder (VMINIT_DNSMASQ default)"
fi
copy "$PASST" "$PASST" 0755 "the user-mode datapath (NET_DATAPATH=user, or auto without NET_ADMIN): one per guest NIC (VMINIT_PASST default)"
copy "$PASST.avx2" "$PASST.avx2" 0755 "passt's AVX2 build, which passt execs in its place on CPUs with AVX2 (faster checksums)"

# add_user PATH MODE WHAT USER [SRC]: copy the shared object PATH (once; from SRC if given) and
# note that USER needs it.
declare -A USERS=() WHAT=() # rootfs path -> users; rootfs path -> what it is
add_user() {
    local path=$1 mode=$2 what=$3 user=$4 src=${5:-$1}
    if [[ -z ${USERS[$path]:-} ]]; then
        install -D -m "$mode" -- "$(realpath -e -- "$src")" "$ROOTFS$path"
        USERS[$path]=$user
        WHAT[$path]=$what
    else
        USERS[$path]+=", $user"
    fi
    REASON[$path]="${WHAT[$path]} of ${USERS[$path]} (ldd)"
}

# add_libraries ELF LABEL: copy every shared object ELF needs, as resolved by ldd, to the path
# ldd resolved it to; the dynamic loader keeps its ABI path /lib64/ld-linux-x86-64.so.2.
add_libraries() {
    local elf=$1 label=$2 line lib path out
    out=$(ldd "$elf") || die "ldd $elf failed"
    if grep -q 'not found' <<<"$out"; then
        die "ldd $elf: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
    fi
    while read -r line; do
        case $line in
        linux-vdso.so.* | "") continue ;; # provided by the kernel
        *' => '*)
            lib=${line%% => *}
            path=${line#* => }
            path=${path%% (*}
            if [[ -n ${BUILT_LIBRARY[$lib]:-} ]]; then
                BUILT_USED[$lib]=1
                add_user "$path" 0644 "${BUILT_LIBRARY[$lib]#*|}" "$label" "${BUILT_LIBRARY[$lib]%%|*}"
            else
                add_user "$path" 0644 "shared library $lib" "$label"
            fi
            ;;
        /*)
            path=${line%% (*}
            add_user "$path" 0755 "dynamic loader (ELF interpreter)" "$label"
            ;;
        *) die "ldd $elf: unexpected line '$line'" ;;
        esac
    done <<<"$out"
}

add_libraries "$QEMU_SRC" qemu-system-x86_64
add_libraries "$QEMU_IMG_SRC" qemu-img
add_libraries "$SWTPM" swtpm
add_libraries "$DNSMASQ_SRC" dnsmasq
add_libraries "$PASST" passt
add_libraries "$PASST.avx2" passt.avx2
for lib in "${!BUILT_LIBRARY[@]}"; do
    [[ -n ${BUILT_USED[$lib]:-} ]] || die "no shipped program loads $lib, which --openssl gave; drop the option"
done

# --- QEMU modules ------------------------------------------------------------------------------

moddir=$(realpath -m "$(dirname "$QEMU")/../lib/x86_64-linux-gnu/qemu")
for entry in "${MODULES[@]}"; do
    name=${entry%%|*}
    [[ -e $moddir/$name ]] || die "QEMU module $moddir/$name not found (is qemu-system-common installed?)"
    copy "$moddir/$name" "$moddir/$name" 0644 "${entry#*|}"
    add_libraries "$moddir/$name" "QEMU module $name"
done

# --- firmware and option ROMs ------------------------------------------------------------------

# QEMU's data dirs in its search order, e.g. /usr/bin/../share/qemu; made canonical.
mapfile -t datadirs < <("$QEMU_SRC" -L help)
[[ ${#datadirs[@]} -gt 0 ]] || die "'$QEMU_SRC -L help' listed no data dirs"
for entry in "${FIRMWARE[@]}"; do
    name=${entry%%|*}
    found=
    for dir in "${datadirs[@]}"; do
        if [[ -e $dir/$name ]]; then
            found=$(realpath -m "$dir")/$name
            break
        fi
    done
    [[ -n $found ]] || die "firmware $name not found in QEMU's data dirs: ${datadirs[*]}"
    copy "$found" "$found" 0644 "${entry#*|}"
done

# UEFI firmware: Debian's OVMF, compressed losslessly by image/build-ovmf.sh with the qemu-img
# the image ships.
ovmf_list=$("$(dirname -- "$(realpath -e -- "${BASH_SOURCE[0]}")")/build-ovmf.sh" "$QEMU_IMG_SRC" "$ROOTFS$OVMF_DIR") ||
    die "image/build-ovmf.sh failed"
while IFS=$'\t' read -r name reason; do
    REASON[$OVMF_DIR/$name]=$reason
done <<<"$ovmf_list"

# --- /etc/passwd, /etc/group, empty dirs ------------------------------------------------------

install -d -m 0755 "$ROOTFS/etc"
printf '%s\n' 'root:x:0:0:root:/:/nonexistent' 'nobody:x:65534:65534:nobody:/nonexistent:/nonexistent' \
    >"$ROOTFS/etc/passwd"
printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$ROOTFS/etc/group"
chmod 0644 "$ROOTFS/etc/passwd" "$ROOTFS/etc/group"
REASON[/etc/passwd]="users root and nobody: dnsmasq looks up 'nobody' and drops privileges to it"
REASON[/etc/group]="groups root and nogroup (nobody's primary group, 65534)"

for entry in "${DIRS[@]}"; do
    IFS='|' read -r dir mode reason <<<"$entry"
    install -d -m "$mode" "$ROOTFS$dir"
    REASON[$dir/]="(dir, mode $mode) $reason"
done

# --- nothing else: every file in the rootfs has a reason ----------------------------------------

while IFS= read -r -d '' f; do
    rel=/${f#"$ROOTFS"/}
    [[ -n ${REASON[$rel]:-} ]] || die "internal: $rel in the rootfs has no reason"
done < <(find "$ROOTFS" \( -type f -o -type l \) -print0)

{
    echo "# vminit image rootfs: every file and empty dir, its size in bytes, and why it is there."
    if [[ -n $QEMU_BUILT ]]; then
        echo "# QEMU and qemu-img built from Debian's source package qemu $(cat "$QEMU_BUILT/VERSION") by image/build-qemu.sh (configure $(cat "$QEMU_BUILT/configure-line")); firmware and keymap from the packages below."
    fi
    if [[ -n $OPENSSL_BUILT ]]; then
        echo "# libcrypto built from Debian's source package openssl $(cat "$OPENSSL_BUILT/VERSION") by image/build-openssl.sh (configure $(cat "$OPENSSL_BUILT/configure-line"))."
    fi
    if [[ -n $DNSMASQ_BUILT ]]; then
        echo "# dnsmasq built from Debian's source package dnsmasq $(cat "$DNSMASQ_BUILT/VERSION") by image/build-dnsmasq.sh (upstream's default options: libc only)."
    fi
    echo "# Generated by image/build-rootfs.sh from $(dpkg-query -W -f='${Package} ${Version}' qemu-system-x86), $(dpkg-query -W -f='${Package} ${Version}' qemu-utils), $(dpkg-query -W -f='${Package} ${Version}' ovmf), $(dpkg-query -W -f='${Package} ${Version}' swtpm), $(dpkg-query -W -f='${Package} ${Version}' dnsmasq-base), $(dpkg-query -W -f='${Package} ${Version}' passt)."
    for path in "${!REASON[@]}"; do
        if [[ $path == */ ]]; then
            size=-
        else
            size=$(stat -c %s "$ROOTFS$path")
        fi
        printf '%s\t%s\t%s\n' "$path" "$size" "${REASON[$path]}"
    done | sort
} >"$MANIFEST"

cat "$MANIFEST"
say "$(find "$ROOTFS" -type f | wc -l) files; manifest: $MANIFEST"
say "rootfs size: $(du -sh "$ROOTFS" | cut -f1) ($ROOTFS)"
