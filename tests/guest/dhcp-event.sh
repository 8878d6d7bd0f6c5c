#!/bin/sh
# udhcpc event script of the test guest: applies a lease the way a careful DHCP client does, and
# records the raw facts in /run/dhcp/$interface for the console report.
#
# udhcpc calls it with $1 = deconfig | bound | renew | leasefail | nak and exports the lease as
# $ip $mask (prefix length) $router $staticroutes ("DEST/LEN GW DEST/LEN GW ...", GW 0.0.0.0 =
# on-link) $mtu $dns $domain $search $hostname $lease $serverid.
#
# Routes follow RFC 3442: when option 121 (classless static routes) is present the client ignores
# option 3 (router), so the server must put the default route into option 121 itself.

# fail TEXT: report a failed step on the console (this script's output is piped through sed).
fail() {
	echo "GUEST-ERROR dhcp $interface: $*" >/dev/console
}

# commas LIST: the words of LIST joined with commas.
commas() {
	echo "$*" | tr -s ' ' ','
}

case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set dev "$interface" up
	;;
bound | renew)
	if [ -n "$mtu" ]; then
		ip link set dev "$interface" mtu "$mtu" || fail "mtu $mtu"
	fi

	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-32}" ${broadcast:+broadcast "$broadcast"} dev "$interface" ||
		fail "address $ip/$mask"

	if [ -n "$staticroutes" ]; then
		# On-link routes first: a gateway route may need one of them to reach its gateway.
		set -- $staticroutes
		while [ $# -ge 2 ]; do
			if [ "$2" = 0.0.0.0 ]; then
				ip route add "$1" dev "$interface" scope link || fail "route $1 on-link"
			fi
			shift 2
		done
		set -- $staticroutes
		while [ $# -ge 2 ]; do
			if [ "$2" != 0.0.0.0 ]; then
				ip route add "$1" via "$2" dev "$interface" || fail "route $1 via $2"
			fi
			shift 2
		done
	elif [ -n "$router" ]; then
		set -- $router
		ip route add default via "$1" dev "$interface" || fail "default route via $1"
	fi

	# Resolvers of every NIC are merged, without duplicates.
	for server in $dns; do
		grep -qx "nameserver $server" /etc/resolv.conf || echo "nameserver $server" >>/etc/resolv.conf
	done
	if [ -n "$domain" ]; then
		grep -qx "domain $domain" /etc/resolv.conf || echo "domain $domain" >>/etc/resolv.conf
	fi
	if [ -n "$search" ]; then
		grep -qx "search $search" /etc/resolv.conf || echo "search $search" >>/etc/resolv.conf
	fi

	if [ -n "$hostname" ]; then
		hostname "$hostname" || fail "hostname $hostname"
	fi

	echo "ip=$ip mask=$mask router=$(commas $router) staticroutes=$(commas $staticroutes)" \
		"mtu=$mtu dns=$(commas $dns) domain=$domain search=$(commas $search)" \
		"hostname=$hostname lease=$lease serverid=$serverid" >"/run/dhcp/$interface"
	;;
esac
exit 0
