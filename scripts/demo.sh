#!/usr/bin/env bash
# scripts/demo.sh [--keep | --clean] — the vminit demo, from a fresh Debian machine (as root).
#
#   1. installs what is missing: docker.io, qemu-system-x86, qemu-utils, dnsmasq-base,
#      busybox-static, linux-image-cloud-amd64, cpio (apt-get), and the Rust musl target;
#   2. starts a Docker daemon if none answers (scripts/dockerd.sh);
#   3. builds the image vminit:latest (image/build.sh: the first run also builds QEMU and dnsmasq
#      from Debian's source packages, minutes; later runs take them from their caches) and a
#      small test guest (tests/guest/build-guest.sh: Debian's cloud kernel and a busybox initramfs);
#   4. creates two Docker networks, creates the VM container on the first, connects it to the
#      second, starts it, and waits for the guest's report: the guest got the container's MACs
#      and IPs on both networks by DHCP;
#   5. stops the container (a clean ACPI poweroff), removes it and the networks, and stops the
#      daemon if step 2 started it.
#
#   --keep   leave the VM running instead of step 5: `docker attach vminit-demo` is its console
#            (detach with Ctrl-P Ctrl-Q); `scripts/demo.sh --clean` removes it later.
#   --clean  only remove what an earlier --keep left (container, networks), then exit.
#
# Safe to rerun: it first removes what an earlier run left (only objects carrying its label).
# The networks take free /24s of 10.232.0.0/16, checked against the host's routes; no traffic
# leaves them.
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=$(realpath -m -- "${CARGO_TARGET_DIR:-$REPO/target}")
DEMO_DIR=$TARGET_DIR/demo
GUEST_DIR=$TARGET_DIR/guest
IMAGE=vminit:latest
VM=vminit-demo
NETS=(vminit-demo-a vminit-demo-b)
LABEL=io.vminit.demo=1
BOOT_WAIT=120 # seconds for the guest to report (a few under KVM or TCG)
PACKAGES=(docker.io qemu-system-x86 qemu-utils dnsmasq-base busybox-static linux-image-cloud-amd64 cpio)

say() { printf '\n== %s\n' "$*" >&2; }
die() {
    printf 'demo: error: %s\n' "$*" >&2
    exit 1
}

keep=no
clean_only=no
case ${1:-} in
"") ;;
--keep) keep=yes ;;
--clean) clean_only=yes ;;
*)
    echo "usage: $0 [--keep | --clean]" >&2
    exit 2
    ;;
esac
[[ $# -le 1 ]] || die "one option at most"
[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages, starts dockerd, creates macvtaps)"

# --- removing an earlier run's objects (only ours: they carry $LABEL) ---------------------------

has_label() { # KIND NAME: true when the Docker object exists and carries our label
    local labels=.Labels
    [[ $1 == container ]] && labels=.Config.Labels
    [[ $(docker "$1" inspect -f "{{index $labels \"io.vminit.demo\"}}" "$2" 2>/dev/null || true) == 1 ]]
}
exists() { docker "$1" inspect "$2" >/dev/null 2>&1; }

remove_demo() {
    if exists container "$VM"; then
        has_label container "$VM" || die "a container named $VM exists that this script did not make; remove or rename it"
        if [[ $(docker container inspect -f '{{.State.Running}}' "$VM") == true ]]; then
            echo "stopping $VM (ACPI power button)" >&2
            timeout 60 docker stop "$VM" >/dev/null
        fi
        docker rm -f "$VM" >/dev/null
    fi
    for net in "${NETS[@]}"; do
        if exists network "$net"; then
            has_label network "$net" || die "a network named $net exists that this script did not make; remove or rename it"
            docker network rm "$net" >/dev/null
        fi
    done
}

if [[ $clean_only == yes ]]; then
    timeout 10 docker info >/dev/null 2>&1 || die "no Docker daemon answers; nothing to clean"
    remove_demo
    echo "demo: removed" >&2
    exit 0
fi

# --- 1. packages and the Rust target -------------------------------------------------------------

say "packages"
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    command -v apt-get >/dev/null || die "missing packages ${missing[*]}, and no apt-get (Debian or Ubuntu needed)"
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "all installed: ${PACKAGES[*]}" >&2
fi
command -v cargo >/dev/null ||
    die "cargo not found: install Rust first (https://rustup.rs: curl ... | sh, then open a new shell), and rerun"
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    command -v rustup >/dev/null || die "the Rust target x86_64-unknown-linux-musl is missing and rustup is not installed to add it"
    rustup target add x86_64-unknown-linux-musl
fi

# --- 2. a Docker daemon ----------------------------------------------------------------------------

say "Docker daemon"
started_dockerd=no
if ! timeout 10 docker info >/dev/null 2>&1; then
    started_dockerd=yes
fi
"$REPO/scripts/dockerd.sh" start

finish() {
    local rc=$?
    if [[ $rc -ne 0 ]] && exists container "$VM" && has_label container "$VM"; then
        echo "--- docker logs $VM (last 40 lines)" >&2
        docker logs "$VM" 2>&1 | tr -d '\r' | tail -n 40 >&2 || true
    fi
    if [[ $keep == no || $rc -ne 0 ]]; then
        remove_demo || true
        if [[ $started_dockerd == yes ]]; then
            "$REPO/scripts/dockerd.sh" stop || true
        fi
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

remove_demo # whatever an earlier run (or an earlier --keep) left

# --- 3. the image and the guest -------------------------------------------------------------------

mkdir -p "$DEMO_DIR"
say "building the image $IMAGE (image/build.sh, the first time with QEMU from Debian's source: minutes; full log in $DEMO_DIR/build.log)"
if ! "$REPO/image/build.sh" "$IMAGE" >"$DEMO_DIR/build.log" 2>&1; then
    tail -n 30 "$DEMO_DIR/build.log" >&2
    die "image/build.sh failed; full log: $DEMO_DIR/build.log"
fi
grep -E '^build: ' "$DEMO_DIR/build.log" >&2 || true

say "building the demo guest (tests/guest/build-guest.sh $GUEST_DIR)"
sh "$REPO/tests/guest/build-guest.sh" "$GUEST_DIR"
rm -f "$DEMO_DIR/image.qcow2"
qemu-img create -q -f qcow2 "$DEMO_DIR/image.qcow2" 64M
echo "guest: $GUEST_DIR/vmlinuz + initramfs.cpio.gz; disk: $DEMO_DIR/image.qcow2" >&2

# --- 4. two networks, the VM container on both ------------------------------------------------------

# True when 10.232.N.0/24 overlaps a route of the host (the default route aside).
route_overlaps() {
    local n=$1 dest addr len a b c d net mask
    while read -r dest _; do
        case $dest in local | broadcast | unicast | unreachable | prohibit | blackhole | throw | multicast | anycast)
            continue ;; # local-table entries are host addresses: covered by their prefix routes
        esac
        [[ $dest == default ]] && continue
        addr=${dest%/*}
        len=32
        [[ $dest == */* ]] && len=${dest#*/}
        IFS=. read -r a b c d <<<"$addr" || continue
        [[ -n $d ]] || continue
        net=$(((a << 24) | (b << 16) | (c << 8) | d))
        ((len < 24)) || len=24
        mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
        if (((net & mask) == (((10 << 24) | (232 << 16) | (n << 8)) & mask))); then
            return 0
        fi
    done < <(ip -4 route show table all)
    return 1
}

say "two Docker networks"
n=1
declare -A SUBNET=()
for net in "${NETS[@]}"; do
    while :; do
        ((n <= 254)) || die "no free /24 in 10.232.0.0/16"
        if route_overlaps "$n"; then
            n=$((n + 1))
            continue
        fi
        if docker network create --driver bridge --subnet "10.232.$n.0/24" --label "$LABEL" "$net" >/dev/null 2>"$DEMO_DIR/net.err"; then
            SUBNET[$net]=10.232.$n.0/24
            n=$((n + 1))
            break
        fi
        grep -q overlap "$DEMO_DIR/net.err" || die "docker network create $net: $(cat "$DEMO_DIR/net.err")"
        n=$((n + 1))
    done
    echo "$net: ${SUBNET[$net]}" >&2
done

major=$(awk '$2 == "macvtap" { print $1 }' /proc/devices)
if [[ -z $major ]]; then
    modprobe macvtap 2>/dev/null || true
    major=$(awk '$2 == "macvtap" { print $1 }' /proc/devices)
fi
[[ -n $major ]] || die "the macvtap driver is not available (modprobe macvtap failed)"
flags=(--cap-add NET_ADMIN --device-cgroup-rule "c $major:* rwm")
[[ -c /dev/kvm ]] && flags+=(--device /dev/kvm)
[[ -c /dev/vhost-net ]] && flags+=(--device /dev/vhost-net)

say "the VM container: docker create --network ${NETS[0]}, docker network connect ${NETS[1]}, docker start"
set -x
docker create --name "$VM" --label "$LABEL" -it --network "${NETS[0]}" "${flags[@]}" \
    -v "$DEMO_DIR:/image" -v "$GUEST_DIR:/guest:ro" -e AUTO_ATTACH=yes -e RAM_SIZE=256M \
    "$IMAGE" -kernel /guest/vmlinuz -initrd /guest/initramfs.cpio.gz -append 'console=ttyS0 quiet' >/dev/null
docker network connect "${NETS[1]}" "$VM"
docker start "$VM" >/dev/null
{ set +x; } 2>/dev/null

say "waiting for the guest (up to ${BOOT_WAIT}s)"
deadline=$((SECONDS + BOOT_WAIT))
# (The logs are read whole before grep: with pipefail, grep -q closing the pipe early would
# fail the pipeline.)
until logs=$(docker logs "$VM" 2>&1) && grep -q 'GUEST-REPORT done' <<<"$logs"; do
    [[ $(docker inspect -f '{{.State.Running}}' "$VM") == true ]] || die "the container stopped"
    ((SECONDS < deadline)) || die "no guest report within ${BOOT_WAIT}s"
    sleep 0.5
done
logs=$(docker logs "$VM" 2>&1 | tr -d '\r')
grep -E '^vminit: (accelerator|warning|QEMU running)' <<<"$logs" >&2 || true

say "the container's networks (docker inspect)"
inspect=$(docker inspect -f '{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.IPAddress}}/{{$e.IPPrefixLen}} {{$e.MacAddress}}{{"\n"}}{{end}}' "$VM")
printf '%s\n' "$inspect" | sed '/^$/d'

say "the guest's report (its console)"
report=$(grep '^GUEST-REPORT ' <<<"$logs")
printf '%s\n' "$report"

# The point of the demo: each of the container's addresses is on a guest NIC with the same MAC.
ok=yes
while read -r net cidr mac; do
    [[ -n $net ]] || continue
    if grep -q "^GUEST-REPORT nic [^ ]* mac=$mac ip=$cidr " <<<"$report"; then
        echo "OK: the guest holds $cidr with MAC $mac (the container's on $net)"
    else
        echo "MISMATCH: no guest NIC with $cidr and MAC $mac (the container's on $net)"
        ok=no
    fi
done <<<"$inspect"
[[ $ok == yes ]] || die "the guest did not get the container's addresses"

if [[ $keep == yes ]]; then
    cat <<EOF

The VM runs. Its console:    docker attach $VM     (detach: Ctrl-P Ctrl-Q)
Its logs:                    docker logs $VM
Stop and remove everything:  $0 --clean
EOF
    exit 0
fi

say "docker stop $VM (ACPI power button, clean poweroff)"
timeout 60 docker stop "$VM" >/dev/null
docker logs "$VM" 2>&1 | tr -d '\r' | grep -E 'GUEST-POWERBUTTON|^vminit: (QEMU|exit)' || true
echo "exit code: $(docker inspect -f '{{.State.ExitCode}}' "$VM")"
say "cleaning up (container, networks)"
