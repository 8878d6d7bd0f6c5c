#!/bin/sh
# Builds the vminit test guest into OUTDIR: OUTDIR/vmlinuz (Debian's cloud kernel) and
# OUTDIR/initramfs.cpio.gz (busybox-static, ISC dhclient for DHCPv6, the virtio/ACPI modules and
# tests/guest/init.sh).
#
# Usage: tests/guest/build-guest.sh OUTDIR
# Environment: GUEST_KERNEL_VERSION (default: the newest installed *-cloud-amd64 kernel).
#
# Idempotent: OUTDIR/.stamp records the inputs; when they have not changed the script exits at
# once. Concurrent runs on the same OUTDIR serialise on OUTDIR/.lock.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
outdir=$1
here=$(cd "$(dirname "$0")" && pwd)

# Modules in load order; each one's dependencies come before it. button (ACPI power button) and
# evdev (/dev/input/event*) are what busybox acpid needs to see the power button.
modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover
net_failover virtio_net virtio_blk evdev button"
# Loaded only with vminit_test_cidata=1, to read the cloud-init seed: FAT and the code pages a
# FAT mount uses (cp437, ascii, utf8).
cidata_modules="fat vfat nls_cp437 nls_ascii nls_utf8"
# Loaded only when UEFI started the kernel, to read and write its variables.
efi_modules="efivarfs"

# Packages, installed only when missing (dpkg -s is fast; apt-get is not).
missing=""
for package in busybox-static linux-image-cloud-amd64 cpio isc-dhcp-client; do
	dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
	echo "build-guest: installing$missing" >&2
	apt-get install -y $missing >&2
fi

if [ -n "${GUEST_KERNEL_VERSION:-}" ]; then
	kver=$GUEST_KERNEL_VERSION
else
	kver=$(ls /boot | sed -n 's/^vmlinuz-\(.*-cloud-amd64\)$/\1/p' | sort -V | tail -n 1)
fi
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
busybox=/bin/busybox # installed by busybox-static (the dynamic "busybox" package conflicts)
if [ ! -f "$kernel" ] || [ ! -d "$moddir" ]; then
	echo "build-guest: no cloud kernel found (looked for $kernel and $moddir)" >&2
	exit 1
fi
mkdir -p "$outdir"
exec 9>"$outdir/.lock"
flock 9

# The stamp: this script, the guest's scripts, and the identity of every binary input.
stamp=$(
	{
		cat "$0" "$here/init.sh" "$here/lib.sh" "$here/dhcp-event.sh" "$here/dhcp6-event.sh"
		stat -L -c '%n %s %Y' "$kernel" "$busybox" "$moddir/modules.dep" /sbin/dhclient
	} | sha256sum | cut -d' ' -f1
)
if [ -f "$outdir/.stamp" ] && [ "$(cat "$outdir/.stamp")" = "$stamp" ] &&
	[ -f "$outdir/vmlinuz" ] && [ -f "$outdir/initramfs.cpio.gz" ]; then
	exit 0
fi

work=$(mktemp -d "$outdir/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/dev" "$root/etc" \
	"$root/proc" "$root/sys" "$root/run" "$root/tmp" "$root/root" "$root/lib/modules"

# busybox and one symlink per applet, where `busybox --list-full` says it lives.
cp "$busybox" "$root/bin/busybox"
"$busybox" --list-full | while read -r applet; do
	[ "$applet" = bin/busybox ] && continue
	[ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# The console must exist before /init runs: the kernel opens it for init's stdio.
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3

# Modules: copied uncompressed (busybox insmod reads plain .ko); built-ins are skipped.
: >"$root/lib/modules/load-order"
: >"$root/lib/modules/cidata-order"
: >"$root/lib/modules/efi-order"
for module in $modules $cidata_modules $efi_modules; do
	order=load-order
	case " $cidata_modules " in *" $module "*) order=cidata-order ;; esac
	case " $efi_modules " in *" $module "*) order=efi-order ;; esac
	if grep -q "/$module\.ko" "$moddir/modules.builtin" 2>/dev/null; then
		continue
	fi
	path=$(sed -n "s|^\([^:]*/$module\.ko[^:]*\):.*|\1|p" "$moddir/modules.dep" | head -n 1)
	if [ -z "$path" ]; then
		echo "build-guest: module $module is neither built in nor in $moddir/modules.dep" >&2
		exit 1
	fi
	case "$path" in
	*.ko) cp "$moddir/$path" "$root/lib/modules/$module.ko" ;;
	*.ko.xz) xz -dc "$moddir/$path" >"$root/lib/modules/$module.ko" ;;
	*.ko.zst) zstd -qdc "$moddir/$path" >"$root/lib/modules/$module.ko" ;;
	*.ko.gz) gzip -dc "$moddir/$path" >"$root/lib/modules/$module.ko" ;;
	*) echo "build-guest: unknown module format $path" >&2; exit 1 ;;
	esac
	echo "$module" >>"$root/lib/modules/$order"
done

install -m 0755 "$here/init.sh" "$root/init"
install -m 0644 "$here/lib.sh" "$root/lib/guest.sh"
install -m 0755 "$here/dhcp-event.sh" "$root/etc/dhcp-event.sh"

# DHCPv6: busybox has no client, Debian's busybox-static no udhcpc6. ISC dhclient (what Debian's
# ifupdown runs for `inet6 dhcp`) with the C library it links, and its event script.
install -m 0755 /sbin/dhclient "$root/sbin/dhclient"
for lib in $(ldd /sbin/dhclient | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
install -m 0755 "$here/dhcp6-event.sh" "$root/etc/dhcp6-event.sh"
mkdir -p "$root/var/lib/dhcp" "$root/etc/dhcp"
echo 'request dhcp6.name-servers, dhcp6.domain-search;' >"$root/etc/dhcp/dhclient6.conf"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -9n >"$work/initramfs.cpio.gz"
cp "$kernel" "$work/vmlinuz"

mv "$work/vmlinuz" "$outdir/vmlinuz"
mv "$work/initramfs.cpio.gz" "$outdir/initramfs.cpio.gz"
echo "$stamp" >"$outdir/.stamp"
echo "build-guest: built $outdir (kernel $kver)" >&2
