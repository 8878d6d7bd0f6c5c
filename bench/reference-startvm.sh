#!/bin/bash
# bench/reference-startvm.sh — the yardstick for vminit's setup latency: the same network takeover
# done the way a bash entrypoint does it (the BBVA "kvm" image's startvm, itself from RancherVM),
# one `ip`/`mknod`/`awk` process per step, then dnsmasq, then `exec` QEMU with the tap fds.
#
# It performs, per NIC, what vminit's plan does (see src/takeover/plan.rs), so the two are compared on the
# same work:
#   read the NIC's MAC, MTU, IPv4 address and routes; delete the routes and the address; give the
#   NIC a new random locally administered MAC; create the macvtap vmtapN (mode bridge, the old MAC)
#   and the macvlan vmlinkN (mode bridge) on it; bring both up; give vmlinkN a link-local /32
#   (169.254.1.2, .3, …: a simplification of vminit's choice); route the guest's address and the
#   NIC's old routes via vmlinkN; mknod /dev/tapIFINDEX from sysfs and open it on fd 3+N
#   (`exec 3<>/dev/tapN`); add the NIC's DHCP host entry to the dnsmasq configuration.
# Then it starts dnsmasq (which daemonizes once its sockets are bound, like startvm's) and execs
# QEMU with the same kind of arguments vminit gives it. What it does not do: vminit's recovery of
# an earlier run, its input checks and probes, the restore at exit, supervision.
#
# Environment: AUTO_ATTACH (yes: every ethN), LAUNCHER [/usr/bin/qemu-system-x86_64],
# DNSMASQ [/usr/sbin/dnsmasq], IMAGE [/image/image.qcow2], RUN_DIR [/run/vminit],
# RAM_SIZE [1G], CPU_CORES [1]. Arguments are appended to QEMU's command line.
# Not part of vminit: only the bench (bench/run.sh) runs it, as a container's PID 1.

: "${LAUNCHER:=/usr/bin/qemu-system-x86_64}"
: "${DNSMASQ:=/usr/sbin/dnsmasq}"
: "${IMAGE:=/image/image.qcow2}"
: "${RUN_DIR:=/run/vminit}"
: "${RAM_SIZE:=1G}"
: "${CPU_CORES:=1}"

case "$AUTO_ATTACH" in
[Yy]*) ;;
*)
	echo "ERROR: this reference only implements AUTO_ATTACH=yes" >&2
	exit 1
	;;
esac

# genMAC: a random unicast, locally administered MAC (startvm's genMAC, fixed to be unicast).
genMAC() {
	printf '02:%02x:%02x:%02x:%02x:%02x\n' $((RANDOM % 256)) $((RANDOM % 256)) \
		$((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256))
}

# cidr2mask 24 -> 255.255.255.0
cidr2mask() {
	local bits=$((0xffffffff ^ ((1 << (32 - $1)) - 1)))
	echo "$(((bits >> 24) & 255)).$(((bits >> 16) & 255)).$(((bits >> 8) & 255)).$((bits & 255))"
}

if grep -qE 'vmx|svm' /proc/cpuinfo && [ -c /dev/kvm ]; then
	ACCEL_OPTS="-accel kvm -cpu host"
else
	ACCEL_OPTS="-accel tcg"
fi
if [ -c /dev/vhost-net ]; then VHOST=on; else VHOST=off; fi

# Every ethN, in natural order (eth2 before eth10), as AUTO_ATTACH=yes attaches them.
local_ifaces=($(ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | grep '^eth[0-9]*$' | sort -V))
DEFAULT_GW=$(ip -4 route show default | awk '/default/ { print $3; exit }')

mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"
DNSMASQ_CONF=$RUN_DIR/dnsmasq.conf
cat >"$DNSMASQ_CONF" <<EOF
pid-file=$RUN_DIR/dnsmasq.pid
dhcp-leasefile=$RUN_DIR/dnsmasq.leases
no-hosts
no-resolv
bind-interfaces
except-interface=lo
dhcp-ignore=tag:!known
dhcp-broadcast
dhcp-authoritative
EOF

# DNS: forward to the container's resolvers (Docker's 127.0.0.11 is unreachable from the guest).
NAMESERVERS=$(awk '/^nameserver/ { print $2 }' /etc/resolv.conf)
if [ -n "$NAMESERVERS" ]; then
	for ns in $NAMESERVERS; do echo "server=$ns" >>"$DNSMASQ_CONF"; done
else
	echo "port=0" >>"$DNSMASQ_CONF"
fi

KVM_NET_OPTS=""
i=0
for iface in "${local_ifaces[@]}"; do
	MAC=$(ip link show "$iface" | awk '/ether/ { print $2 }')
	MTU=$(ip link show "$iface" | awk '/mtu/ { for (f = 1; f < NF; f++) if ($f == "mtu") print $(f + 1) }')
	CIDR=$(ip -4 address show dev "$iface" | awk '/inet / { print $2; exit }')
	IP=${CIDR%/*}
	PREFIX=${CIDR#*/}
	# The NIC's own routes, except the kernel's prefix route (it goes with the address).
	mapfile -t ROUTES < <(ip -4 route show dev "$iface" | grep -v 'proto kernel')
	vtapdev=vmtap$i
	vlandev=vmlink$i
	door=169.254.1.$((i + 2))

	for route in "${ROUTES[@]}"; do
		ip route del $route dev "$iface"
	done
	ip address del "$CIDR" dev "$iface"

	# The guest takes the container's MAC; the container NIC gets a new one first.
	ip link set "$iface" address "$(genMAC)"
	until ip link add link "$iface" name "$vtapdev" address "$MAC" mtu "$MTU" type macvtap mode bridge; do
		sleep 1 # needed for Kubernetes compatibility, says startvm
	done
	ip link add link "$iface" name "$vlandev" mtu "$MTU" type macvlan mode bridge
	ip link set "$vtapdev" up
	ip link set "$vlandev" up
	ip address add "$door/32" dev "$vlandev"
	ip route add "$IP/32" dev "$vlandev" src "$door"
	for route in "${ROUTES[@]}"; do
		ip route add $route dev "$vlandev" onlink src "$door"
	done

	# No udev in a container: make the tap's device node by hand.
	IFINDEX=$(cat "/sys/class/net/$vtapdev/ifindex")
	IFS=: read -r major minor <"/sys/class/net/$vtapdev/macvtap/tap$IFINDEX/dev"
	mknod "/dev/tap$IFINDEX" c "$major" "$minor"

	ROUTER=""
	if [ "$i" -eq 0 ] && [ -n "$DEFAULT_GW" ]; then ROUTER=",$DEFAULT_GW"; fi
	cat >>"$DNSMASQ_CONF" <<EOF
interface=$vlandev
shared-network=$vlandev,$IP
dhcp-range=set:vm$i,$IP,static,$(cidr2mask "$PREFIX"),infinite
dhcp-host=$MAC,set:vm$i,$IP,$(hostname -s),infinite
dhcp-option=tag:vm$i,option:router$ROUTER
dhcp-option=tag:vm$i,option:mtu,$MTU
dhcp-option=tag:vm$i,option:dns-server,$door
EOF

	fd=$((i + 3))
	eval "exec $fd<>/dev/tap$IFINDEX"
	KVM_NET_OPTS="$KVM_NET_OPTS -netdev tap,id=net$i,fd=$fd,vhost=$VHOST"
	KVM_NET_OPTS="$KVM_NET_OPTS -device virtio-net-pci,netdev=net$i,mac=$MAC,host_mtu=$MTU"
	i=$((i + 1))
done

# dnsmasq forks into the background once it is set up (its parent waits for that).
"$DNSMASQ" --conf-file="$DNSMASQ_CONF"

exec $LAUNCHER -name guest=vm $ACCEL_OPTS -m "$RAM_SIZE" -smp "$CPU_CORES" -display none \
	-monitor none -chardev stdio,id=console,signal=off -serial chardev:console \
	-drive "file=$IMAGE,if=virtio,format=qcow2" $KVM_NET_OPTS "$@"
