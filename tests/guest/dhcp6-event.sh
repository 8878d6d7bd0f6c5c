#!/bin/sh
# dhclient -6 event script of the test guest: applies a DHCPv6 lease as Debian's
# /sbin/dhclient-script does (the address alone, hence /128: DHCPv6 carries no prefix length; the
# on-link prefix comes from the router advertisement, which the kernel handles), and records the
# raw facts in /run/dhcp6/$interface for the console report.
#
# dhclient calls it with $reason (PREINIT6, BOUND6, RENEW6, REBIND6, DEPREF6, EXPIRE6, RELEASE6,
# STOP6) and the lease in $new_ip6_address $new_max_life $new_preferred_life
# $new_dhcp6_name_servers $new_dhcp6_domain_search.

fail() {
	echo "GUEST-ERROR dhcp6 $interface: $*" >/dev/console
}

commas() {
	echo "$*" | tr -s ' ' ','
}

case "$reason" in
PREINIT6)
	ip link set "$interface" up
	;;
BOUND6 | RENEW6 | REBIND6 | REBOOT6)
	if [ -n "$new_ip6_address" ]; then
		ip -6 addr replace "$new_ip6_address" dev "$interface" scope global \
			valid_lft "$new_max_life" preferred_lft "$new_preferred_life" ||
			fail "address $new_ip6_address"
	fi
	# Resolvers of every NIC are merged, without duplicates. A link-local one (the door) is
	# reached through this NIC: its scope is appended, as Debian's dhclient-script does.
	for server in $new_dhcp6_name_servers; do
		case "$server" in
		fe80:* | FE80:*) server="$server%$interface" ;;
		esac
		grep -qx "nameserver $server" /etc/resolv.conf || echo "nameserver $server" >>/etc/resolv.conf
	done
	if [ -n "$new_dhcp6_domain_search" ]; then
		grep -qx "search $new_dhcp6_domain_search" /etc/resolv.conf ||
			echo "search $new_dhcp6_domain_search" >>/etc/resolv.conf
	fi
	echo "ip6=$new_ip6_address dns6=$(commas $new_dhcp6_name_servers)" \
		"search6=$(commas $new_dhcp6_domain_search) lifetime=$new_max_life" >"/run/dhcp6/$interface"
	;;
EXPIRE6 | RELEASE6 | STOP6)
	[ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address" dev "$interface"
	rm -f "/run/dhcp6/$interface"
	;;
esac
exit 0
