//! Docker scenarios: the vminit image run by a real Docker daemon, with the test guest booted
//! through the image's contract (the disk at `/image/image.qcow2`, QEMU arguments as CMD), and
//! busybox peer containers to check what a user would check.
//!
//! Use it from a file in `tests/` with `mod common;` and `use common::docker::…`. The first
//! [`Scenario::new`] of a test process makes the shared fixtures (see [`fixtures`]): it starts a
//! Docker daemon if none answers (`scripts/dockerd.sh start`; never stopped), builds the image
//! (tag `$VMINIT_TEST_IMAGE`, default [`DEFAULT_IMAGE`]), the test guest and a busybox image, and
//! removes what killed runs left behind. A test then reads as a scenario:
//!
//! ```ignore
//! let sc = Scenario::new("onenet");                    // names contain "onenet"
//! let net = sc.network();                              // a bridge on a free 10.231.N.0/24
//! let vm = sc.create_vm(VmOpts::new().network(&net));  // the README's least-privilege flags
//! sc.start(&vm);
//! let report = sc.guest_report(&vm);                   // waits for GUEST-REPORT in docker logs
//! let ep = sc.only_endpoint(&vm);                      // the container's IP and MAC on net
//! expect_guest_nics(&report, &[&ep]);
//! sc.expect_answered(&net, ep.ip, &ep.mac, "the guest"); // a peer container pings, reads ARP
//! ```
//!
//! Every container and network a scenario makes is named `vmtd-<pid>-<tag>-<n>-<role>`, labelled
//! (see [`names`]) and removed when the scenario is dropped, also when the test fails (the
//! containers' logs are printed first). Networks use free /24s of 10.231.0.0/16 (checked against
//! the host's routes); no traffic leaves them. Every command has a time limit (see `cmd`), and
//! every wait is bounded.

mod attached;
mod fixtures;
mod names;
mod net;
mod scenario;
mod vm;

use std::time::Duration;

pub use attached::Attached;
pub use fixtures::{BUSYBOX_IMAGE, DEFAULT_IMAGE, Fixtures, HOST_BUSYBOX, fixtures};
pub use names::{LABEL, is_stale, owner_label, unique_name};
pub use net::{Endpoint, Net, Ping, SUBNET_BASE};
pub use scenario::{Scenario, expect_default_route_via, expect_guest_nics, guest_nic_of};
pub use vm::{GUEST_MOUNT, VmOpts};

/// Time for the guest to boot and report (TCG: a few seconds; this is the bound).
pub const BOOT: Duration = Duration::from_secs(60);
