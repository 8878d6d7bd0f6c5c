//! The Docker tier: the vminit image in a real dockerd (`scripts/dockerd.sh` starts one), with
//! busybox peer containers; the console test also drives headless Chromium. Needs root.

#[path = "../common/mod.rs"]
mod common;

mod basics;
mod console;
mod disks;
mod ipv6;
mod tap;
