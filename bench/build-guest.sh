#!/bin/bash
# bench/build-guest.sh OUTDIR — the bench guest: the test guest (tests/guest/build-guest.sh, its
# kernel, busybox, virtio modules and DHCP event script, reused unchanged) with bench/guest-init.sh
# as /init and iperf3 with its shared libraries added.
#
# Writes OUTDIR/test-guest/ (the test guest) and OUTDIR/vmlinuz, OUTDIR/initramfs.cpio.gz.
# Idempotent: OUTDIR/.stamp records the inputs; nothing is rebuilt when they have not changed.
set -euo pipefail

[[ $# -eq 1 ]] || {
	echo "usage: $0 OUTDIR" >&2
	exit 2
}
out=$1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

command -v iperf3 >/dev/null || apt-get install -y iperf3 >&2
command -v cpio >/dev/null || apt-get install -y cpio >&2

mkdir -p "$out"
sh "$repo/tests/guest/build-guest.sh" "$out/test-guest"

iperf=$(command -v iperf3)
stamp=$(
	{
		cat "$0" "$here/guest-init.sh" "$out/test-guest/.stamp"
		stat -L -c '%n %s %Y' "$iperf"
	} | sha256sum | cut -d' ' -f1
)
if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" && -f $out/initramfs.cpio.gz ]]; then
	exit 0
fi

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"
(cd "$root" && gzip -dc "$out/test-guest/initramfs.cpio.gz" | cpio -id --quiet)
install -m 0755 "$here/guest-init.sh" "$root/init"

# iperf3 and every library ldd names, at the same paths (the loader finds them there).
install -D -m 0755 "$iperf" "$root/usr/bin/iperf3"
ldd "$iperf" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
	install -D -m 0755 "$(readlink -f "$lib")" "$root$lib" # the loader must be executable
done

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -6n >"$work/initramfs.cpio.gz"
cp "$out/test-guest/vmlinuz" "$work/vmlinuz"
mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
echo "$stamp" >"$out/.stamp"
echo "build-guest: built $out" >&2
