# Runs in the guest's root (chroot) after its packages are installed.
# The network is cloud-init's: ifupdown's networking.service brings up what cloud-init's ENI
# renderer writes to /etc/network/interfaces.d/50-cloud-init.
grep -q '^source' /etc/network/interfaces || echo 'source /etc/network/interfaces.d/*' >>/etc/network/interfaces
