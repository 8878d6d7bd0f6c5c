# image/qemu-devices.mak — the devices the image's QEMU is built with (build-qemu.sh configures
# --without-default-devices --with-devices-x86_64=this list), each for what vminit uses. A device
# not here is not in the binary, also for CMD's QEMU arguments: `image/build.sh --qemu=debian`
# ships Debian's full build. Kconfig adds what these select (the PIIX3/ICH9 chipsets, their IDE
# and AHCI controllers for BOOT_ISO's CD-ROM, the ISA serial of the console, fw_cfg, pflash).

# Machines: pc (i440FX, the default) and q35 (BOOT_MODE=secure: SMM and secure flash).
CONFIG_I440FX=y
CONFIG_Q35=y

# NICs: virtio-net-pci (multiqueue, vhost-net) and e1000e (NIC_MODEL=e1000e).
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_NET=y
CONFIG_E1000E_PCI_EXPRESS=y

# Disks: the VM disk, extra disks and the cloud-init seed are virtio-blk.
CONFIG_VIRTIO_BLK=y

# DISPLAY=vnc: std VGA (also the pc machine's default VGA), -usb (UHCI on pc, EHCI with UHCI
# companions on q35) and usb-tablet.
CONFIG_VGA_PCI=y
CONFIG_USB_UHCI=y
CONFIG_USB_EHCI_PCI=y

# TPM=yes: tpm-tis (what vminit adds) and tpm-crb, and the emulator backend (swtpm's socket).
CONFIG_TPM_TIS_ISA=y
CONFIG_TPM_CRB=y
CONFIG_TPM_EMULATOR=y

# PCIe root ports for hot-plug on q35.
CONFIG_PCIE_PORT=y

# What the pc and q35 machines create by default, as with Debian's build: the HPET (a guest
# clocksource) and the parallel port (QEMU refuses to start without it unless -parallel none).
CONFIG_HPET=y
CONFIG_PARALLEL=y
