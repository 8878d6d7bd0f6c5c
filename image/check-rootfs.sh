#!/usr/bin/env bash
# image/check-rootfs.sh ROOTFS [KERNEL] — prove that the rootfs built by image/build-rootfs.sh
# is complete and holds nothing unused, by running its programs in it under strace.
#
# In private mount, network and PID namespaces (nothing leaks to the host; the only network is a
# veth pair and lo inside it), with /dev, /proc and /sys mounted into ROOTFS, it runs
# chroot'ed:
#   1. qemu-system-x86_64 --version and dnsmasq --version; qemu-img creating and growing a
#      qcow2 as vminit does (DISK_SIZE);
#   2. dnsmasq as vminit runs it: foreground, DNS and DHCP on one interface, dropping to nobody;
#   3. QEMU booting KERNEL under TCG for a few seconds with vminit's fixed arguments and a
#      virtio-net-pci NIC (default `pc` machine), until the kernel prints its banner;
#   4. QEMU with the graphical console on (std VGA, USB tablet, VNC on a Unix socket with a
#      password) for three seconds (it only has to start);
#   5. QEMU with an e1000e NIC and an IDE CD-ROM (NIC_MODEL=e1000e, BOOT_ISO) for three seconds;
#      qemu-img expanding OVMF's compressed variables templates, QEMU under OVMF (BOOT_MODE=uefi),
#      and with Secure Boot on q35 and a TPM from swtpm (BOOT_MODE=secure, TPM=yes), four seconds
#      each;
#   6. QEMU under KVM for two seconds when /dev/kvm exists (it only has to start);
#   7. passt --version (passt's sandbox makes a user namespace, which the kernel refuses inside
#      a chroot: its full start is proven by tests/ns/user.rs and the Docker tests).
# It fails on any error of those (a missing firmware or library among them), and on any file of
# the rootfs that no run opened (except /vminit, which is not exercised here). It prints the paths
# the programs looked for and did not find: they are optional, and listed for the record.
#
# Needs root, strace, unshare, ip. KERNEL defaults to the newest /boot/vmlinuz-*.
# CHECK_ROOTFS_KEEP=1 keeps the strace logs and outputs (their dir is printed).
set -euo pipefail

say() { printf 'check-rootfs: %s\n' "$*" >&2; }
die() {
    say "FAIL: $*"
    exit 1
}

[[ $# -ge 1 && $# -le 2 ]] || {
    echo "usage: $0 ROOTFS [KERNEL]" >&2
    exit 2
}
ROOTFS=$(realpath -e -- "$1")
KERNEL=${2:-$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)}
[[ -r $KERNEL ]] || die "no readable kernel (pass one as KERNEL)"
[[ -x $ROOTFS/usr/bin/qemu-system-x86_64 && -x $ROOTFS/usr/sbin/dnsmasq && -x $ROOTFS/usr/bin/passt ]] ||
    die "$ROOTFS does not look like a vminit rootfs"
for tool in strace unshare ip timeout; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $(id -u) -eq 0 ]] || die "must run as root (chroot, namespaces, mounts)"

WORK=$(mktemp -d)
if [[ -n ${CHECK_ROOTFS_KEEP:-} ]]; then
    say "keeping logs in $WORK"
else
    trap 'rm -rf -- "$WORK"' EXIT
fi
cp -- "$KERNEL" "$WORK/vmlinuz"

# The runs, inside the namespaces. Each strace log goes to $WORK/trace.<run>.<tid> (-ff); each
# program's output to $WORK/<run>.out.
cat >"$WORK/runs.sh" <<'EOF'
set -euo pipefail
ROOTFS=$1 WORK=$2
# Private propagation: none of these mounts is seen outside this namespace, and they all vanish
# with it.
mount --make-rprivate /
mount --rbind /dev "$ROOTFS/dev"
mount -t proc proc "$ROOTFS/proc" # this PID namespace's
mount --rbind -o ro /sys "$ROOTFS/sys"
mount -t tmpfs -o size=16m tmpfs "$ROOTFS/run"
mount -t tmpfs -o size=16m tmpfs "$ROOTFS/tmp"
mount --bind "$WORK" "$ROOTFS/image"
# Network of this namespace only: lo, and a veth pair for dnsmasq's DHCP.
ip link set lo up
ip link add d0 type veth peer name d1
ip addr add 10.99.0.1/24 dev d0
ip link set d0 up
ip link set d1 up

# trace RUN SECONDS CMD...: run CMD chroot'ed under strace for at most SECONDS (0: no limit),
# output to $WORK/RUN.out. On timeout, strace passes the SIGTERM on to CMD; the PID namespace
# this runs in kills anything left when it ends.
trace() {
    local run=$1 limit=$2
    shift 2
    # A clean environment, as Docker gives (PATH is Docker's default).
    local cmd=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        strace -ff -qq -e trace=%file,%creds -o "$WORK/trace.$run" chroot "$ROOTFS" "$@")
    if ((limit > 0)); then
        cmd=(timeout -s TERM -k 3 "$limit" "${cmd[@]}")
    fi
    # A failing program is judged afterwards from its output; the other runs still happen.
    "${cmd[@]}" >"$WORK/$run.out" 2>&1 || true
}

trace qemu-version 0 /usr/bin/qemu-system-x86_64 --version
trace dnsmasq-version 0 /usr/sbin/dnsmasq --version
# What vminit does with DISK_SIZE (src/vm/machine.rs): create a sparse qcow2, then grow it.
trace qemu-img-create 10 /usr/bin/qemu-img create -q -f qcow2 /image/check.qcow2 67108864
trace qemu-img-resize 10 /usr/bin/qemu-img resize -q \
    'json:{"driver":"qcow2","file":{"driver":"file","filename":"/image/check.qcow2"},"backing":null}' 134217728
# What vminit does with dnsmasq: foreground, its own pid and lease files, one interface.
trace dnsmasq-run 2 /usr/sbin/dnsmasq --keep-in-foreground --log-facility=- \
    --conf-file=/dev/null --no-resolv --no-hosts --server=127.0.0.1#5353 \
    --interface=d0 --bind-interfaces --except-interface=lo \
    --dhcp-range=10.99.0.10,10.99.0.10,255.255.255.0,infinite --dhcp-broadcast \
    --dhcp-leasefile=/run/dnsmasq.leases --pid-file=/run/dnsmasq.pid
# vminit's fixed QEMU arguments (src/vm/qemu.rs), TCG, a virtio-net-pci NIC on QEMU's user
# networking (slirp: user mode's relay where passt cannot sandbox itself), direct kernel boot.
trace qemu-tcg 6 /usr/bin/qemu-system-x86_64 -accel tcg -m 256M -smp 1 \
    -display none -monitor none -chardev stdio,id=console,signal=off -serial chardev:console \
    -qmp unix:/run/qmp.sock,server=on,wait=off -netdev user,id=n0,ipv6=off,net=10.0.2.0/29 -device virtio-net-pci,netdev=n0 \
    -kernel /image/vmlinuz -append 'console=ttyS0 panic=-1' -no-reboot </dev/null
# The graphical console (DISPLAY=vnc, src/vm/display.rs): std VGA, USB tablet, VNC on a Unix
# socket with a password (VNC_PASSWORD_FILE: QEMU refuses to start without a DES cipher).
echo check >"$ROOTFS/run/vnc.password"
trace qemu-vnc 3 /usr/bin/qemu-system-x86_64 -accel tcg -m 64M -smp 1 \
    -display none -vga std -usb -device usb-tablet -object secret,id=vncpassword,file=/run/vnc.password \
    -vnc unix:/run/vnc.sock,password-secret=vncpassword \
    -monitor none -serial none -nic none -no-reboot </dev/null
# NIC_MODEL=e1000e and BOOT_ISO (an empty CD-ROM drive here): their devices and ROMs.
trace qemu-e1000e 3 /usr/bin/qemu-system-x86_64 -accel tcg -m 64M -smp 1 \
    -display none -monitor none -serial none -netdev hubport,id=n0,hubid=0 -device e1000e,netdev=n0 \
    -drive if=ide,media=cdrom,readonly=on -boot order=c,once=d -no-reboot </dev/null
# BOOT_MODE=uefi and secure (src/vm/qemu.rs): OVMF's code read-only from the image's compressed
# qcow2, its variables expanded from their template into raw flash by qemu-img, as vminit does on
# the first UEFI start (src/vm/provision.rs); TPM=yes: swtpm as src/vm/tpm.rs starts it, QEMU on
# its socket; a PCIe root port, where a NIC hot-plugged under q35 goes.
trace qemu-img-vars 10 /usr/bin/qemu-img convert -q -f qcow2 -O raw /usr/share/OVMF/OVMF_VARS_4M.qcow2 /run/vars.fd
trace qemu-img-vars-ms 10 /usr/bin/qemu-img convert -q -f qcow2 -O raw /usr/share/OVMF/OVMF_VARS_4M.ms.qcow2 /run/vars-ms.fd
trace qemu-uefi 4 /usr/bin/qemu-system-x86_64 -accel tcg -m 256M -smp 1 \
    -display none -monitor none -serial none -nic none -no-reboot \
    -drive if=pflash,format=qcow2,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.qcow2 \
    -drive if=pflash,format=raw,unit=1,file=/run/vars.fd </dev/null
mkdir -m 0700 "$ROOTFS/run/tpm"
trace swtpm 10 /usr/bin/swtpm socket --tpm2 --tpmstate dir=/run/tpm,mode=0600 \
    --ctrl type=unixio,path=/run/swtpm.sock,mode=0600 --terminate &
for _ in $(seq 50); do [[ -S $ROOTFS/run/swtpm.sock ]] && break; sleep 0.1; done
trace qemu-secure 4 /usr/bin/qemu-system-x86_64 -machine q35,smm=on \
    -global driver=cfi.pflash01,property=secure,value=on -accel tcg -m 256M -smp 1 \
    -display none -monitor none -serial none -nic none -no-reboot \
    -drive if=pflash,format=qcow2,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.qcow2 \
    -drive if=pflash,format=raw,unit=1,file=/run/vars-ms.fd \
    -chardev socket,id=tpm,path=/run/swtpm.sock -tpmdev emulator,id=tpm0,chardev=tpm \
    -device tpm-tis,tpmdev=tpm0 -device pcie-root-port,id=port0,chassis=1,io-reserve=0 </dev/null
wait
# passt and, on a CPU with AVX2, passt.avx2, which passt execs in its place.
trace passt-version 0 /usr/bin/passt --version
if [[ -c /dev/kvm ]]; then
    trace qemu-kvm 2 /usr/bin/qemu-system-x86_64 -accel kvm -m 256M -smp 1 \
        -display none -monitor none -chardev stdio,id=console,signal=off \
        -serial chardev:console -netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0 -no-reboot </dev/null
fi
EOF

say "running QEMU and dnsmasq in $ROOTFS (private mount, network and PID namespaces)"
failed=0
fail() {
    say "FAIL: $*"
    failed=1
}
unshare --mount --net --pid --fork --propagation private bash "$WORK/runs.sh" "$ROOTFS" "$WORK" ||
    die "setting up the namespaces failed"

show() { sed 's/^/    | /' "$WORK/$1.out" | head -n "${2:-5}" >&2; }

grep -q '^QEMU emulator version' "$WORK/qemu-version.out" || {
    fail "qemu --version"
    show qemu-version 20
}
grep -q '^Dnsmasq version' "$WORK/dnsmasq-version.out" || {
    fail "dnsmasq --version"
    show dnsmasq-version 20
}
if grep -qiE 'fail|error|unknown user|cannot|illegal' "$WORK/dnsmasq-run.out" ||
    ! grep -q 'DHCP, IP range 10.99.0.10' "$WORK/dnsmasq-run.out"; then
    fail "dnsmasq did not start cleanly"
    show dnsmasq-run 20
fi
if ! cat "$WORK"/trace.dnsmasq-run.* | grep -qE '^set(res)?uid\((-1, )?65534(, -1)?\) += 0'; then
    fail "dnsmasq did not drop privileges to nobody (65534)"
fi
grep -q '^passt ' "$WORK/passt-version.out" || {
    fail "passt --version"
    show passt-version 20
}
# QEMU's own messages (the rest of its output is the guest's serial console), less warnings and
# the SIGTERM that ended the run. They include "qemu: could not load PC BIOS ...",
# "failed to find romfile ..." and, not fatal, "Could not open option rom ...".
qemu_complaints() {
    grep -E '^(qemu-system-x86_64|qemu): |^Could not open option rom' "$WORK/$1.out" |
        grep -vE 'terminating on signal 15|warning:' || true
}
if [[ -n $(qemu_complaints qemu-tcg) ]]; then
    fail "QEMU (tcg) complained:"
    qemu_complaints qemu-tcg | head >&2
fi
grep -q 'Linux version' "$WORK/qemu-tcg.out" || {
    fail "the kernel did not start under TCG within 6 s"
    show qemu-tcg 20
}
if [[ -n $(qemu_complaints qemu-vnc) ]]; then
    fail "QEMU (vnc) complained:"
    qemu_complaints qemu-vnc | head >&2
fi
for run in qemu-uefi qemu-secure; do
    if [[ -n $(qemu_complaints $run) ]]; then
        fail "QEMU ($run) complained:"
        qemu_complaints $run | head >&2
    fi
done
if [[ -s $WORK/swtpm.out ]]; then
    fail "swtpm complained:"
    show swtpm 5
fi
if [[ -n $(qemu_complaints qemu-e1000e) ]]; then
    fail "QEMU (e1000e, CD-ROM) complained:"
    qemu_complaints qemu-e1000e | head >&2
fi
if [[ -s $WORK/qemu-img-create.out || -s $WORK/qemu-img-resize.out ]] ||
    ! grep -q '"virtual-size": 134217728' <(qemu-img info --output=json "$WORK/check.qcow2" 2>&1); then
    fail "qemu-img did not create and grow a qcow2:"
    show qemu-img-create 5
    show qemu-img-resize 5
fi
if [[ -s $WORK/qemu-img-vars.out || -s $WORK/qemu-img-vars-ms.out ]]; then
    fail "qemu-img did not expand OVMF's variables templates into raw flash:"
    show qemu-img-vars 5
    show qemu-img-vars-ms 5
fi
if [[ -e $WORK/qemu-kvm.out && -n $(qemu_complaints qemu-kvm) ]]; then
    fail "QEMU (kvm) complained:"
    qemu_complaints qemu-kvm | head >&2
fi

# Paths the programs touched inside the chroot: successful calls count as used, failed ones are
# printed. In the log of chroot(1) itself, only lines after its chroot() are inside the rootfs.
# Paths are made canonical lexically (the rootfs has no symlinks): /usr/bin/../share -> /usr/share.
{
    for f in "$WORK"/trace.*; do
        if grep -q '^chroot(' "$f"; then sed -n '/^chroot(/,$p' "$f" | tail -n +2; else cat "$f"; fi
    done
} >"$WORK/inside.log"

sed -nE 's/^[a-z0-9_]+\((AT_FDCWD, )?"(\/[^"]*)".*\) = [0-9].*$/\2/p' "$WORK/inside.log" |
    xargs -r realpath -m -s -- | sort -u >"$WORK/used"
sed -nE 's/^[a-z0-9_]+\((AT_FDCWD, )?"(\/[^"]*)".*\) = -1 (E[A-Z]+).*$/\2 \3/p' "$WORK/inside.log" |
    grep -vE '/(glibc-hwcaps|tls|haswell|x86_64)(/| )' | sort -u >"$WORK/missing"
# The ELF interpreter is opened by the kernel at execve, not by the program.
grep -qE '^execve\(.*\) = 0' "$WORK/inside.log" && echo /lib64/ld-linux-x86-64.so.2 >>"$WORK/used"

# passt.avx2 runs only on CPUs with AVX2.
not_run=/vminit
grep -qw avx2 /proc/cpuinfo || not_run+=$'\n/usr/bin/passt.avx2'
unused=$(cd "$ROOTFS" && find . -type f | sed 's/^\.//' | sort | comm -23 - <(sort -u "$WORK/used") | grep -vxF "$not_run" || true)
if [[ -n $unused ]]; then
    fail "files in the rootfs that no run opened:"
    sed 's/^/    /' <<<"$unused" >&2
fi

say "looked for and not found (optional; for the record):"
sed 's/^/    /' "$WORK/missing" >&2
say "firmware and modules QEMU opened:"
grep -E '^/usr/(share|lib/ipxe|lib/x86_64-linux-gnu/qemu)/' "$WORK/used" | sed 's/^/    /' >&2

((failed == 0)) || exit 1
say "OK: every file of the rootfs was used (except /vminit), QEMU booted the kernel, qemu-img made and grew a disk, dnsmasq ran as nobody, passt ran"
