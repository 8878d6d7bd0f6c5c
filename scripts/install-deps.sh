#!/usr/bin/env bash
# Installs what building and testing vminit needs on Debian: packages and the musl target.
set -euo pipefail

PACKAGES=(
    qemu-system-x86 qemu-utils dnsmasq-base passt busybox-static linux-image-cloud-amd64
    iproute2 iputils-ping docker.io iperf3 strace cpio gcc libc6-dev
    syslinux mtools dosfstools
    chromium chromium-driver novnc websockify tesseract-ocr
    cloud-init netplan.io python3-yaml
    isc-dhcp-client tcpdump slirp4netns docker-compose podman catatonit
    grub-pc-bin grub-efi-amd64-bin grub-common xorriso ovmf swtpm openssh-client
)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    # cloud-init is here for its schema validator and network converter (tests/ns/seed.rs); one
    # installed by this script is disabled first, so that it never configures this machine.
    if [[ " ${missing[*]} " == *" cloud-init "* ]] && [ ! -e /etc/cloud/cloud-init.disabled ]; then
        mkdir -p /etc/cloud
        touch /etc/cloud/cloud-init.disabled
    fi
    echo "== apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo not found; install Rust with rustup first" >&2
    exit 1
fi
rustup target list --installed | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
