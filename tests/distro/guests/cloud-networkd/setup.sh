# Runs in the guest's root (chroot) after its packages are installed.
# The network is cloud-init's: its networkd renderer writes /etc/systemd/network/10-cloud-init-*.network.
systemctl enable systemd-networkd.service systemd-networkd-wait-online.service \
	systemd-resolved.service
