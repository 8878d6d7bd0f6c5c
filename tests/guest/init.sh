#!/bin/sh
# /init of the vminit test guest: configures every NIC by DHCP (IPv4) and by router advertisements
# and DHCPv6 (IPv6), prints a machine-readable report on the serial console, obeys the ACPI power
# button, then runs a shell on the console.
#
# Console protocol (every line starts at column 0; tests match these prefixes):
#   GUEST-REPORT nic NAME mac=MAC ip=ADDR/PREFIX[,ADDR/PREFIX...]|none mtu=MTU
#   GUEST-REPORT dhcp NAME none | ip=.. mask=.. router=.. staticroutes=.. mtu=.. dns=.. domain=..
#                search=.. hostname=.. lease=.. serverid=..   (raw DHCP facts, lists comma-joined)
#   GUEST-REPORT route LINE          (each line of `ip -4 route`, whitespace normalised)
#   GUEST-REPORT addr6 NAME ADDR/PREFIX scope SCOPE [FLAGS]   (each IPv6 address but lo's)
#   GUEST-REPORT route6 LINE         (each line of `ip -6 route`, whitespace normalised, no expiry)
#   GUEST-REPORT neigh6 LINE         (each line of `ip -6 neigh`: who the routers are)
#   GUEST-REPORT dhcp6 NAME none | ip6=.. dns6=.. search6=.. lifetime=..   (raw DHCPv6 facts)
#   GUEST-REPORT dns ADDR            (each nameserver of /etc/resolv.conf)
#   GUEST-REPORT domain NAME / GUEST-REPORT search NAMES   (when DHCP gave them)
#   GUEST-REPORT hostname NAME
#   GUEST-REPORT done
#   GUEST-RESOLVE NAME ADDR|none     (for vminit_test_resolve=NAME[,NAME...]: what the guest's
#                                    resolver (glibc's getaddrinfo, through busybox ping) says)
#   GUEST-RESOLVE-MS NAME MS         (how long that took, lookup and one ping; 10 ms resolution)
#   GUEST-PING6 ADDR ok|failed       (for vminit_test_ping6=ADDR[,ADDR]: two IPv6 pings)
#   GUEST-CIDATA device DEV ro=0|1 fs=TYPE   (vminit_test_cidata=1: the volume that findfs finds
#                                    by LABEL=cidata, its read-only flag, its filesystem)
#   GUEST-CIDATA files NAME...       (the files on it)
#   GUEST-CIDATA-FILE NAME BASE64    (each file's bytes, base64 in lines of 76 characters)
#   GUEST-CIDATA none | done         (no such volume | all of it printed)
#   GUEST-DISK TEXT                  (if /dev/vda exists: its first 64 bytes up to NUL/newline)
#   GUEST-DISK-WRITTEN WORD          (after vminit_test_write=WORD was written and synced)
#   GUEST-BLOCK NAME BYTES           (each virtio disk /dev/vd*, in name order, and its size)
#   GUEST-FIRMWARE efi|bios          (whether the kernel was started by UEFI firmware)
#   GUEST-SECUREBOOT 0|1             (UEFI: the SecureBoot variable)
#   GUEST-EFIVAR WORD                (UEFI: the test variable a previous boot wrote)
#   GUEST-EFIVAR-WRITTEN WORD        (UEFI: after vminit_test_efivar=WORD was written)
#   GUEST-TPM none | VERSION pcr0=HEX   (the TPM the guest has, and its SHA-256 PCR 0)
#   GUEST-TPM-CRYPTO selftest=RC rsa=RC ecc=RC   (TPM 2.0: the response codes, in hex, of a full
#                                    self-test of every algorithm and of making an RSA 2048 and an
#                                    ECC P-256 primary key; 00000000 is success)
#   GUEST-PCI-NIC VENDOR:DEVICE      (each PCI network controller, driver or not, e.g. 8086:10d3)
#   GUEST-BOOTDEV TEXT               (vminit_test_bootdev=TEXT, which a boot loader sets)
#   GUEST-READY                      (a shell reads the console from now on)
#   GUEST-HOTPLUG added NAME mac=MAC ip=ADDR/PREFIX|none   (vminit_test_hotplug=1: a NIC
#                                    appeared and was configured by DHCP)
#   GUEST-HOTPLUG removed NAME       (vminit_test_hotplug=1: a NIC went away)
#   GUEST-KEYS LINE                  (with vminit_test_vga_banner: a line typed on the VGA console)
#   GUEST-POWERBUTTON                (ACPI power button pressed; the guest syncs and powers off)
#   GUEST-POWERBUTTON-IGNORED        (the same, with vminit_test_ignore_powerbutton=1)
#   GUEST-ERROR TEXT                 (something in this script failed)
#
# Kernel command line options:
#   vminit_test_ignore_powerbutton=1  ignore the ACPI power button (escalation tests)
#   vminit_test_hotplug=1             configure NICs that appear later by DHCP, and report them
#   vminit_test_write=WORD            write WORD and a newline at the start of /dev/vda, then sync
#   vminit_test_resolve=NAME[,NAME]   look each NAME up with the DHCP-given resolvers after the
#                                     report (point names at hosts that answer ping)
#   vminit_test_dhcp_tries=N          DHCP discover attempts per NIC, one second apart [5]
#   vminit_test_ipv6=NIC[,NIC]        report only once these NICs have their IPv6 address and route
#   vminit_test_ipv6_wait=SECONDS     how long to wait for them [30]
#   vminit_test_ping6=ADDR[,ADDR]     ping each ADDR over IPv6 after the report
#   vminit_test_vga_banner=TEXT       clear the VGA console (tty1), show TEXT there (underscores
#                                     become spaces), and report each line typed on its keyboard
#   vminit_test_cidata=1              find the cloud-init seed (label cidata) and print it
#   vminit_test_serve=PORT            before the report, serve TCP and UDP on PORT (tests/guest/
#                                     serve.c: TCP sends "GUEST-TCP PORT", UDP answers
#                                     "GUEST-UDP PORT " and the datagram)

. /lib/guest.sh
guest_mount
guest_modules GUEST-ERROR

# The VGA console: the kernel's VGA text console is tty1 and the PS/2 keyboard types into it
# (both built into the cloud kernel). Kernel messages stay on ttyS0 (console=ttyS0).
banner=$(cmdline_value vminit_test_vga_banner "")
if [ -n "$banner" ]; then
	printf '\033[H\033[J\n  %s\n\n  Type a line: the guest repeats it on its serial console.\n\n' \
		"$(echo "$banner" | tr _ ' ')" >/dev/tty1
	(
		while printf '  > ' >/dev/tty1 && IFS= read -r line; do
			printf '\nGUEST-KEYS %s\n' "$line" >/dev/console
			printf '  The guest read: %s\n\n' "$line" >/dev/tty1
		done </dev/tty1
	) &
fi

# ACPI power button: button.ko turns the ACPI event into a KEY_POWER input event, evdev exposes
# it as /dev/input/eventN, and busybox acpid maps KEY_POWER to the action "PWRF/00000080", which
# it runs as the program /etc/acpi/PWRF/00000080.
mkdir -p /etc/acpi/PWRF
cat >/etc/acpi/PWRF/00000080 <<'EOF'
#!/bin/sh
# Power button handler, started by acpid. The leading newline ends a shell prompt's line.
if grep -q 'vminit_test_ignore_powerbutton=1' /proc/cmdline; then
	printf '\nGUEST-POWERBUTTON-IGNORED\n' >/dev/console
	exit 0
fi
printf '\nGUEST-POWERBUTTON\n' >/dev/console
sync
poweroff -f
EOF
chmod 0755 /etc/acpi/PWRF/00000080
acpid -c /etc/acpi -l /var/log/acpid.log -p /run/acpid.pid || echo "GUEST-ERROR acpid failed"

nics=$(guest_nics)
guest_dhcp6 $nics
guest_dhcp "$(cmdline_value vminit_test_dhcp_tries 5)" $nics
guest_wait_ipv6 "$(cmdline_value vminit_test_ipv6_wait 30)" $(cmdline_value vminit_test_ipv6 "" | tr ',' ' ')
serve_port=$(cmdline_value vminit_test_serve "")
if [ -n "$serve_port" ]; then
	serve "$serve_port" &
fi

for nic in $nics; do
	mac=$(cat "/sys/class/net/$nic/address")
	mtu=$(cat "/sys/class/net/$nic/mtu")
	addrs=$(ip -o -4 addr show dev "$nic" | awk '{print $4}' | tr '\n' ',' | sed 's/,$//')
	echo "GUEST-REPORT nic $nic mac=$mac ip=${addrs:-none} mtu=$mtu"
	if [ -f "/run/dhcp/$nic" ]; then
		echo "GUEST-REPORT dhcp $nic $(cat "/run/dhcp/$nic")"
	else
		echo "GUEST-REPORT dhcp $nic none"
	fi
done
ip -4 route | while read -r line; do
	set -- $line
	echo "GUEST-REPORT route $*"
done
for nic in $nics; do
	ip -6 -o addr show dev "$nic" | while read -r _ name _ addr _ scope rest; do
		echo "GUEST-REPORT addr6 $nic $addr scope $scope $(echo "$rest" | sed 's/\\.*//')"
	done
	if [ -f "/run/dhcp6/$nic" ]; then
		echo "GUEST-REPORT dhcp6 $nic $(cat "/run/dhcp6/$nic")"
	else
		echo "GUEST-REPORT dhcp6 $nic none"
	fi
done
ip -6 route | sed 's/ expires [0-9]*sec//' | while read -r line; do
	set -- $line
	echo "GUEST-REPORT route6 $*"
done
ip -6 neigh | while read -r line; do
	set -- $line
	echo "GUEST-REPORT neigh6 $*"
done
sed -n -e 's/^nameserver /GUEST-REPORT dns /p' -e 's/^domain /GUEST-REPORT domain /p' \
	-e 's/^search /GUEST-REPORT search /p' /etc/resolv.conf
echo "GUEST-REPORT hostname $(hostname)"
echo "GUEST-REPORT done"

# Name lookups through the resolvers DHCP gave (e.g. another container's name on a Docker
# network), the way programs do them: getaddrinfo, which busybox ping calls (busybox is
# statically linked with glibc, so this is glibc's resolver: servers in order, the next one
# after a refusal). The time covers the lookup and one ping of the answer.
# uptime_cs: the time since boot, in hundredths of a second.
uptime_cs() {
	sed 's/^\([0-9]*\)\.\([0-9][0-9]\).*/\1\2/' /proc/uptime
}
for addr in $(cmdline_value vminit_test_ping6 "" | tr ',' ' '); do
	if ping -6 -c 2 -W 2 "$addr" >/dev/null 2>&1; then
		echo "GUEST-PING6 $addr ok"
	else
		echo "GUEST-PING6 $addr failed"
	fi
done

for name in $(cmdline_value vminit_test_resolve "" | tr ',' ' '); do
	start=$(uptime_cs)
	addr=$(ping -c 1 -W 2 "$name" 2>/dev/null | sed -n 's/^PING [^ ]* (\([0-9a-f.:]*\)).*/\1/p')
	end=$(uptime_cs)
	echo "GUEST-RESOLVE $name ${addr:-none}"
	echo "GUEST-RESOLVE-MS $name $(((end - start) * 10))"
done

# The cloud-init seed, found the way cloud-init's NoCloud datasource finds it: by its label.
if [ "$(cmdline_value vminit_test_cidata 0)" = 1 ]; then
	for module in $(cat /lib/modules/cidata-order); do
		insmod "/lib/modules/$module.ko" || echo "GUEST-ERROR insmod $module failed"
	done
	dev=$(findfs LABEL=cidata 2>/dev/null)
	if [ -z "$dev" ]; then
		echo "GUEST-CIDATA none"
	else
		mkdir -p /mnt/cidata
		if mount -o ro "$dev" /mnt/cidata; then
			fs=$(awk '$2 == "/mnt/cidata" { print $3 }' /proc/mounts)
			echo "GUEST-CIDATA device $dev ro=$(cat "/sys/class/block/${dev#/dev/}/ro") fs=$fs"
			echo "GUEST-CIDATA files $(ls /mnt/cidata | tr '\n' ' ')"
			for file in /mnt/cidata/*; do
				base64 "$file" | sed "s|^|GUEST-CIDATA-FILE ${file##*/} |"
			done
			umount /mnt/cidata
		else
			echo "GUEST-ERROR mount $dev failed"
		fi
		echo "GUEST-CIDATA done"
	fi
fi

# The disk: show what a previous boot left, then write what this boot was asked to.
if [ -b /dev/vda ]; then
	echo "GUEST-DISK $(head -c 64 /dev/vda | tr '\000' '\n' | head -n 1)"
	word=$(cmdline_value vminit_test_write "")
	if [ -n "$word" ]; then
		if printf '%s\n' "$word" | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null && sync; then
			echo "GUEST-DISK-WRITTEN $word"
		else
			echo "GUEST-ERROR writing /dev/vda failed"
		fi
	fi
fi

# The disks and the firmware as the guest sees them.
for dev in /sys/block/vd*; do
	[ -e "$dev/size" ] && echo "GUEST-BLOCK ${dev##*/} $(($(cat "$dev/size") * 512))"
done
if [ -d /sys/firmware/efi ]; then
	echo "GUEST-FIRMWARE efi"
	for module in $(cat /lib/modules/efi-order); do
		insmod "/lib/modules/$module.ko" || echo "GUEST-ERROR insmod $module failed"
	done
	vars=/sys/firmware/efi/efivars
	mount -t efivarfs efivarfs $vars || echo "GUEST-ERROR mount efivarfs failed"
	# Each variable's file: 4 bytes of attributes, then its value.
	secureboot=$vars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
	[ -f $secureboot ] && echo "GUEST-SECUREBOOT $(tail -c +5 $secureboot | od -An -tu1 | tr -d ' ')"
	testvar=$vars/VminitTest-5e1f7a52-3c8d-4b9e-a6f0-0c2d9b8e7f41
	[ -f $testvar ] && echo "GUEST-EFIVAR $(tail -c +5 $testvar)"
	word=$(cmdline_value vminit_test_efivar "")
	if [ -n "$word" ] && [ ! -f $testvar ]; then
		# Non-volatile, boot-service and runtime access (7); one write.
		if printf '\007\000\000\000%s' "$word" >$testvar; then
			echo "GUEST-EFIVAR-WRITTEN $word"
		else
			echo "GUEST-ERROR writing the EFI variable failed"
		fi
	fi
else
	echo "GUEST-FIRMWARE bios"
fi
# tpm_rc HEX: sends the TPM command HEX through the kernel's resource manager (which flushes what
# the command loaded when the file is closed) and prints the response code, in hex.
tpm_rc() {
	dev=/dev/tpmrm0
	[ -c $dev ] || dev=/dev/tpm0
	# shellcheck disable=SC2059 # the command's bytes, as \xHH escapes
	{ printf "$(echo "$1" | sed 's/../\\x&/g')" >&3 && dd bs=4096 count=1 <&3 2>/dev/null; } 3<>$dev |
		od -An -tx1 -j6 -N4 | tr -d ' \n'
}

if [ -c /dev/tpm0 ]; then
	echo "GUEST-TPM $(cat /sys/class/tpm/tpm0/tpm_version_major) pcr0=$(cat /sys/class/tpm/tpm0/pcr-sha256/0)"
	# TPM2_SelfTest(fullTest=YES), then TPM2_CreatePrimary in the owner hierarchy (empty password
	# session) of a restricted decryption key (AES-128-CFB for its children): RSA 2048, then
	# ECC on NIST P-256.
	owner_primary=800200000043000001314000000100000009400000090000000000000400000000001a
	key_tail=000b000300720000000600800043
	echo "GUEST-TPM-CRYPTO selftest=$(tpm_rc 80010000000b0000014301)" \
		"rsa=$(tpm_rc ${owner_primary}0001${key_tail}00100800000000000000000000000000)" \
		"ecc=$(tpm_rc ${owner_primary}0023${key_tail}00100003001000000000000000000000)"
else
	echo "GUEST-TPM none"
fi
for dev in /sys/bus/pci/devices/*; do
	case $(cat "$dev/class") in
	0x0200*) echo "GUEST-PCI-NIC $(sed 's/^0x//' "$dev/vendor"):$(sed 's/^0x//' "$dev/device")" ;;
	esac
done
bootdev=$(cmdline_value vminit_test_bootdev "")
[ -z "$bootdev" ] || echo "GUEST-BOOTDEV $bootdev"

# NICs that come and go while the guest runs (PCI hot-plug), as a distribution's hot-plug
# handling would: each new NIC is brought up and configured by DHCP.
hotplug_report() {
	case "$1" in
	added) echo "GUEST-HOTPLUG added $2 mac=$3 ip=$4" ;;
	removed) echo "GUEST-HOTPLUG removed $2" ;;
	esac
}
if [ "$(cmdline_value vminit_test_hotplug 0)" = 1 ]; then
	guest_watch_hotplug hotplug_report 0.2 $nics
fi

# An interactive shell on the console, forever (this script is PID 1 and must not exit).
export PS1='guest# '
while true; do
	echo GUEST-READY
	setsid cttyhack sh
done
