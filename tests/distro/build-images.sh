#!/bin/bash
# Builds the distribution guests of tests/distro/main.rs from Debian's archive and prints the
# directory that holds them (its last line of stdout).
#
# Usage: tests/distro/build-images.sh [CACHE_ROOT]
#   CACHE_ROOT  default $VMINIT_DISTRO_CACHE, else /var/cache/vminit-test-guests
#
# One debootstrap of Debian 12 (minbase + systemd + udev + dbus + the cloud kernel +
# initramfs-tools, whose postinst builds the guest's own initramfs) is the base; every directory
# in tests/distro/guests/ derives one guest from a copy of it:
#
#   guests/NAME/packages   Debian packages to add (the network stack), installed with apt-get
#   guests/NAME/root/      files copied over the root file system (its network configuration)
#   guests/NAME/setup.sh   optional, run with sh inside the root (chroot) after the packages
#   guests/NAME/cmdline    optional, appended to the kernel command line
#   guests/NAME/describe   packages whose versions the guest reports as its client
#   guests/NAME/esp/       present: the guest boots from its own disk by UEFI (below); files
#                          copied onto its EFI system partition as they are
#   guests/NAME/esp-from-root  lines `PATH-IN-ROOT PATH-ON-ESP`: files of the root copied there
#
# Every guest also gets tests/distro/common/ (distro-report and its unit, a root shell on the
# serial console). Output, for each guest: CACHE_ROOT/KEY/NAME/{vmlinuz,initrd.img,root.qcow2,
# cmdline}, where KEY hashes every input (this script, tests/distro/ except *.md, the suite and
# mirror): a second run with the same inputs prints the directory at once. The root disk is
# ext4 over the whole virtio disk (/dev/vda, no partition table), made with `mkfs.ext4 -d` and
# `qemu-img convert`: no loop device, no mount. Tests boot it with -kernel/-initrd/-append
# and a qcow2 overlay per test. A guest with esp/ is instead one disk, CACHE_ROOT/KEY/NAME/disk.qcow2,
# laid out as Debian's cloud images are: GPT, partition 1 the EFI system partition (FAT, 64 MiB,
# label ESP) with the firmware's removable-media path EFI/BOOT/BOOTX64.EFI, partition 2 the
# ext4 root (label root) to the end of the disk, so that cloud-init's growpart can grow it; made
# with sfdisk, mkfs.fat + mtools and dd into one file (no loop device either). The debootstrap base is kept too (CACHE_ROOT/base-BASEKEY, keyed
# by suite, mirror and base packages), so that changing a guest re-derives the guests in
# seconds. Concurrent runs serialise on CACHE_ROOT/.lock. The archive's packages can change
# under the same KEY: delete CACHE_ROOT to rebuild from today's archive. Whatever was not used
# for a week is removed.
#
# Needs root and deb.debian.org; installs debootstrap, qemu-utils and e2fsprogs when missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${1:-${VMINIT_DISTRO_CACHE:-/var/cache/vminit-test-guests}}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
BASE_PACKAGES=systemd,systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,iproute2,iputils-ping
ROOT_SIZE=2G

log() { echo "build-distro-images: $*" >&2; }

base_key=$(echo "$SUITE $MIRROR $BASE_PACKAGES" | sha256sum | cut -c1-16)
key=$(
	{
		echo "$SUITE $MIRROR $BASE_PACKAGES $ROOT_SIZE"
		cat "$0"
		cd "$here" && find common guests -type f ! -name '*.md' | LC_ALL=C sort | xargs sha256sum
	} | sha256sum | cut -c1-16
)
out=$cache_root/$key
if [ -f "$out/.complete" ]; then
	touch "$out/.complete"
	echo "$out"
	exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if [ -f "$out/.complete" ]; then
	echo "$out"
	exit 0
fi
# A build killed before its EXIT trap ran left its work directory; no other build runs now.
rm -rf "$cache_root"/.build.*

missing=""
for package in debootstrap debian-archive-keyring qemu-utils e2fsprogs util-linux fdisk dosfstools \
	mtools; do
	dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
	log "installing$missing"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2 || {
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
	}
fi

start=$SECONDS
work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# in_root ROOT COMMAND...: runs COMMAND inside ROOT with /proc mounted, in a private mount
# namespace, so nothing stays mounted when it ends (also on failure).
in_root() {
	local root=$1
	shift
	unshare --mount --fork -- sh -c 'mount -t proc proc "$1/proc" && shift && exec chroot "$@"' \
		in-root "$root" "$root" "$@"
}

# The base, debootstrap's output untouched, is cached on its own (CACHE_ROOT/base-BASEKEY):
# changing a guest's files re-derives the guests in seconds.
base=$cache_root/base-$base_key
if [ ! -f "$base.complete" ]; then
	log "debootstrap $SUITE (minbase + $BASE_PACKAGES)"
	rm -rf "$base"
	unshare --mount --fork -- debootstrap --variant=minbase --include="$BASE_PACKAGES" \
		"$SUITE" "$work/base" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
		tail -n 30 "$work/debootstrap.log" >&2
		log "debootstrap failed"
		exit 1
	}
	mv "$work/base" "$base"
	touch "$base.complete"
	log "base done in $((SECONDS - start)) s"
fi
touch "$base.complete"

# configure_common ROOT: what every guest shares: tests/distro/common/, a root file system on
# /dev/vda, no password for root, a fixed machine id (an empty one makes every boot a first
# boot), no getty on the serial console (distro-shell.service is the shell there), no timers
# that would run apt or fstrim while a test runs. The host's resolv.conf (debootstrap copied
# it) stays while packages are installed; each guest ends without it.
configure_common() {
	local root=$1
	cp -a "$here/common/." "$root/"
	chmod 0755 "$root/usr/local/sbin/distro-report"
	echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
	echo debian >"$root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
	echo >>"$root/etc/machine-id"
	in_root "$root" passwd -d root >/dev/null
	in_root "$root" systemctl enable distro-report.service distro-shell.service >/dev/null 2>&1
	in_root "$root" systemctl mask serial-getty@ttyS0.service apt-daily.timer \
		apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1
}

# uefi_disk ROOT GUEST_DIR SCRATCH OUT: ROOT as a bootable GPT disk (see the header) in the qcow2 OUT.
uefi_disk() {
	local root=$1 dir=$2 scratch=$3 out=$4 from to
	local esp_mib=64 esp_start=1 disk_mib
	disk_mib=$(($(numfmt --from=iec "$ROOT_SIZE") / 1048576))
	# The root partition: from after the ESP to 1 MiB before the end (the backup GPT).
	local root_start=$((esp_start + esp_mib)) root_mib=$((disk_mib - esp_start - esp_mib - 1))
	mkdir -p "$scratch"
	mkfs.fat -n ESP -C "$scratch/esp.img" $((esp_mib * 1024)) >/dev/null
	(cd "$dir/esp" && find . -mindepth 1 -type d | LC_ALL=C sort) | while read -r d; do
		mmd -i "$scratch/esp.img" "::/${d#./}"
	done
	(cd "$dir/esp" && find . -type f | LC_ALL=C sort) | while read -r f; do
		mcopy -i "$scratch/esp.img" "$dir/esp/${f#./}" "::/${f#./}"
	done
	while read -r from to; do
		[ -n "$from" ] || continue
		mmd -i "$scratch/esp.img" "::/$(dirname "$to")" 2>/dev/null || true
		mcopy -i "$scratch/esp.img" "$root$from" "::/$to"
	done <"$dir/esp-from-root"
	truncate -s "${root_mib}M" "$scratch/root.img"
	mkfs.ext4 -q -L root -d "$root" "$scratch/root.img"
	truncate -s "${disk_mib}M" "$scratch/disk.raw"
	# sfdisk: label: gpt; 1: the ESP; 2: Linux root (x86-64)
	sfdisk -q "$scratch/disk.raw" <<-EOF
		label: gpt
		start=${esp_start}MiB, size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
		start=${root_start}MiB, size=${root_mib}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root
	EOF
	dd if="$scratch/esp.img" of="$scratch/disk.raw" bs=1M seek="$esp_start" conv=notrunc,sparse status=none
	dd if="$scratch/root.img" of="$scratch/disk.raw" bs=1M seek="$root_start" conv=notrunc,sparse status=none
	qemu-img convert -O qcow2 "$scratch/disk.raw" "$out"
	rm -rf "$scratch"
}

stage=$work/out
mkdir -p "$stage"
for dir in "$here"/guests/*/; do
	name=$(basename "$dir")
	t=$SECONDS
	root=$work/$name
	cp -a "$base" "$root"
	configure_common "$root"
	[ -d "$dir/root" ] && cp -a "$dir/root/." "$root/"
	packages=$(cat "$dir/packages" 2>/dev/null || true)
	if [ -n "$packages" ]; then
		# shellcheck disable=SC2086 # a word list
		in_root "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $packages >"$work/$name-apt.log" 2>&1 || {
			tail -n 30 "$work/$name-apt.log" >&2
			log "$name: apt-get install $packages failed"
			exit 1
		}
	fi
	if [ -f "$dir/setup.sh" ]; then
		in_root "$root" sh -e <"$dir/setup.sh" >"$work/$name-setup.log" 2>&1 || {
			cat "$work/$name-setup.log" >&2
			log "$name: setup.sh failed"
			exit 1
		}
	fi
	mkdir -p "$root/etc/distro-report"
	client=$name
	for p in $(cat "$dir/describe" 2>/dev/null || true); do
		client="$client $p=$(in_root "$root" dpkg-query -W -f '${Version}' "$p")"
	done
	echo "$client" >"$root/etc/distro-report/client"

	# The host's resolvers go (systemd-resolved's postinst replaces the file by a symlink).
	[ -L "$root/etc/resolv.conf" ] || : >"$root/etc/resolv.conf"
	# Small: no package cache or lists, no documentation.
	in_root "$root" apt-get clean
	rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
		"$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old

	mkdir -p "$stage/$name"
	if [ -d "$dir/esp" ]; then
		uefi_disk "$root" "$dir" "$work/$name.disk" "$stage/$name/disk.qcow2"
		rm -rf "$root"
		log "$name ($client) done in $((SECONDS - t)) s"
		continue
	fi
	cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)" "$stage/$name/vmlinuz"
	cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)" "$stage/$name/initrd.img"
	echo "root=/dev/vda ro console=ttyS0 quiet $(cat "$dir/cmdline" 2>/dev/null || true)" |
		sed 's/ *$//' >"$stage/$name/cmdline"
	truncate -s "$ROOT_SIZE" "$work/$name.raw"
	mkfs.ext4 -q -L root -d "$root" "$work/$name.raw"
	qemu-img convert -O qcow2 "$work/$name.raw" "$stage/$name/root.qcow2"
	rm -rf "$work/$name.raw" "$root"
	log "$name ($client) done in $((SECONDS - t)) s"
done

rm -rf "$out"
mv "$stage" "$out"
touch "$out/.complete"
log "built $out in $((SECONDS - start)) s"
# Builds and bases of other inputs not used for a week go.
find "$cache_root" -mindepth 2 -maxdepth 2 -name .complete -mtime +7 -printf '%h\n' |
	while read -r old; do [ "$old" != "$out" ] && rm -rf "$old"; done
find "$cache_root" -maxdepth 1 -name 'base-*.complete' -mtime +7 -printf '%p\n' |
	while read -r old; do rm -rf "${old%.complete}" "$old"; done
echo "$out"
