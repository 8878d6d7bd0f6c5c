#!/usr/bin/env bash
# bench/run.sh [--quick] — measures vminit and writes BENCHMARKS.md and bench/benchmarks.png.
#
# What it measures, each figure next to what it is compared with, all in this one run:
#   1. Setup latency: from vminit's exec to QEMU's exec, with 1, 2, 4 and 8 NICs, with the
#      macvtap and the tap datapath (NET_DATAPATH), against bench/reference-startvm.sh (the same takeover done the bash-entrypoint way). QEMU is a
#      stand-in (bench/stamp.c) that records the time and checks it inherited one tap fd per NIC.
#      vminit's stderr is timestamped line by line, which splits its time into phases.
#   2. Boot to network: from container start to the first ping the guest answers at the
#      container's IP (pinged every 20 ms from the network's peer), against the floor: the same
#      guest booted by plain QEMU over a macvtap made by hand, its address set statically; vminit
#      boots with each datapath.
#      vminit also boots with 2 and 8 NICs (vminit-n2, vminit-n8) for its share at those counts,
#      and its RSS with 8 NICs.
#      vminit's boots run on a dual-stack network (a Docker --ipv6 shape): the first `ping -6`
#      at the container's IPv6 address and the guest's time to a usable IPv6 address and route
#      are reported next to IPv4's.
#      Then the same for a real distribution (Debian 12 with systemd-networkd, built by
#      tests/distro/build-images.sh): vminit and its DHCP, against the same guest under plain
#      QEMU with a static address (ip= on the kernel command line).
#   3. Hot-plug: the guest booted by vminit with one NIC; once it runs, a second NIC is attached
#      to the container as `docker network connect` does; from that moment to the first ping the
#      guest answers at the new NIC's address (vminit follows, the guest configures it by DHCP).
#   4. Throughput: iperf3 between the peer and the guest, both ways, through vminit's macvtap,
#      vminit's tap (the tap datapath), a hand-made macvtap (no vminit), vminit's user mode (passt,
#      NET_DATAPATH=user; and slirp, under a seccomp filter refusing unshare as Docker's default
#      profile does), QEMU user-mode networking, and plain veth (the ceiling).
#   4b. Multiqueue: the guest with two vCPUs and NIC_QUEUES=1 against NIC_QUEUES=2: iperf3 with
#      4 parallel streams both ways, and short TCP connections per second (bench/connrate.py).
#   5. Footprint: binary size, PID 1's RSS and the container's process count while the guest
#      runs, the Docker image size when `vminit:latest` exists.
#   6. Old QEMU beside new: when BENCH_QEMU is another QEMU than Debian's, vminit's macvtap boots
#      of section 2 and their throughput also run on Debian's package QEMU ("old", boot kind
#      vminit-old) beside BENCH_QEMU's ("new"): same guest, disk, NICs and vminit, one boot of
#      each per round, side by side, as the tap datapath beside macvtap. Otherwise skipped.
#
# Everything runs in network namespaces made here and deleted on exit (bench/lib.sh); only
# processes started here are killed, by pid. Needs root. Guests use ACCEL=auto: KVM where it
# works, TCG (software emulation) elsewhere, and the report says which.
#
#   --quick   3 setup runs per point, 1 boot per kind, 1 hot-plug, 1 s iperf3 runs: finishes
#             in about a minute, plus two boots of the distribution guest (what CI runs to keep
#             the bench working; it asserts nothing on numbers).
#
# Environment: BENCH_DISTRO=no skips the distribution guest (building its images the first time
# takes a few minutes; tests/distro/build-images.sh caches them outside the repository).
# BENCH_QEMU=PATH runs every guest on that QEMU (default Debian's /usr/bin/qemu-system-x86_64),
# e.g. the one image/build-qemu.sh builds, and compares it with Debian's in section 6; the report
# names both QEMUs. The QEMU user-mode networking row keeps Debian's. BENCH_DNSMASQ=PATH is the
# dnsmasq vminit runs (default Debian's /usr/sbin/dnsmasq), e.g. the one image/build-dnsmasq.sh
# builds: scripts/test.sh gives both the image's.
#
# Outputs: BENCHMARKS.md, bench/benchmarks.png (or $BENCH_REPORT, $BENCH_PLOT); raw data in $CARGO_TARGET_DIR/bench/results
# (default target/bench/results), rebuilt artefacts (stand-in, bench guest) in target/bench.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

MODE=full
for arg in "$@"; do
	case "$arg" in
	--quick) MODE=quick ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
done
if [[ $MODE == quick ]]; then
	SETUP_RUNS=3 BOOT_RUNS=1 IPERF_SECONDS=1 IPERF_REPS=1 DISTRO_RUNS=1
else
	SETUP_RUNS=30 BOOT_RUNS=8 IPERF_SECONDS=5 IPERF_REPS=8 DISTRO_RUNS=3
fi
PLUG_RUNS=$([[ $MODE == quick ]] && echo 1 || echo 5)
BENCH_DISTRO=${BENCH_DISTRO:-yes}
DISTRO_RAM=512M
# The distribution guest's one NIC: QEMU puts it in PCI slot 3, before the disk, as vminit's
# command line does; systemd names it by the slot.
DISTRO_NIC=ens3
NIC_COUNTS=(1 2 4 8)
RAM=256M

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-$REPO/target}")
OUT=$TARGET_DIR/bench
RES=$OUT/results
VMINIT=$TARGET_DIR/x86_64-unknown-linux-musl/release/vminit
STAMP=$OUT/bench-stamp
NO_UNSHARE=$OUT/bench-no-unshare
STANDIN=$OUT/qemu-standin
DEBIAN_QEMU=/usr/bin/qemu-system-x86_64 # the package qemu-system-x86's, installed below
QEMU=${BENCH_QEMU:-$DEBIAN_QEMU}
DNSMASQ=${BENCH_DNSMASQ:-/usr/sbin/dnsmasq} # vminit's (VMINIT_DNSMASQ in every container)
GUEST=$OUT/guest
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || die "needs root (network namespaces, macvtap, mknod)"
bench_reap_stale
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# 0. Tools and artefacts
# ---------------------------------------------------------------------------------------------

install_missing() {
	local missing=() pkg
	for pkg in "$@"; do
		dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
	done
	if ((${#missing[@]})); then
		say "installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2 || {
			apt-get update >&2
			DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
		}
	fi
}
install_missing iproute2 iputils-ping iperf3 dnsmasq-base qemu-system-x86 qemu-utils gcc libc6-dev \
	cpio busybox-static util-linux coreutils strace python3-matplotlib

[[ -x $DNSMASQ ]] || die "BENCH_DNSMASQ=$DNSMASQ is not an executable file; give the path of a dnsmasq (image/build-dnsmasq.sh prints the directory of the one it builds)"
[[ -x $QEMU ]] || die "BENCH_QEMU=$QEMU is not an executable file; give the path of a qemu-system-x86_64 (image/build-qemu.sh prints the directory of the one it builds)"
# Section 6, old QEMU beside new: only when the two differ.
OLD_KINDS=()
if [[ $(realpath "$QEMU") == "$(realpath "$DEBIAN_QEMU")" ]]; then
	OLD_QEMU_SKIPPED="BENCH_QEMU is $([[ -n ${BENCH_QEMU:-} ]] && echo "Debian's QEMU" || echo "not set"): every guest ran on Debian's QEMU, there was no other to compare it with"
else
	OLD_QEMU_SKIPPED=""
	OLD_KINDS=(vminit-old)
fi

say "building vminit (release, musl)"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
	rustup target add x86_64-unknown-linux-musl >&2
fi
(cd "$REPO" && cargo build --quiet --release --target x86_64-unknown-linux-musl)
[[ -x $VMINIT ]] || die "cargo did not produce $VMINIT"
mkdir -p "$OUT"
gcc -static -O2 -Wall -o "$STAMP" "$BENCH/stamp.c"
gcc -static -O2 -Wall -o "$NO_UNSHARE" "$REPO/tests/standin/no_unshare.c"
ln -sf bench-stamp "$STANDIN"
say "building the bench guest"
"$BENCH/build-guest.sh" "$GUEST"

# The log timestamper runs at a real-time priority, so that it reads each line the moment it is
# written (at normal priority the scheduler may leave it waiting behind vminit, and several lines
# then get one timestamp). Lines written less than about 0.1 ms apart may still share one.
STAMP_LINES=("$STAMP" lines)
chrt -f 10 true 2>/dev/null && STAMP_LINES=(chrt -f 10 "$STAMP" lines)

rm -rf "$RES"
mkdir -p "$RES/setup" "$RES/boot" "$RES/iperf"
WORK=$RES/work
mkdir -p "$WORK"
printf 'nameserver 127.0.0.11\noptions ndots:0\n' >"$WORK/resolv.conf" # Docker's user network
export BENCH_RESOLV=$WORK/resolv.conf
# Devices passed as `--device` would pass them: only those this machine has.
BENCH_DEV_KVM=$([[ -c /dev/kvm ]] && echo 1 || true)
BENCH_DEV_VHOST=$([[ -c /dev/vhost-net ]] && echo 1 || true)
export BENCH_DEV_KVM BENCH_DEV_VHOST
for disk in setup vminit floor user; do
	qemu-img create -q -f qcow2 "$WORK/$disk.qcow2" 64M
done
KERNEL_ARGS=(-kernel "$GUEST/vmlinuz" -initrd "$GUEST/initramfs.cpio.gz")

# ---------------------------------------------------------------------------------------------
# 1. Setup latency
# ---------------------------------------------------------------------------------------------

CTR_SEQ=0 # container ids: unique, so a namespace still being torn down never clashes

# setup_run TOOL N R: one container start with N NICs; appends a line to setup.tsv.
setup_run() {
	local tool=$1 n=$2 r=$3 id ctr log t0 qs rc=0 before after
	id=$((++CTR_SEQ))
	ctr=$(ctr_create "$id" "$n")
	t0=$WORK/t0.$id qs=$WORK/qs.$id log=$RES/setup/$tool-n$n-r$r.log
	[[ $tool == vminit && $r == 1 ]] && before=$(ctr_state "$ctr")
	case $tool in
	vminit | vminit-tcg | vminit-tap)
		local accel=auto datapath=macvtap
		[[ $tool == vminit-tcg ]] && accel=tcg
		[[ $tool == vminit-tap ]] && datapath=tap
		ctr_exec "$ctr" AUTO_ATTACH=yes ACCEL=$accel NET_DATAPATH=$datapath RAM_SIZE=$RAM VMINIT_DISK="$WORK/setup.qcow2" \
			VMINIT_QEMU="$STANDIN" BENCH_QEMU_STAMP="$qs" -- \
			"$STAMP" exec "$t0" "$VMINIT" "${KERNEL_ARGS[@]}" \
			</dev/null >"$WORK/console.$id" 2> >("${STAMP_LINES[@]}" >"$log") || rc=$?
		;;
	reference)
		ctr_exec "$ctr" AUTO_ATTACH=yes RAM_SIZE=$RAM IMAGE="$WORK/setup.qcow2" \
			LAUNCHER="$STANDIN" BENCH_QEMU_STAMP="$qs" -- \
			"$STAMP" exec "$t0" /bin/bash "$BENCH/reference-startvm.sh" "${KERNEL_ARGS[@]}" \
			</dev/null >"$WORK/console.$id" 2> >("${STAMP_LINES[@]}" >"$log") || rc=$?
		;;
	esac
	wait $! 2>/dev/null || true # the log's timestamper
	if ((rc != 0)) || [[ ! -s $t0 || ! -s $qs ]]; then
		cat "$log" >&2
		die "$tool with $n NICs (run $r) failed (exit $rc)"
	fi
	read -r t0_mono _ <"$t0"
	read -r t1_mono _ nics fds <"$qs"
	[[ $nics == "nics=$n" && $fds == "chardev_fds=$n" ]] ||
		die "$tool with $n NICs (run $r): QEMU got $nics $fds"
	printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$n" "$r" "$t0_mono" "$t1_mono" >>"$RES/setup.tsv"
	if [[ -n ${before:-} ]]; then
		after=$(ctr_state "$ctr")
		if [[ $before == "$after" ]]; then
			printf '%s\tyes\n' "$n" >>"$RES/restore.tsv"
		else
			printf '%s\tno\n' "$n" >>"$RES/restore.tsv"
			diff <(echo "$before") <(echo "$after") >"$RES/setup/restore-diff-n$n.txt" || true
		fi
	fi
	ctr_delete "$ctr"
}

say "setup latency: ${SETUP_RUNS} runs x ${NIC_COUNTS[*]} NICs x {vminit, vminit-tap, reference}"
printf 'tool\tnics\trun\tt0_mono_ns\tt1_mono_ns\n' >"$RES/setup.tsv"
printf 'nics\trestored\n' >"$RES/restore.tsv"
for ((r = 1; r <= SETUP_RUNS; r++)); do
	for n in "${NIC_COUNTS[@]}"; do
		# Alternate the order so that drift does not favour one of the two.
		if ((r % 2)); then tools=(vminit vminit-tap reference); else tools=(reference vminit-tap vminit); fi
		for tool in "${tools[@]}"; do setup_run "$tool" "$n" "$r"; done
	done
	# ACCEL=tcg skips the KVM probe: the difference in the first phase is the probe's cost.
	setup_run vminit-tcg 2 "$r"
done
# Calibration: the stamp helper exec'ing the stand-in directly, no container: the exec and
# process start that every measurement above includes once.
for ((r = 1; r <= SETUP_RUNS; r++)); do
	rm -f "$WORK/t0.cal" "$WORK/qs.cal"
	BENCH_QEMU_STAMP=$WORK/qs.cal "$STAMP" exec "$WORK/t0.cal" "$STANDIN"
	printf 'calibration	0	%s	%s	%s
' "$r" "$(cut -d' ' -f1 "$WORK/t0.cal")" "$(cut -d' ' -f1 "$WORK/qs.cal")" \
		>>"$RES/setup.tsv"
done
ACCEL_USED=$(sed -n 's/.*vminit: .*accelerator: \([a-z]*\).*/\1/p' "$RES/setup/vminit-n1-r1.log" | head -n 1)
VHOST_USED=$(sed -n 's/.*vminit: .*vhost-net: \(on\|off\).*/\1/p' "$RES/setup/vminit-n1-r1.log" | head -n 1)
[[ -n $ACCEL_USED && -n $VHOST_USED ]] || die "cannot tell which accelerator/vhost vminit chose"
say "vminit chose accelerator $ACCEL_USED, vhost-net $VHOST_USED"

# One more run of each under strace, for counts only (its times are not used): netlink requests
# by type, processes executed, shared libraries dnsmasq loads.
profile_run() {
	local tool=$1 ctr
	CTR_SEQ=$((CTR_SEQ + 1))
	ctr=$(ctr_create "$CTR_SEQ" 2)
	if [[ $tool == vminit ]]; then
		ctr_exec "$ctr" AUTO_ATTACH=yes ACCEL=auto RAM_SIZE=$RAM VMINIT_DISK="$WORK/setup.qcow2" \
			VMINIT_QEMU="$STANDIN" -- strace -f -o "$RES/setup/strace-$tool.txt" "$VMINIT" \
			</dev/null >/dev/null 2>"$WORK/profile-$tool.log" || die "vminit under strace failed"
	else
		# Not strace as PID 1: dnsmasq's daemon would become its child and keep it waiting.
		# -b execve: each child is counted at its exec, then left alone.
		ctr_exec "$ctr" AUTO_ATTACH=yes RAM_SIZE=$RAM IMAGE="$WORK/setup.qcow2" LAUNCHER="$STANDIN" -- \
			sh -c 'strace -f -b execve -s 0 -e trace=execve -o "$0" /bin/bash "$1"; exit 0' \
			"$RES/setup/strace-$tool.txt" "$BENCH/reference-startvm.sh" \
			</dev/null >/dev/null 2>"$WORK/profile-$tool.log" || die "the reference under strace failed"
	fi
	ctr_delete "$ctr"
}
profile_run vminit
profile_run reference

# ---------------------------------------------------------------------------------------------
# 2. Boot to network, throughput through the macvtaps, footprint
# ---------------------------------------------------------------------------------------------

GUEST_IP=$(net_addr 0 2)
GUEST_MAC=$(ctr_mac 0)
PEER=${NS_PREFIX}p0
ACCEL_OPTS=(-accel "$ACCEL_USED")
[[ $ACCEL_USED == kvm ]] && ACCEL_OPTS+=(-cpu host)

# has_reply PINGLOG AFTER_US: whether a reply arrived after AFTER_US.
has_reply() { [[ -n $(first_reply_us "$1" "$2") ]]; }

# first_reply_us PINGLOG AFTER_US: the time (µs since the epoch) of the first reply received
# after AFTER_US, or nothing.
first_reply_us() {
	awk -v after="$2" '/bytes from/ {
		t = $1; gsub(/[][]/, "", t); split(t, p, ".")
		us = p[1] * 1000000 + p[2]
		if (us > after + 0) { printf "%.0f\n", us; exit }
	}' "$1"
}

# guest_times CONSOLE: for init, modules, net, ready: the guest's uptime (s) in the BENCH-T line,
# then for init, modules, net: when the line reached the console (host CLOCK_MONOTONIC ns).
guest_times() {
	local k out=()
	for k in init modules net ready; do
		out+=("$(tr -d '\r' <"$1" | awk -v k="$k" '$2 == "BENCH-T" && $3 == k { print $4; exit }')")
	done
	for k in init modules net; do
		out+=("$(tr -d '\r' <"$1" | awk -v k="$k" '$2 == "BENCH-T" && $3 == k { print $1; exit }')")
	done
	echo "${out[*]}"
}

# iperf_pair NAME NETNS SERVER [PORT] [STREAMS]: IPERF_REPS tests each way (numbered from
# IPERF_FIRST, default 1), client in NETNS against SERVER, STREAMS parallel streams (default 1).
# Retries a few times: the guest's server may still be starting when the guest reports ready.
iperf_pair() {
	local name=$1 ns=$2 server=$3 port=${4:-5201} streams=${5:-1} dir args try json k
	local first=${IPERF_FIRST:-1}
	for ((k = first; k < first + IPERF_REPS; k++)); do
		for dir in up down; do
			args=(-c "$server" -p "$port" -t "$IPERF_SECONDS" -P "$streams" -J --connect-timeout 5000)
			[[ $dir == down ]] && args+=(-R)
			json=$RES/iperf/$name-$dir-$k.json
			for try in 1 2 3 4 5; do
				timeout $((IPERF_SECONDS + 30)) ip netns exec "$ns" iperf3 "${args[@]}" >"$json" 2>&1 || true
				grep -q '"sum_received"' "$json" && break
				sleep 1
			done
			grep -q '"sum_received"' "$json" || say "iperf3 $name $dir failed (see $json)"
		done
	done
}

# boot_run KIND R: KIND vminit (the container runs vminit, the guest asks DHCP) or floor (the
# container runs plain QEMU over a macvtap made beforehand, the guest's address is static), with
# the bench guest; distro and distro-floor: the same two with a Debian 12 guest (systemd-networkd,
# tests/distro/), whose static address comes from ip= on the kernel command line. vminit-old:
# vminit as in `vminit`, its QEMU Debian's instead of BENCH_QEMU's (section 6).
boot_run() {
	local kind=$1 r=$2 id ctr t0 qs console ping_log ctr_pid pid1 t_from tping t0_mono t0_real
	local stop_ms="" tping6="" ping6_pid="" nics=1
	id=$((++CTR_SEQ))
	# vminit-nN: the same as vminit with N NICs (eth0 on the dual-stack network, the others
	# IPv4 networks 1 … N-1), for vminit's share of the boot at 2 and 8 NICs.
	[[ $kind =~ ^vminit-n([0-9]+)$ ]] && nics=${BASH_REMATCH[1]}
	# vminit's bench guest runs on a dual-stack network (Docker --ipv6): its IPv6 is timed too.
	ctr=$(ctr_create "$id" "$nics" "$([[ $kind == vminit* ]] && echo ipv6)")
	t0=$WORK/t0.$id qs=$WORK/qs.$id console=$RES/boot/$kind-r$r.console ping_log=$RES/boot/$kind-r$r.ping
	local ram=$RAM ready=BENCH-READY boot_wait=180 stop_wait=20 kargs=("${KERNEL_ARGS[@]}")
	local append_dhcp="console=ttyS0 quiet bench_net=dhcp"
	local append_static="console=ttyS0 quiet bench_net=static:$GUEST_IP/24:$(net_addr 0 1)"
	local disk_vminit=$WORK/vminit.qcow2 disk_floor=$WORK/floor.qcow2 vm_env=()
	if [[ $kind == distro* ]]; then
		# A fresh overlay of the cached root for each boot, made before the clock starts.
		ram=$DISTRO_RAM ready="DISTRO-REPORT end" boot_wait=600 stop_wait=90 vm_env=(STOP_TIMEOUT=80)
		kargs=(-kernel "$DISTRO/vmlinuz" -initrd "$DISTRO/initrd.img")
		append_dhcp=$(cat "$DISTRO/cmdline")
		append_static="$append_dhcp ip=$GUEST_IP::$(net_addr 0 1):255.255.255.0::$DISTRO_NIC:off"
		disk_vminit=$WORK/distro-$id.qcow2 disk_floor=$WORK/distro-$id.qcow2
		# vminit takes a backing file only beside the disk: link the cached root in.
		[[ -e $WORK/distro-root.qcow2 ]] || ln "$DISTRO/root.qcow2" "$WORK/distro-root.qcow2" 2>/dev/null ||
			cp "$DISTRO/root.qcow2" "$WORK/distro-root.qcow2"
		qemu-img create -q -f qcow2 -b distro-root.qcow2 -F qcow2 "$disk_vminit"
	fi
	# The peer knows the guest's MAC (the container's): no ARP in the way, the same for both.
	ip -n "$PEER" neigh replace "$GUEST_IP" lladdr "$GUEST_MAC" dev eth0 nud permanent
	if [[ $kind == *floor ]]; then
		# By hand, before the clock starts: what vminit does for one NIC, minus DHCP.
		ip -n "$ctr" -batch - <<-EOF
			link set eth0 address 02:00:00:00:00:01
			link add link eth0 name vmtap0 address $GUEST_MAC type macvtap mode bridge
			link set vmtap0 up
			addr del $GUEST_IP/24 dev eth0
		EOF
	fi
	bg_start ip netns exec "$PEER" stdbuf -oL ping -n -D -i 0.02 "$GUEST_IP" >"$ping_log" 2>&1
	local ping_pid=$LAST_PID
	if [[ $kind == vminit* ]]; then
		ip -n "$PEER" -6 neigh replace "$NET6_GUEST" lladdr "$GUEST_MAC" dev eth0 nud permanent
		bg_start ip netns exec "$PEER" stdbuf -oL ping -6 -n -D -i 0.02 "$NET6_GUEST" >"$ping_log.6" 2>&1
		ping6_pid=$LAST_PID
	fi
	# The pingers have started (each has printed its header) before the clock does: their
	# start-up (ip netns exec, stdbuf, ping) is no part of the boot, and on two cores it took
	# CPU from vminit's setup, most at 1 NIC.
	wait_for 10 test -s "$ping_log" || die "$kind boot $r: ping did not start; see $ping_log"
	if [[ -n $ping6_pid ]]; then
		wait_for 10 test -s "$ping_log.6" || die "$kind boot $r: ping -6 did not start; see $ping_log.6"
	fi
	case $kind in
	vminit | vminit-old | vminit-tap | vminit-n* | distro)
		[[ $kind == vminit-tap ]] && vm_env+=(NET_DATAPATH=tap)
		local qemu=$QEMU
		[[ $kind == vminit-old ]] && qemu=$DEBIAN_QEMU
		bg_start ctr_exec "$ctr" AUTO_ATTACH=yes ACCEL=auto RAM_SIZE=$ram "${vm_env[@]}" \
			VMINIT_DISK="$disk_vminit" VMINIT_QEMU="$STANDIN" BENCH_REAL_QEMU="$qemu" \
			BENCH_QEMU_STAMP="$qs" -- \
			"$STAMP" exec "$t0" "$VMINIT" "${kargs[@]}" -append "$append_dhcp" \
			</dev/null > >("${STAMP_LINES[@]}" >"$console") 2> >("${STAMP_LINES[@]}" >"$RES/boot/$kind-r$r.log")
		;;
	floor | distro-floor)
		BENCH_PRE_EXEC='idx=$(cat /sys/class/net/vmtap0/ifindex)
			IFS=: read -r maj min </sys/class/net/vmtap0/macvtap/tap$idx/dev
			mknod /dev/tap$idx c $maj $min
			exec 3<>/dev/tap$idx' \
			bg_start ctr_exec "$ctr" -- \
			"$STAMP" exec "$t0" "$QEMU" -name guest=floor "${ACCEL_OPTS[@]}" -m "$ram" -smp 1 \
			-display none -monitor none -chardev stdio,id=console,signal=off -serial chardev:console \
			-drive "file=$disk_floor,if=virtio,format=qcow2" \
			-netdev "tap,id=net0,fd=3,vhost=$VHOST_USED" \
			-device "virtio-net-pci,netdev=net0,mac=$GUEST_MAC,host_mtu=1500" \
			"${kargs[@]}" -append "$append_static" \
			</dev/null > >("${STAMP_LINES[@]}" >"$console") 2>"$RES/boot/$kind-r$r.log"
		;;
	esac
	ctr_pid=$LAST_PID
	# The clock stops at the first reply after QEMU started (vminit: before that, the container
	# itself still answered at that address).
	local stamp_file=$qs
	[[ $kind == *floor ]] && stamp_file=$t0
	wait_for 30 test -s "$stamp_file" || die "$kind boot $r: QEMU did not start; see $RES/boot/$kind-r$r.log"
	read -r _ t_from _ <"$stamp_file"
	t_from=$((t_from / 1000))
	wait_for "$boot_wait" has_reply "$ping_log" "$t_from" ||
		die "$kind boot $r: the guest never answered ping; see $console"
	tping=$(first_reply_us "$ping_log" "$t_from")
	wait_for 300 grep -q "$ready" "$console" || die "$kind boot $r: the guest never got ready; see $console"
	if [[ -n $ping6_pid ]]; then
		if wait_for 120 has_reply "$ping_log.6" "$t_from"; then
			tping6=$(first_reply_us "$ping_log.6" "$t_from")
		else
			say "$kind boot $r: the guest never answered ping -6; see $console"
		fi
		wait_for 60 grep -q "BENCH-T net6" "$console" || say "$kind boot $r: no IPv6 address and route in the guest"
	fi
	pid1=$(pid1_of "$ctr_pid")

	if ((r == 1)) && [[ $kind == vminit* ]]; then
		if [[ $kind == vminit ]]; then
			local p comm rss
			{
				echo "vminit_rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid1/status")"
				echo "vminit_hwm_kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid1/status")"
				echo "container_procs=$(ns_procs "$pid1")"
				for p in $(cat /proc/"$pid1"/task/*/children); do
					comm=$(cat "/proc/$p/comm")
					rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$p/status")
					echo "child_${comm//[^a-zA-Z0-9]/_}_rss_kb=$rss"
				done
			} >"$RES/footprint.env"
		elif [[ $kind == vminit-n8 ]]; then
			echo "vminit_rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid1/status")" >"$RES/footprint-n8.env"
		fi
	fi
	# Throughput: test r each way in boot r, for r up to IPERF_REPS: the tests of the kinds compared
	# side by side (macvtap and tap, old and new QEMU, the floor) alternate as their boots do.
	if ((r <= IPERF_REPS)) && [[ $kind =~ ^(vminit|vminit-old|vminit-tap|floor)$ ]]; then
		IPERF_REPS=1 IPERF_FIRST=$r iperf_pair "$kind" "$PEER" "$GUEST_IP"
	fi

	# Stop as `docker stop` does: SIGTERM to PID 1 (vminit presses the ACPI power button).
	local t_stop=$SECONDS ms_start
	ms_start=$(date +%s%N)
	if [[ -n $pid1 ]]; then kill -TERM "$pid1" 2>/dev/null || true; fi
	while kill -0 "$ctr_pid" 2>/dev/null && ((SECONDS - t_stop < stop_wait)); do sleep 0.01; done
	if kill -0 "$ctr_pid" 2>/dev/null; then
		say "$kind boot $r: PID 1 still runs $stop_wait s after SIGTERM; killing it"
		kill_tree "$ctr_pid"
	else
		stop_ms=$((($(date +%s%N) - ms_start) / 1000000))
		wait "$ctr_pid" 2>/dev/null || true
	fi
	bg_stop "$ping_pid" 1
	[[ -n $ping6_pid ]] && bg_stop "$ping6_pid" 1
	read -r t0_mono t0_real <"$t0"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$r" "$t0_real" \
		"$(awk '{ print $2; exit }' "$stamp_file")" "$tping" "$stop_ms" "$t0_mono" \
		"$(awk '{ print $1; exit }' "$stamp_file")" "$(guest_times "$console" | tr ' ' '\t')" \
		"$(tr -d '\r' <"$console" | awk '$2 == "BENCH-T" && $3 == "net6" { print $4; exit }')" \
		"$tping6" >>"$RES/boot.tsv"
	ip -n "$PEER" neigh del "$GUEST_IP" dev eth0 2>/dev/null || true
	ip -n "$PEER" -6 neigh del "$NET6_GUEST" dev eth0 2>/dev/null || true
	ctr_delete "$ctr"
	[[ $kind == distro* ]] && rm -f "$disk_vminit"
	return 0
}

say "boot to network: $BOOT_RUNS boots each of vminit (macvtap, tap${OLD_KINDS[*]:+, macvtap on the old QEMU}) and the floor ($ACCEL_USED)"
[[ -n $OLD_QEMU_SKIPPED ]] && say "old QEMU beside new: skipped ($OLD_QEMU_SKIPPED)"
# Each QEMU runs once before the clocks do: its binary and libraries are then in the page cache,
# and the first boot on it does not pay for reading them from disk (which once made Debian's
# start 2.7 s slower here than in the next run).
for bin in "$QEMU" "$DEBIAN_QEMU"; do "$bin" -version >/dev/null; done
printf 'kind\trun\tt0_real_ns\tqemu_real_ns\tping_us\tstop_ms\tt0_mono_ns\tqemu_mono_ns' >"$RES/boot.tsv"
printf '\tg_init\tg_modules\tg_net\tg_ready\th_init_ns\th_modules_ns\th_net_ns\tg_net6\tping6_us\n' >>"$RES/boot.tsv"
for ((r = 1; r <= BOOT_RUNS; r++)); do
	# Old QEMU next to new: one boot of each per round, adjacent, their order alternating.
	kinds=(vminit "${OLD_KINDS[@]}" vminit-tap floor vminit-n2 vminit-n8)
	((r % 2)) || kinds=(vminit-n8 vminit-n2 floor vminit-tap "${OLD_KINDS[@]}" vminit)
	for kind in "${kinds[@]}"; do boot_run "$kind" "$r"; done
done

if [[ $BENCH_DISTRO != no ]]; then
	say "building the distribution guests (tests/distro/build-images.sh; cached)"
	DISTRO=$(bash "$REPO/tests/distro/build-images.sh" | tail -n 1)/networkd
	say "boot to network, Debian 12 + systemd-networkd: $DISTRO_RUNS boots each of vminit and the floor"
	for ((r = 1; r <= DISTRO_RUNS; r++)); do
		if ((r % 2)); then kinds=(distro distro-floor); else kinds=(distro-floor distro); fi
		for kind in "${kinds[@]}"; do boot_run "$kind" "$r"; done
	done
fi

# ---------------------------------------------------------------------------------------------
# 3. Hot-plug: a NIC connected while the guest runs
# ---------------------------------------------------------------------------------------------

PLUG_NET=1 # the second NIC comes from network 1, as the container's eth1
PLUG_IP=$(net_addr "$PLUG_NET" 2)
PLUG_MAC=$(ctr_mac "$PLUG_NET")
PLUG_PEER=${NS_PREFIX}p$PLUG_NET

# plug_run R: vminit boots the bench guest with one NIC; once the guest is ready, a second NIC
# is attached to the running container as `docker network connect` attaches it (ctr_attach),
# and the clock runs from that moment (a stamp taken right before the `ip` that makes the link)
# to the first ping reply from the guest at the new NIC's address. Appends a line to plug.tsv;
# report.py reads the rest from vminit's log and the console (both timestamped on arrival).
plug_run() {
	local r=$1 id ctr console log ping_log tplug ctr_pid ping_pid pid1 plug_mono plug_real
	local plugged_mono t_from tping stop_ms="" t_stop ms_start
	id=$((++CTR_SEQ))
	# Dual-stack, as section 2's vminit boots: the guest's wait for IPv6 on eth0 is over before
	# the clock starts, instead of running beside the measurement.
	ctr=$(ctr_create "$id" 1 ipv6)
	net_create "$PLUG_NET"
	console=$RES/plug/r$r.console log=$RES/plug/r$r.log ping_log=$RES/plug/r$r.ping
	tplug=$WORK/tplug.$id
	bg_start ctr_exec "$ctr" AUTO_ATTACH=yes ACCEL=auto RAM_SIZE=$RAM \
		VMINIT_DISK="$WORK/plug.qcow2" VMINIT_QEMU="$QEMU" -- \
		"$VMINIT" "${KERNEL_ARGS[@]}" -append "console=ttyS0 quiet bench_net=dhcp bench_hotplug=1" \
		</dev/null > >("${STAMP_LINES[@]}" >"$console") 2> >("${STAMP_LINES[@]}" >"$log")
	ctr_pid=$LAST_PID
	wait_for 300 grep -q BENCH-READY "$console" ||
		die "hot-plug run $r: the guest never got ready; see $console"
	wait_for 120 grep -q 'BENCH-T net6' "$console" ||
		die "hot-plug run $r: the guest never got its IPv6 on eth0; see $console"
	# The peer knows the new NIC's MAC (the container's), as in section 2: no ARP in the way.
	ip -n "$PLUG_PEER" neigh replace "$PLUG_IP" lladdr "$PLUG_MAC" dev eth0 nud permanent
	bg_start ip netns exec "$PLUG_PEER" stdbuf -oL ping -n -D -i 0.02 "$PLUG_IP" >"$ping_log" 2>&1
	ping_pid=$LAST_PID
	sleep 0.5 # the guest idle again after its boot, the ping loop running

	ctr_attach "$ctr" "$id" "$PLUG_NET" "$STAMP" exec "$tplug"
	read -r plug_mono plug_real <"$tplug"
	wait_for 60 grep -q -e 'plugged into the guest' -e 'stays with the container' "$log" ||
		die "hot-plug run $r: vminit did not take eth$PLUG_NET over; see $log"
	grep -q 'plugged into the guest' "$log" ||
		die "hot-plug run $r: vminit refused eth$PLUG_NET; see $log"
	# Until vminit took the NIC over, the container itself answered at its address: only replies
	# after the plug count.
	plugged_mono=$(awk '/plugged into the guest/ { print $1; exit }' "$log")
	t_from=$(((plugged_mono - plug_mono + plug_real) / 1000))
	wait_for 60 has_reply "$ping_log" "$t_from" ||
		die "hot-plug run $r: the guest never answered at $PLUG_IP; see $console"
	tping=$(first_reply_us "$ping_log" "$t_from")
	wait_for 30 grep -q 'BENCH-HOTPLUG added' "$console" ||
		die "hot-plug run $r: the guest did not report the NIC; see $console"

	# Stop as `docker stop` does, as in section 2.
	pid1=$(pid1_of "$ctr_pid")
	t_stop=$SECONDS
	ms_start=$(date +%s%N)
	if [[ -n $pid1 ]]; then kill -TERM "$pid1" 2>/dev/null || true; fi
	while kill -0 "$ctr_pid" 2>/dev/null && ((SECONDS - t_stop < 20)); do sleep 0.01; done
	if kill -0 "$ctr_pid" 2>/dev/null; then
		say "hot-plug run $r: PID 1 still runs 20 s after SIGTERM; killing it"
		kill_tree "$ctr_pid"
	else
		stop_ms=$((($(date +%s%N) - ms_start) / 1000000))
		wait "$ctr_pid" 2>/dev/null || true
	fi
	bg_stop "$ping_pid" 1
	printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$plug_mono" "$plug_real" "$tping" "$stop_ms" >>"$RES/plug.tsv"
	ip -n "$PLUG_PEER" neigh del "$PLUG_IP" dev eth0 2>/dev/null || true
	ctr_delete "$ctr"
}

say "hot-plug: $PLUG_RUNS boots, each with a NIC connected once the guest runs"
mkdir -p "$RES/plug"
qemu-img create -q -f qcow2 "$WORK/plug.qcow2" 64M
printf 'run\tplug_mono_ns\tplug_real_ns\tping_us\tstop_ms\n' >"$RES/plug.tsv"
for ((r = 1; r <= PLUG_RUNS; r++)); do plug_run "$r"; done

# ---------------------------------------------------------------------------------------------
# 4. Throughput: vminit's user mode (passt, and slirp where passt cannot sandbox itself), QEMU
#    user-mode networking, and plain veth (no guest) as the ceiling
# ---------------------------------------------------------------------------------------------

say "throughput: QEMU user-mode networking"
USERNS=${NS_PREFIX}u
ip netns add "$USERNS"
ip -n "$USERNS" link set lo up
bg_start ip netns exec "$USERNS" "$DEBIAN_QEMU" -name guest=usernet "${ACCEL_OPTS[@]}" -m $RAM -smp 1 \
	-display none -monitor none -chardev stdio,id=console,signal=off -serial chardev:console \
	-drive "file=$WORK/user.qcow2,if=virtio,format=qcow2" \
	-nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:15201-:5201 \
	"${KERNEL_ARGS[@]}" -append "console=ttyS0 quiet bench_net=static:10.0.2.15/24:10.0.2.2" \
	</dev/null >"$RES/boot/usernet.console" 2>&1
USER_QEMU=$LAST_PID
wait_for 180 grep -q BENCH-READY "$RES/boot/usernet.console" || die "the user-mode guest never got ready"
iperf_pair usernet "$USERNS" 127.0.0.1 15201
bg_stop "$USER_QEMU" 5

# user_mode_row NAME RELAY [WRAPPER...]: iperf3 through vminit's user mode (NET_DATAPATH=user),
# vminit started by WRAPPER; the log must say RELAY ("passt" or "slirp") was taken. The container
# keeps its address; the relay forwards the peer's connections to port 5201 of it to the
# guest's iperf3 server (USER_PORTS).
user_mode_row() {
	local name=$1 relay=$2 ctr pid1 user_ctr
	shift 2
	CTR_SEQ=$((CTR_SEQ + 1))
	ctr=$(ctr_create "$CTR_SEQ" 1)
	bg_start ctr_exec "$ctr" AUTO_ATTACH=yes ACCEL=auto RAM_SIZE=$RAM NET_DATAPATH=user USER_PORTS=5201 \
		VMINIT_DISK="$WORK/vminit.qcow2" VMINIT_QEMU="$QEMU" -- \
		"$@" "$VMINIT" "${KERNEL_ARGS[@]}" -append "console=ttyS0 quiet bench_net=dhcp" \
		</dev/null >"$RES/boot/$name.console" 2>"$RES/boot/$name.log"
	user_ctr=$LAST_PID
	wait_for 180 grep -q BENCH-READY "$RES/boot/$name.console" ||
		die "the user-mode ($relay) guest never got ready; see $RES/boot/$name.log"
	grep -q "user mode: .*$relay" "$RES/boot/$name.log" ||
		die "vminit did not take $relay; see $RES/boot/$name.log"
	iperf_pair "$name" "$PEER" "$GUEST_IP"
	pid1=$(pid1_of "$user_ctr")
	if [[ -n $pid1 ]]; then kill -TERM "$pid1" 2>/dev/null || true; fi
	bg_stop "$user_ctr" 20
	ctr_delete "$ctr"
}

say "throughput: vminit's user mode (passt)"
user_mode_row passt passt
say "throughput: vminit's user mode where passt cannot sandbox itself (slirp)"
# Docker's default seccomp profile refuses unshare(2); no_unshare applies that part of it, and
# vminit's probe takes QEMU's slirp, as with `docker run` and no flag at all.
user_mode_row slirp slirp "$NO_UNSHARE"

say "throughput: veth (no guest)"
CTR_SEQ=$((CTR_SEQ + 1))
ctr=$(ctr_create "$CTR_SEQ" 1)
bg_start ip netns exec "$ctr" iperf3 -s >/dev/null 2>&1
srv=$LAST_PID
wait_for 10 sh -c "ip netns exec '$ctr' ss -ltn | grep -q ':5201 '" || die "iperf3 server did not listen"
iperf_pair veth "$PEER" "$GUEST_IP"
bg_stop "$srv" 2
ctr_delete "$ctr"

# ---------------------------------------------------------------------------------------------
# 4b. Multiqueue: one queue pair per NIC against two, with two vCPUs
# ---------------------------------------------------------------------------------------------

# mq_run QUEUES R: vminit boots the bench guest with CPU_CORES=2 and NIC_QUEUES=QUEUES; iperf3
# with 4 parallel streams each way, then short connections (bench/connrate.py, 4 workers)
# from the peer to the guest's httpd. Appends a line to mq.tsv; the iperf3 JSON goes to
# iperf/mqQUEUES-up|down-R.json.
mq_run() {
	local q=$1 r=$2 id ctr console ctr_pid pid1 conn t_stop
	id=$((++CTR_SEQ))
	ctr=$(ctr_create "$id" 1)
	console=$RES/mq/q$q-r$r.console
	bg_start ctr_exec "$ctr" AUTO_ATTACH=yes ACCEL=auto RAM_SIZE=$RAM CPU_CORES=2 NIC_QUEUES="$q" \
		VMINIT_DISK="$WORK/mq.qcow2" VMINIT_QEMU="$QEMU" -- \
		"$VMINIT" "${KERNEL_ARGS[@]}" -append "console=ttyS0 quiet bench_net=dhcp" \
		</dev/null >"$console" 2>"$RES/mq/q$q-r$r.log"
	ctr_pid=$LAST_PID
	wait_for 300 grep -q BENCH-READY "$console" ||
		die "multiqueue run q$q r$r: the guest never got ready; see $console"
	IPERF_REPS=1 IPERF_FIRST=$r iperf_pair "mq$q" "$PEER" "$GUEST_IP" 5201 4
	conn=$(timeout $((IPERF_SECONDS + 30)) ip netns exec "$PEER" "$PY" "$BENCH/connrate.py" \
		"$GUEST_IP" 8080 "$IPERF_SECONDS" 4 || echo "rate= failed=")
	printf '%s\t%s\t%s\t%s\n' "$q" "$r" "$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' <<<"$conn")" \
		"$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$conn")" >>"$RES/mq.tsv"
	pid1=$(pid1_of "$ctr_pid")
	t_stop=$SECONDS
	if [[ -n $pid1 ]]; then kill -TERM "$pid1" 2>/dev/null || true; fi
	while kill -0 "$ctr_pid" 2>/dev/null && ((SECONDS - t_stop < 20)); do sleep 0.05; done
	kill -0 "$ctr_pid" 2>/dev/null && kill_tree "$ctr_pid"
	wait "$ctr_pid" 2>/dev/null || true
	ctr_delete "$ctr"
}

MQ_RUNS=$([[ $MODE == quick ]] && echo 1 || echo 3)
say "multiqueue: $MQ_RUNS boots each with 1 and 2 queues per NIC (CPU_CORES=2)"
mkdir -p "$RES/mq"
qemu-img create -q -f qcow2 "$WORK/mq.qcow2" 64M
printf 'queues\trun\tconn_per_s\tconn_failed\n' >"$RES/mq.tsv"
for ((r = 1; r <= MQ_RUNS; r++)); do
	if ((r % 2)); then qs=(1 2); else qs=(2 1); fi
	for q in "${qs[@]}"; do mq_run "$q" "$r"; done
done

# ---------------------------------------------------------------------------------------------
# 5. The machine, the binary, the image; then the report
# ---------------------------------------------------------------------------------------------

image_size() {
	if ! command -v docker >/dev/null; then
		echo "not built (no docker CLI on this machine)"
	elif ! timeout 5 docker info >/dev/null 2>&1; then
		echo "not measured (no Docker daemon answering; scripts/dockerd.sh start, then image/build.sh)"
	elif size=$(timeout 10 docker image inspect vminit:latest --format '{{.Size}}' 2>/dev/null); then
		echo "$size"
	else
		echo "not built (no image vminit:latest; image/build.sh builds it)"
	fi
}

rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock build.rs 2>/dev/null) ]]; then
	rev+=" + uncommitted changes in src/"
fi
{
	echo "mode=$MODE"
	echo "setup_runs=$SETUP_RUNS"
	echo "boot_runs=$BOOT_RUNS"
	echo "plug_runs=$PLUG_RUNS"
	echo "distro_runs=$([[ $BENCH_DISTRO != no ]] && echo "$DISTRO_RUNS" || echo 0)"
	echo "iperf_seconds=$IPERF_SECONDS"
	echo "iperf_reps=$IPERF_REPS"
	echo "mq_runs=$MQ_RUNS"
	echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
	echo "cores=$(nproc)"
	echo "kernel=$(uname -r)"
	echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
	echo "qemu=$("$QEMU" --version | head -n 1)"
	echo "qemu_path=$QEMU"
	echo "qemu_old=$("$DEBIAN_QEMU" --version | head -n 1)"
	echo "qemu_old_path=$DEBIAN_QEMU"
	echo "qemu_old_skipped=$OLD_QEMU_SKIPPED"
	echo "dnsmasq=$("$DNSMASQ" --version | head -n 1) ($DNSMASQ)"
	echo "accel=$ACCEL_USED"
	echo "vhost=$VHOST_USED"
	echo "kvm_node=${BENCH_DEV_KVM:+yes}"
	echo "revision=$rev"
	echo "binary_sha256=$(sha256sum "$VMINIT" | cut -c1-12)"
	echo "binary_bytes=$(stat -c %s "$VMINIT")"
	echo "binary_stripped=$(file -b "$VMINIT" 2>/dev/null | grep -q 'not stripped' && echo no || echo yes)"
	echo "image=$(image_size)"
	echo "guest_kernel=$(file -b "$GUEST/vmlinuz" 2>/dev/null | sed -n 's/.*version \([^ ]*\).*/\1/p')"
	echo "guest_initramfs_bytes=$(stat -c %s "$GUEST/initramfs.cpio.gz")"
	echo "ram=$RAM"
	echo "load_start=$LOAD_START"
	echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "elapsed_s=$SECONDS"
} >"$RES/machine.env"

REPORT=${BENCH_REPORT:-$REPO/BENCHMARKS.md}
PLOT=${BENCH_PLOT:-$BENCH/benchmarks.png}
say "writing $REPORT and $PLOT"
"$PY" "$BENCH/report.py" "$RES" "$REPORT" "$PLOT"
say "done: $REPORT"
