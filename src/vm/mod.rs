//! The virtual machine: QEMU's command line and the inputs it is built from (accelerator,
//! disk chain, display, NoCloud seed), the device nodes QEMU is handed, and QMP.
//!
//! Pure: `accel` (accelerator and vhost decisions), `disk` (qcow2 headers and the chain rules),
//! `machine` (the disk's size and base, the boot ISO, the NIC model, and their decisions),
//! `display` (the VNC console's inputs and options), `seed` (the NoCloud seed), `qemu` (the
//! argv), `passt` (the user-mode datapath's argv).
//! Touch the system: `devices` (/dev/tapN, the /dev/kvm and /dev/vhost-net probes, the disk
//! chain opened), `provision` (the disk created or grown by qemu-img, the ISO and extra disks
//! opened), `tpm` (swtpm for `TPM=yes`), `kvm` (the KVM probe guest), `console` (the console's socket directory and
//! password), `qmp` (the QMP client).
//!
//! Imports `net`, `pid1` and `takeover`.

pub mod accel;
pub mod console;
pub mod devices;
pub mod disk;
pub mod display;
pub mod kvm;
pub mod machine;
pub mod passt;
pub mod provision;
pub mod qemu;
pub mod qmp;
pub mod sandbox;
pub mod seed;
pub mod slirp;
pub mod tpm;
