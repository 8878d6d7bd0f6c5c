# bench/lib.sh — the namespace harness of the vminit bench; sourced by bench/run.sh.
#
# It plays Docker on this machine without touching the machine's own network: every link,
# address and route lives in network namespaces made here, named "$NS_PREFIX…" (unique per run),
# and deleted by bench_cleanup (run.sh calls it from its EXIT trap).
#
#   network i (i = 0..7)      netns ${NS_PREFIX}n$i: bridge br0 = gateway 10.(100+i).0.1/24
#                             (network 0 also fd00:100::1/64, as a Docker --ipv6 network)
#                             netns ${NS_PREFIX}p$i: the peer, eth0 = 10.(100+i).0.50/24 on br0
#                             (network 0: also fd00:100::50/64)
#   container                 netns ${NS_PREFIX}c$id: eth0..eth{n-1}, each a veth whose other end
#                             is a port of network i's bridge; MAC 02:42:0a:xx:00:02, address
#                             10.(100+i).0.2/24, default route via 10.100.0.1 dev eth0; with
#                             `ipv6`, eth0 also fd00:100::2/64 and an IPv6 default route
#   the container's PID 1     `ip netns exec` + `unshare --pid --mount --uts --fork --kill-child`:
#                             a private tmpfs /dev with a few nodes, a tmpfs /run, a bind-mounted
#                             /etc/resolv.conf (Docker's 127.0.0.11), Docker's capability set
#                             plus NET_ADMIN; then it execs the program under test.
#
# Every process started here is a descendant of the bench's shell; bench_cleanup kills that tree
# (by pid) at exit, whatever state the bench was in.

NS_PREFIX=${NS_PREFIX:-vmb$$-}
BENCH_PIDS=()

# Capabilities Docker gives a container, plus NET_ADMIN (vminit's documented requirement).
DOCKER_CAPS=-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap
DOCKER_CAPS+=,+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap,+net_admin

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# net_addr I HOST: 10.(100+I).0.HOST
net_addr() { echo "10.$((100 + $1)).0.$2"; }
# NET6_*: network 0's IPv6 side (a Docker --ipv6 network: gateway on the bridge, no router
# advertisements).
NET6_GATEWAY=fd00:100::1
NET6_PEER=fd00:100::50
NET6_GUEST=fd00:100::2
# ctr_mac I: the Docker-style MAC of the container's ethI (02:42 + its IPv4 address).
ctr_mac() { printf '02:42:0a:%02x:00:02' $((100 + $1)); }

# net_create I: network I (bridge namespace + peer namespace), if not made yet.
net_create() {
	local i=$1 ns=${NS_PREFIX}n$1 peer=${NS_PREFIX}p$1
	[[ -e /run/netns/$ns ]] && return 0
	ip netns add "$ns"
	ip netns add "$peer"
	ip -n "$ns" -batch - <<-EOF
		link set lo up
		link add br0 type bridge stp_state 0 forward_delay 0
		addr add $(net_addr "$i" 1)/24 dev br0
		link set br0 up
		link add peer type veth peer name eth0 netns $peer
		link set peer master br0 up
	EOF
	ip -n "$peer" -batch - <<-EOF
		link set lo up
		addr add $(net_addr "$i" 50)/24 dev eth0
		link set eth0 up
	EOF
	if ((i == 0)); then
		# The bridge keeps one MAC (as Docker's do), so the gateway's link-local address stays.
		ip -n "$ns" -batch - <<-EOF
			link set br0 address 02:42:fe:00:64:01
			addr add $NET6_GATEWAY/64 dev br0 nodad
		EOF
		ip -n "$peer" addr add "$NET6_PEER/64" dev eth0 nodad
	fi
	# The peer re-sends ARP requests every 20 ms (not every second): a ping loop at 20 ms then
	# sees the guest within 20 ms of its first answer.
	ip netns exec "$peer" sh -c 'echo 20 > /proc/sys/net/ipv4/neigh/eth0/retrans_time_ms'
}

# ctr_create ID N [ipv6]: a container namespace with N NICs on networks 0..N-1; prints its name.
# With `ipv6`, eth0 is dual-stack, as on a Docker --ipv6 network.
ctr_create() {
	local id=$1 n=$2 ctr=${NS_PREFIX}c$1 i
	ip netns add "$ctr"
	local batch="link set lo up"$'\n'
	for ((i = 0; i < n; i++)); do
		net_create "$i"
		# ip link add … type veth peer name ethI netns CTR   (as Docker's bridge driver does)
		ip -n "${NS_PREFIX}n$i" -batch - <<-EOF
			link add c$id type veth peer name eth$i netns $ctr
			link set c$id master br0 up
		EOF
		batch+="link set eth$i address $(ctr_mac "$i")"$'\n'
		batch+="addr add $(net_addr "$i" 2)/24 brd + dev eth$i"$'\n'
		batch+="link set eth$i up"$'\n'
	done
	batch+="route add default via $(net_addr 0 1) dev eth0"$'\n'
	if [[ ${3:-} == ipv6 ]]; then
		batch+="addr add $NET6_GUEST/64 dev eth0 nodad"$'\n'
		batch+="route add ::/0 via $NET6_GATEWAY dev eth0"$'\n'
	fi
	ip -n "$ctr" -batch - <<<"$batch"
	# Docker starts the container once its NICs are up; so do we (carrier on every ethN).
	wait_for 5 ctr_carrier "$ctr" "$n" || die "$ctr: the NICs did not come up"
	echo "$ctr"
}

# ctr_attach CTR ID I [CMD...]: one more NIC for the container CTR (made by `ctr_create ID …`),
# while it runs, as `docker network connect` does: a veth from network I's bridge, named ethI in
# the container, Docker's MAC and address, up; the NIC of network I that ctr_create would have
# made. CMD..., when given, runs the first `ip` (the one that makes the link; its path) as its
# arguments: a timestamper that execs it marks the moment the NIC appears. Waits for carrier.
ctr_attach() {
	local ctr=$1 id=$2 i=$3 mac addr
	shift 3
	net_create "$i"
	mac=$(ctr_mac "$i") addr=$(net_addr "$i" 2)
	"$@" "$(command -v ip)" -n "${NS_PREFIX}n$i" -batch - <<-EOF
		link add c$id type veth peer name eth$i netns $ctr
		link set c$id master br0 up
	EOF
	ip -n "$ctr" -batch - <<-EOF
		link set eth$i address $mac
		addr add $addr/24 brd + dev eth$i
		link set eth$i up
	EOF
	wait_for 5 sh -c "ip -n '$ctr' -o link show eth$i | grep -q LOWER_UP" ||
		die "$ctr: eth$i did not come up"
}

# ctr_carrier CTR N: whether all N ethI of CTR have carrier.
ctr_carrier() {
	[[ $(ip -n "$1" -o link show | grep -c '^[0-9]*: eth[0-9]*@.*LOWER_UP') -ge $2 ]]
}

# ctr_delete CTR: deletes the container namespace and waits until the kernel has finished
# tearing it down (its veth ports are gone from the bridges): the teardown holds the RTNL lock
# and would otherwise slow down whatever the bench measures next.
ctr_delete() {
	local port=c${1#"${NS_PREFIX}c"}
	ip netns del "$1" 2>/dev/null || true
	wait_for 10 ctr_ports_gone "$port" || say "warning: $1 still being torn down"
}

ctr_ports_gone() {
	local ns
	for ns in $(ip netns list | awk -v p="${NS_PREFIX}n" 'index($1, p) == 1 { print $1 }'); do
		ip -n "$ns" link show "$1" >/dev/null 2>&1 && return 1
	done
	return 0
}

# ctr_state CTR: what vminit takes over and must put back, for before/after comparisons: each
# link's name, MTU and MAC, the IPv4 addresses, the IPv4 routes of every table. (IPv6
# link-local addresses and link flags change by themselves and are left out.)
ctr_state() {
	{
		ip -n "$1" -o link show | awk '{
			mtu = ""; mac = ""
			for (f = 1; f < NF; f++) { if ($f == "mtu") mtu = $(f + 1); if ($f == "link/ether") mac = $(f + 1) }
			print "link", $2, mtu, mac }'
		ip -n "$1" -4 -o addr show | awk '{ $1 = ""; print "addr", $0 }' | sed 's/valid_lft.*//'
		ip -n "$1" -4 route show table all | sed 's/^/route /'
	} | sort
}

# The shell script PID 1 runs before it execs the program: Docker's /dev, /run, resolv.conf.
# Device numbers from Documentation/admin-guide/devices.txt; /dev/kvm and /dev/vhost-net only
# when this machine has them (as `--device` would pass them).
CTR_SETUP='set -e
mount -t tmpfs -o nosuid,mode=0755,size=65536k tmpfs /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mkdir -m 755 /dev/net
mknod -m 666 /dev/net/tun c 10 200
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
if [ -n "$BENCH_DEV_KVM" ]; then mknod -m 660 /dev/kvm c 10 232; fi
if [ -n "$BENCH_DEV_VHOST" ]; then mknod -m 660 /dev/vhost-net c 10 238; fi
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mount --bind "$BENCH_RESOLV" /etc/resolv.conf
hostname benchvm
eval "$BENCH_PRE_EXEC"
exec setpriv --bounding-set "$BENCH_CAPS" -- "$@"'

# ctr_exec CTR [VAR=VALUE...] -- PROGRAM ARGS...: runs PROGRAM as PID 1 of a container in
# CTR's netns, in the foreground, with a clean environment (Docker's PATH, HOSTNAME, HOME plus
# the given variables). BENCH_PRE_EXEC (a shell snippet run as PID 1 just before the exec,
# outside any measurement) and the BENCH_DEV_* flags are read from the caller's environment.
ctr_exec() {
	local ctr=$1
	shift
	local vars=()
	while [[ $1 != -- ]]; do
		vars+=("$1")
		shift
	done
	shift
	ip netns exec "$ctr" unshare --pid --mount --uts --fork --kill-child --mount-proc \
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOSTNAME=benchvm \
		HOME=/root BENCH_RESOLV="$BENCH_RESOLV" BENCH_CAPS="$DOCKER_CAPS" \
		BENCH_DEV_KVM="${BENCH_DEV_KVM:-}" BENCH_DEV_VHOST="${BENCH_DEV_VHOST:-}" \
		BENCH_PRE_EXEC="${BENCH_PRE_EXEC:-}" VMINIT_DNSMASQ="$DNSMASQ" "${vars[@]}" \
		sh -c "$CTR_SETUP" pid1 "$@"
}

# pid1_of PID: the host pid of the container's PID 1 among PID's descendants (the first one
# in another pid namespace than this script), or "" when there is none (yet).
pid1_of() {
	local mine queue=("$1") pid
	mine=$(readlink /proc/self/ns/pid)
	while ((${#queue[@]})); do
		pid=${queue[0]}
		queue=("${queue[@]:1}")
		if [[ $(readlink "/proc/$pid/ns/pid" 2>/dev/null) != "$mine" ]]; then
			[[ -e /proc/$pid ]] && echo "$pid"
			return 0
		fi
		queue+=($(cat /proc/"$pid"/task/*/children 2>/dev/null))
	done
}

# ns_procs PID: how many processes share PID's pid namespace (the container's process count).
ns_procs() {
	local ns p n=0
	ns=$(readlink "/proc/$1/ns/pid") || return 0
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/ns/pid" 2>/dev/null) == "$ns" ]] && n=$((n + 1))
	done
	echo "$n"
}

# wait_for TIMEOUT_S COMMAND...: polls COMMAND every 10 ms until it succeeds; 1 on timeout.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.01
	done
}

# bg_start CMD...: starts CMD in the background, records its pid in BENCH_PIDS and LAST_PID.
bg_start() {
	"$@" &
	LAST_PID=$!
	BENCH_PIDS+=("$LAST_PID")
}

# bg_stop PID [GRACE_S]: SIGTERM, wait up to GRACE_S (default 5), then SIGKILL; reaps it.
bg_stop() {
	local pid=$1 grace=${2:-5} deadline
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null || true
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + grace))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# descendants PID: every descendant of PID, parents before children.
descendants() {
	local child
	for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
		echo "$child"
		descendants "$child"
	done
}

# kill_tree PID: SIGKILL to PID and everything below it (started by this bench, through it).
# `unshare --fork` ignores SIGTERM, and a shell function run in the background is a subshell
# whose children outlive it: killing the tree is the only sure way.
kill_tree() {
	local pids
	pids=("$1" $(descendants "$1"))
	kill -KILL "${pids[@]}" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# bench_reap_stale: deletes the namespaces of earlier runs killed before their EXIT trap ran
# (SIGKILL): those named vmb<pid>- whose process is gone. A live run's are left alone.
bench_reap_stale() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '/^vmb[0-9]+-/ { print $1 }'); do
		pid=${ns#vmb}
		pid=${pid%%-*}
		[[ -d /proc/$pid ]] || ip netns del "$ns" 2>/dev/null || true
	done
}

# bench_cleanup: kills every process this bench started (its whole process tree, by pid) and
# deletes its namespaces. Idempotent; run from the EXIT trap.
bench_cleanup() {
	local pids pid ns
	pids=($(descendants $$))
	for pid in "${pids[@]}"; do
		[[ $pid == "$BASHPID" ]] || kill -KILL "$pid" 2>/dev/null || true
	done
	for pid in "${BENCH_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	BENCH_PIDS=()
	for ns in $(ip netns list 2>/dev/null | awk -v p="$NS_PREFIX" 'index($1, p) == 1 { print $1 }'); do
		ip netns del "$ns" 2>/dev/null || true
	done
}
