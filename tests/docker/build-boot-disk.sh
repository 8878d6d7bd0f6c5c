#!/bin/sh
# Builds a bootable qcow2 VM disk from the test guest: a FAT file system over the whole disk
# ("superfloppy", no partition table) holding SYSLINUX, the guest's kernel and initramfs, and a
# syslinux.cfg that boots them on the serial console. SeaBIOS boots its first sector.
#
# Usage: tests/docker/build-boot-disk.sh GUESTDIR OUT.qcow2
#   GUESTDIR  the output of tests/guest/build-guest.sh (vmlinuz, initramfs.cpio.gz)
#
# Why: in debug mode (CMD `sh`) there are no CMD arguments, so `/run/vminit/qemu.sh` has no
# `-kernel`: the guest has to boot from /image/image.qcow2, as a user's real disk does.
# Needs no loop device or mount: mkfs.vfat, syslinux and mcopy all work on the image file.
# Installs syslinux, mtools and dosfstools with apt-get when missing. OUT is replaced atomically.
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 GUESTDIR OUT.qcow2" >&2
	exit 2
fi
guest=$1
out=$2
for f in vmlinuz initramfs.cpio.gz; do
	if [ ! -f "$guest/$f" ]; then
		echo "build-boot-disk: $guest/$f missing (run tests/guest/build-guest.sh $guest)" >&2
		exit 1
	fi
done

missing=""
for package in syslinux syslinux-common mtools dosfstools qemu-utils; do
	dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
	echo "build-boot-disk: installing$missing" >&2
	# A fresh machine may have no package lists yet.
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2 || {
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2
	}
fi

outdir=$(dirname "$out")
mkdir -p "$outdir"
work=$(mktemp -d "$outdir/.boot-disk.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 40 MiB: room for the ~15 MiB kernel and initramfs; FAT16 is chosen by mkfs for that size.
raw=$work/disk.raw
truncate -s 40M "$raw"
mkfs.vfat -n VMTBOOT "$raw" >/dev/null
syslinux --install "$raw"
cat >"$work/syslinux.cfg" <<'EOF'
DEFAULT guest
PROMPT 0
TIMEOUT 0
LABEL guest
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0 quiet no_timer_check
EOF
mcopy -i "$raw" "$guest/vmlinuz" ::vmlinuz
mcopy -i "$raw" "$guest/initramfs.cpio.gz" ::initrd.gz
mcopy -i "$raw" "$work/syslinux.cfg" ::syslinux.cfg
qemu-img convert -O qcow2 "$raw" "$work/disk.qcow2"
mv "$work/disk.qcow2" "$out"
