//! `NIC_MODEL=e1000e`: every guest NIC, the ones plugged in while the guest runs too, is an
//! Intel 82574L (PCI 8086:10d3) with the container NIC's MAC. The test guest's kernel has no
//! e1000e driver, so the guest reports the PCI devices it finds and QEMU's own PCI list shows
//! the hot-plugged one; DHCP and the per-NIC rules are the virtio path's, unchanged.

use crate::common;

use std::time::Duration;

use common::{Container, Network, NicSpec, ScratchDisk, qmp_execute};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(120);

#[test]
fn nic_model_e1000e_gives_the_guest_e1000e_nics_also_when_hot_plugged() {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let ctr = Container::new();
    let disk = ScratchDisk::new();
    ctr.add_nic(&n1, NicSpec::docker(&n1, 2));
    ctr.set_default_route(n1.gateway, "eth0");
    let vm = ctr
        .vminit_with_guest(&disk, "")
        .env("NIC_MODEL", "e1000e")
        .spawn();
    vm.expect_console("GUEST-READY", BOOT);
    assert_eq!(
        vm.console().lines_starting("GUEST-PCI-NIC "),
        ["GUEST-PCI-NIC 8086:10d3"],
        "{}",
        vm.tails()
    );
    assert!(
        vm.log()
            .text()
            .contains("-device e1000e,netdev=net0,id=nic0,mac=02:42:0a:01:00:02 "),
        "the container's MAC, no host_mtu\n{}",
        vm.tails()
    );

    // docker network connect: plugged in as an e1000e too.
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 3));
    vm.expect_log("eth1: plugged into the guest", Duration::from_secs(60));
    let pci = qmp_execute(
        &vm.container_path("/run/vminit/health.sock"),
        "query-pci",
        None,
        Duration::from_secs(10),
    )
    .expect("query-pci");
    // 0x8086:0x10d3
    let e1000e = pci
        .matches(r#""id": {"device": 4307, "subsystem-vendor": 32902, "vendor": 32902"#)
        .count();
    assert_eq!(e1000e, 2, "two e1000e devices\n{pci}");
    assert!(pci.contains(r#""qdev_id": "nic1""#), "{pci}");
    assert!(!eth1.mac.is_empty());

    vm.kill(Signal::SIGTERM);
    assert_eq!(
        vm.expect_exit(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        vm.tails()
    );
}
