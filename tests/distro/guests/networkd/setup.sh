# Runs in the guest's root (chroot) after its packages are installed.
# systemd-networkd is part of systemd but disabled by Debian; a networkd image enables it, its
# wait-online service (which network-online.target then waits for), systemd-resolved, and
# systemd-network-generator (ip= on the kernel command line; systemd's preset enables it).
systemctl enable systemd-networkd.service systemd-networkd-wait-online.service \
	systemd-resolved.service systemd-network-generator.service
