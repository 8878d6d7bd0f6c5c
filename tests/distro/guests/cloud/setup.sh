# Runs in the guest's root (chroot) after its packages are installed.
# The cloud image boots from its own disk (UEFI: shim, then GRUB, then the kernel, all signed by
# Debian; tests/distro/build-images.sh lays out the disk from esp/ and esp-from-root): the root
# file system is found by its label, and cloud-init's netplan rendering needs systemd-networkd.
echo 'LABEL=root / ext4 rw,discard,errors=remount-ro 0 1' >/etc/fstab
systemctl enable systemd-networkd.service systemd-networkd-wait-online.service
