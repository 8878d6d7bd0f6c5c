//! Test support for vminit's end-to-end tests: Docker- and Kubernetes-shaped containers built from
//! network namespaces, a runner that starts a binary as PID 1 inside one, and the test guest.
//!
//! Use it from a file in `tests/` with `mod common;`; Docker scenarios are in [`docker`]. Every
//! helper command has a time limit ([`run`], [`run_for`]). Everything a test creates (namespaces,
//! processes, temporary files) is removed on drop, also when the test panics. Namespaces a killed
//! test run left behind are removed by the next run (see [`names`]).
//!
//! ```ignore
//! let net = Network::new(1);                       // 10.1.0.0/24, gateway .1, a peer at .50
//! let ctr = Container::new();
//! ctr.add_nic(&net, NicSpec::docker(&net, 2));     // eth0 10.1.0.2/24, MAC 02:42:0a:01:00:02
//! ctr.set_default_route(net.gateway, "eth0");
//! let vm = ctr.vminit(&vminit_binary()).env("AUTO_ATTACH", "yes").args(guest.qemu_args("")).spawn();
//! vm.expect_console("GUEST-REPORT done", Duration::from_secs(60));
//! assert!(net.peer_ping(net.addr(2)));
//! ```
#![allow(dead_code, unused_imports)] // each test file uses a different part of this module

mod browser;
mod cmd;
mod container;
mod disk;
mod distro;
mod distro_report;
mod dns;
pub mod docker;
mod guest;
mod names;
mod netns;
mod network;
mod process;
mod qmp;
mod running;
mod ssh;
mod standin;
mod vminit;

pub use browser::{Browser, NOVNC_DIR, Viewer, ensure_browser_packages, ocr};
pub use cmd::{BUILD_TIMEOUT, COMMAND_TIMEOUT, CmdOutput, run, run_for, run_ok, run_ok_for};
pub use container::{Container, NetState, Nic, NicSpec};
pub use disk::{ScratchDir, ScratchDisk, dir_names};
pub use distro::{DistroGuest, OverlayDisk, distro_guest, distro_uefi_disk};
pub use distro_report::{DistroAddr6, DistroNic, DistroReport, Resolver, RouteGet};
pub use dns::DnsServer;
pub use guest::{
    Cidata, GuestAddr6, GuestLookup, GuestNic, GuestReport, TPM_CRYPTO_OK, TestGuest, make_qcow2,
    test_guest,
};
pub use names::unique_id;
pub use netns::Netns;
pub use network::{CALICO_GATEWAY6, K8S_GATEWAY, Listener, Net6, Network};
pub use process::{Capture, Match, Process};
pub use qmp::qmp_execute;
pub use running::{guest_run, report, stop};
pub use ssh::{SshKey, sha256};
pub use standin::{recorder, standin_script, standin_tool, standin_vm};
pub use vminit::{Vminit, VminitBuilder, vminit_binary};
