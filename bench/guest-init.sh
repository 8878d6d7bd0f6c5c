#!/bin/sh
# /init of the bench guest (bench/build-guest.sh puts it into a copy of the test guest's
# initramfs, next to iperf3): brings the network up as fast as the test guest does, starts an
# iperf3 server, reports when, and powers off on the ACPI power button.
#
# Kernel command line:
#   bench_net=dhcp                      DHCP on every ethN, exactly as tests/guest/init.sh does
#                                       (udhcpc with /etc/dhcp-event.sh) [default]
#   bench_net=static:ADDR/PREFIX:GW     eth0 gets ADDR/PREFIX and a default route via GW, no DHCP
#                                       (the floor: plain QEMU, nothing to ask)
#   bench_hotplug=1                     NICs that appear later (PCI hot-plug) are configured by
#                                       DHCP, as the test guest's vminit_test_hotplug=1 does
#                                       (guest_watch_hotplug, looking every 50 ms), and reported
#
# Console lines (from column 0):
#   BENCH-T PHASE UPTIME     guest uptime (s) at: init (PID 1 starts), modules (virtio loaded),
#                            net (addresses configured), ready (iperf3 listening), net6 (eth0's
#                            IPv6 address usable and an IPv6 route from a router advertisement:
#                            bench_net=dhcp on a dual-stack network only)
#   BENCH-NIC NAME ADDR/PREFIX|none
#   BENCH-HOTPLUG added NAME ADDR/PREFIX|none SEEN DONE
#                            (bench_hotplug=1) a NIC appeared; the guest's uptime (s) when the
#                            watcher noticed it and when it was configured (DHCP done)
#   BENCH-READY              (iperf3 listens on 5201, busybox httpd on 8080)
#   BENCH-ERROR TEXT

. /lib/guest.sh # the test guest's shared boot steps (tests/guest/lib.sh)
guest_mount

stamp() {
	read -r up _ </proc/uptime
	echo "BENCH-T $1 $up"
}
stamp init

guest_modules BENCH-ERROR
stamp modules

# ACPI power button -> poweroff (vminit's stop path: QMP system_powerdown).
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\npoweroff -f\n' >/etc/acpi/PWRF/00000080
chmod 0755 /etc/acpi/PWRF/00000080
acpid -c /etc/acpi -l /var/log/acpid.log -p /run/acpid.pid || echo "BENCH-ERROR acpid"

nics=$(guest_nics)
net=$(cmdline_value bench_net dhcp)
# IPv6 as the test guest gets it (the kernel's RA handling, dhclient -6), in the background, in
# both modes: the same work in the guest whether or not anyone answers.
guest_dhcp6 $nics
case "$net" in
static:*)
	spec=${net#static:}
	addr=${spec%%:*}
	gw=${spec#*:}
	ip link set eth0 up
	ip addr add "$addr" dev eth0 || echo "BENCH-ERROR address $addr"
	ip route add default via "$gw" dev eth0 || echo "BENCH-ERROR route via $gw"
	;;
*)
	guest_dhcp 5 $nics
	;;
esac
stamp net
if [ "$net" = dhcp ]; then
	(
		missing=$(guest_wait_ipv6 60 eth0)
		# From column 0, whatever the console's shell prompt left on its line.
		echo
		if [ -z "$missing" ]; then stamp net6; else echo "BENCH-ERROR $missing"; fi
	) &
fi
for nic in $nics; do
	addrs=$(ip -o -4 addr show dev "$nic" | awk '{print $4}' | tr '\n' ',' | sed 's/,$//')
	echo "BENCH-NIC $nic ${addrs:-none}"
done

hotplug_report() {
	if [ "$1" = added ]; then
		read -r up _ </proc/uptime
		# A new line first: the console's shell prompt may have left one open.
		printf '\nBENCH-HOTPLUG added %s %s %s %s\n' "$2" "$4" "$5" "$up"
	fi
}
if [ "$(cmdline_value bench_hotplug 0)" = 1 ]; then
	guest_watch_hotplug hotplug_report 0.05 $nics
fi

if [ -x /usr/bin/iperf3 ]; then
	iperf3 -s -D --logfile /var/log/iperf3.log || echo "BENCH-ERROR iperf3"
fi
# Short connections (bench/connrate.py): a tiny page over HTTP/1.0 on port 8080.
mkdir -p /www && echo ok >/www/index.html
httpd -p 8080 -h /www || echo "BENCH-ERROR httpd"
stamp ready
echo BENCH-READY

while true; do
	setsid cttyhack sh
done
