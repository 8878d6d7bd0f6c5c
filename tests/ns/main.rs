//! The namespace tier: end-to-end tests in network namespaces the tests make, with the real
//! QEMU (TCG), dnsmasq and the test guest, the stand-in QEMU where a test needs a QEMU that
//! misbehaves. Needs root.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod disk_chain;
mod disks;
mod dns;
mod firmware;
mod harness_selftest;
mod hotplug;
mod ipv6;
mod lifecycle;
mod network;
mod nic_model;
mod restore;
mod seed;
mod tap;
