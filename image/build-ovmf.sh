#!/usr/bin/env bash
# image/build-ovmf.sh QEMU_IMG DIR — OVMF (UEFI firmware, BOOT_MODE=uefi and secure) as the
# image ships it: each flash image of Debian's ovmf package (its 4 MiB builds) converted by
# QEMU_IMG into a compressed qcow2 in DIR (/usr/share/OVMF/OVMF_CODE_4M.fd ->
# DIR/OVMF_CODE_4M.qcow2, ...), then compared with Debian's file byte for byte (`qemu-img
# compare`). An OVMF flash image is mostly erased flash (0xFF bytes): the four files take
# 3.2 MB instead of 8.2 MB.
#
# vminit looks for NAME.qcow2 before NAME.fd in VMINIT_OVMF_DIR and tells QEMU the format the
# name says; QEMU's qcow2 driver reads the code, and vminit expands the variables' template into
# the raw image.efivars.fd with qemu-img on the first UEFI start (docs/disk.md).
#
# Prints one line per file, `NAME<TAB>REASON` (image/build-rootfs.sh writes the reasons into the
# rootfs manifest). DIR is made if missing; its other files are left alone. The conversion takes
# well under a second, so nothing is cached. Installs ovmf with apt-get when missing.
set -euo pipefail

NAME=ovmf
# shellcheck source=image/debian-source.sh
. "$(dirname -- "$(realpath -e -- "${BASH_SOURCE[0]}")")/debian-source.sh" # say, die, ensure_build_deps
[[ $# -eq 2 ]] || {
    echo "usage: $0 QEMU_IMG DIR" >&2
    exit 2
}
QEMU_IMG=$1 DIR=$2
OVMF_DIR=/usr/share/OVMF

# Debian's files, by name without .fd, each with its reason; vminit names them in
# src/vm/machine.rs (BootMode::ovmf).
OVMF=(
    "OVMF_CODE_4M|UEFI firmware code (BOOT_MODE=uefi)"
    "OVMF_VARS_4M|template of the guest's UEFI variables, expanded beside the disk on the first UEFI start (BOOT_MODE=uefi)"
    "OVMF_CODE_4M.secboot|UEFI firmware code with Secure Boot and SMM (BOOT_MODE=secure)"
    "OVMF_VARS_4M.ms|template of the UEFI variables with Microsoft's Secure Boot keys enrolled (BOOT_MODE=secure)"
)

[[ -x $QEMU_IMG ]] || die "qemu-img '$QEMU_IMG' is not an executable"
ensure_build_deps ovmf
mkdir -p -- "$DIR"

for entry in "${OVMF[@]}"; do
    stem=${entry%%|*}
    src=$OVMF_DIR/$stem.fd out=$DIR/$stem.qcow2
    [[ -f $src ]] || die "$src not found (is ovmf installed?)"
    # 4 KiB clusters: the erased space compresses to almost nothing at that grain, and the
    # metadata stays small (64 KiB clusters would add 0.3 MB to each variables template).
    "$QEMU_IMG" convert -q -c -f raw -O qcow2 -o cluster_size=4096 -- "$src" "$out.new" ||
        die "qemu-img convert $src failed"
    "$QEMU_IMG" compare -q -f raw -F qcow2 -- "$src" "$out.new" ||
        die "$out.new does not hold the same bytes as $src"
    chmod 0644 "$out.new"
    mv -f -- "$out.new" "$out"
    printf '%s\t%s (Debian'\''s %s, losslessly compressed as qcow2 by image/build-ovmf.sh)\n' \
        "$stem.qcow2" "${entry#*|}" "$stem.fd"
done
