# /lib/guest.sh in the test guest's initramfs: the boot steps every guest /init shares (the
# test guest's tests/guest/init.sh and the bench guest's bench/guest-init.sh). Sourced, not run.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

# guest_mount: proc, sys, a devtmpfs /dev with pts, and the directories the tools write to.
guest_mount() {
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	mkdir -p /dev/pts /run /run/dhcp /tmp /var/log /root
	mount -t devpts devpts /dev/pts
}

# cmdline_value NAME DEFAULT: the value of NAME=... on the kernel command line, else DEFAULT.
cmdline_value() {
	for word in $(cat /proc/cmdline); do
		case "$word" in
		"$1="*) echo "${word#*=}"; return ;;
		esac
	done
	echo "$2"
}

# guest_modules ERRPREFIX: insmod the modules in dependency order (the build script wrote the
# list); a failure prints "ERRPREFIX insmod MODULE failed".
guest_modules() {
	for module in $(cat /lib/modules/load-order); do
		insmod "/lib/modules/$module.ko" || echo "$1 insmod $module failed"
	done
	ip link set lo up
}

# guest_nics: every ethN, in natural order (eth2 before eth10).
guest_nics() {
	ls /sys/class/net | sed -n 's/^eth\([0-9][0-9]*\)$/\1/p' | sort -n | sed 's/^/eth/'
}

# guest_dhcp TRIES NIC...: DHCP on each NIC in turn. udhcpc runs /etc/dhcp-event.sh, which
# applies the lease and keeps the raw facts in /run/dhcp/NAME. -n: give up without a lease;
# -q: exit once configured.
guest_dhcp() {
	tries=$1
	shift
	: >/etc/resolv.conf
	for nic in "$@"; do
		ip link set "$nic" up
		udhcpc -i "$nic" -s /etc/dhcp-event.sh -t "$tries" -T 1 -A 1 -n -q \
			-O staticroutes -O mtu -O search 2>&1 | sed 's/^/dhcp: /'
	done
}

# guest_dhcp6 NIC...: IPv6 as a distribution does it. The kernel handles router advertisements
# (default route, on-link prefixes, MTU; route information options too, as systemd-networkd,
# NetworkManager and Windows do); ISC dhclient -6, as Debian's ifupdown runs it for
# `inet6 dhcp`, asks DHCPv6 for the address and resolvers once the NIC's link-local address
# passed duplicate address detection (dhclient cannot bind to a tentative one). In the
# background: guest_wait_ipv6 waits for the result.
guest_dhcp6() {
	mkdir -p /run/dhcp6
	for nic in "$@"; do
		echo 128 >"/proc/sys/net/ipv6/conf/$nic/accept_ra_rt_info_max_plen"
		ip link set "$nic" up
		(
			guest_oper_up "$nic"
			tries=0
			while ip -6 addr show dev "$nic" scope link | grep -q tentative && [ $tries -lt 100 ]; do
				sleep 0.1
				tries=$((tries + 1))
			done
			if ip -6 addr show dev "$nic" scope link | grep -q dadfailed; then
				echo "GUEST-ERROR $nic: duplicate address detection failed for the link-local address"
			fi
			dhclient -6 -nw -cf /etc/dhcp/dhclient6.conf -sf /etc/dhcp6-event.sh \
				-lf "/run/dhcp6/$nic.leases" -pf "/run/dhcp6/$nic.pid" "$nic" 2>&1 |
				sed 's/^/dhcp6: /'
		) &
	done
}

# guest_oper_up NIC: waits (3 s at most) for NIC's operational state to become up, which IPv6
# needs before it gives the NIC a link-local address. Under TCG, virtio_net was seen to keep a
# NIC that is up, with carrier, in operstate "down" for good; taking it down and up again
# cures that, and says so.
guest_oper_up() {
	for bounce in no yes; do
		n=0
		while [ "$(cat "/sys/class/net/$1/operstate")" != up ] && [ $n -lt 30 ]; do
			sleep 0.1
			n=$((n + 1))
		done
		[ "$(cat "/sys/class/net/$1/operstate")" = up ] && return
		[ $bounce = yes ] && break
		echo "GUEST-NOTE $1: operstate $(cat "/sys/class/net/$1/operstate") with carrier $(cat "/sys/class/net/$1/carrier") after 3 s; taking it down and up"
		ip link set "$1" down
		ip link set "$1" up
	done
}

# guest_wait_ipv6 SECONDS NIC...: waits up to SECONDS until each NIC holds its DHCPv6 address
# (past duplicate address detection) and a route a router advertisement gave (a default route
# or an on-link prefix). Prints GUEST-ERROR for a NIC that did not get there.
guest_wait_ipv6() {
	limit=$(($1 * 10))
	shift
	for nic in "$@"; do
		n=0
		until [ -f "/run/dhcp6/$nic" ] &&
			! ip -6 addr show dev "$nic" | grep -q tentative &&
			ip -6 route show dev "$nic" | grep -v -e '^fe80::' -e '^multicast' | grep -q .; do
			n=$((n + 1))
			if [ $n -gt $limit ]; then
				echo "GUEST-ERROR $nic: no IPv6 address and route within $((limit / 10)) s"
				break
			fi
			sleep 0.1
		done
	done
}

# guest_watch_hotplug REPORT INTERVAL NIC...: follows NICs that come and go while the guest runs
# (PCI hot-plug), as a distribution's hot-plug handling would, in the background. NIC... are the
# ethN there already. Every INTERVAL seconds it looks at the ethN (a glob: no process started
# unless something changed); each new one is brought up and configured by DHCP (udhcpc with
# /etc/dhcp-event.sh, 5 tries one second apart; IPv6 then starts in the background,
# guest_dhcp6), then `REPORT added NAME MAC ADDRS SEEN` runs, ADDRS being its IPv4 addresses
# (ADDR/PREFIX, comma-joined) or "none" and SEEN the guest's uptime (s) when it was noticed; for
# each one gone, `REPORT removed NAME`. REPORT is a shell function of the caller; its output
# goes to the console.
guest_watch_hotplug() {
	report=$1 interval=$2
	shift 2
	(
		known=" $* "
		while true; do
			# The same set as before? (as many ethN, each one known)
			changed=no count=0
			for dir in /sys/class/net/eth[0-9]*; do
				[ -e "$dir" ] || continue
				count=$((count + 1))
				case "$known" in *" ${dir##*/} "*) ;; *) changed=yes ;; esac
			done
			set -- $known
			[ "$count" = $# ] || changed=yes
			if [ $changed = yes ]; then
				read -r up _ </proc/uptime
				now=" $(guest_nics | tr '\n' ' ') "
				for nic in $now; do
					case "$known" in *" $nic "*) continue ;; esac
					ip link set "$nic" up
					udhcpc -i "$nic" -s /etc/dhcp-event.sh -t 5 -T 1 -A 1 -n -q \
						-O staticroutes -O mtu -O search >/dev/null 2>&1
					guest_dhcp6 "$nic" >/dev/console
					mac=$(cat "/sys/class/net/$nic/address")
					addrs=$(ip -o -4 addr show dev "$nic" | awk '{print $4}' | tr '\n' ',' | sed 's/,$//')
					"$report" added "$nic" "$mac" "${addrs:-none}" "$up" >/dev/console
				done
				for nic in $known; do
					case "$now" in *" $nic "*) continue ;; esac
					"$report" removed "$nic" >/dev/console
				done
				known=$now
			fi
			sleep "$interval"
		done
	) &
}
