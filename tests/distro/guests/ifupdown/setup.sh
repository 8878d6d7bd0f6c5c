# Runs in the guest's root (chroot) after its packages are installed.
chmod 0755 /usr/local/sbin/ifupdown-map-mac
