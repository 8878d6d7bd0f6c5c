//! The guest takes the container's IPv6 identity too, end to end in network namespaces: a Docker
//! `--ipv6` network's shape, a Calico pod's `/128` with a link-local gateway, two NICs with IPv6
//! on one. The real QEMU, the test guest (the kernel's own router advertisement handling and ISC
//! dhclient -6), vminit's own router advertisements and DHCPv6; a peer reaches the guest at the
//! container's IPv6 address and MAC, the guest reaches a host beyond the real gateway, a listening
//! neighbour hears nothing vminit announces, and the namespace comes back exactly.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Container, NetState, Network, NicSpec, ScratchDisk, VminitBuilder, vminit_binary};
use common::{recorder, standin_script};
use nix::sys::signal::Signal;

const STOP: Duration = Duration::from_secs(30);

/// vminit with the stand-in QEMU, which runs until it is stopped.
fn standin_vm<'c>(ctr: &'c Container, disk: &ScratchDisk, log: &Path) -> VminitBuilder<'c> {
    ctr.vminit(&vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("VMINIT_DISK", &disk.path)
        .env("VMINIT_QEMU", recorder())
        .env("STANDIN_SCRIPT", standin_script())
        .env("STANDIN_MODE", "wait")
        .env("STANDIN_LOG", log)
        .env("STOP_TIMEOUT", "1")
}

/// A container on a Docker `--ipv6` network: `eth0` with 10.N.0.`host`/24 and fd00:N::`host`/64,
/// both default routes through the bridge.
fn docker_ipv6_container(net: &Network, host: u8) -> (Container, common::Nic) {
    let ctr = Container::with_ipv6();
    let v6 = net.net6();
    let nic = ctr.add_nic(
        net,
        NicSpec::docker(net, host).addr6(&v6.cidr(v6.addr(u16::from(host)))),
    );
    ctr.set_default_route(net.gateway, "eth0");
    ctr.set_default_route6(v6.gateway, "eth0");
    (ctr, nic)
}

fn assert_restored(ctr: &Container, before: &NetState, when: &str) {
    let after = ctr.net_state();
    assert!(
        after == *before,
        "{when}: the namespace differs from before:\nbefore: {before:#?}\nafter: {after:#?}"
    );
}

#[test]
fn the_containers_ipv6_address_and_link_local_leave_before_qemu_starts_and_come_back_after() {
    let net = Network::dual_stack(1);
    let (ctr, nic) = docker_ipv6_container(&net, 2);
    let before = ctr.net_state();
    assert!(
        before.addrs.contains(&format!("inet6 {}", nic.addrs6[0])),
        "{before:?}"
    );
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let vm = standin_vm(&ctr, &disk, &log).spawn();
    vm.expect_log("QEMU running", Duration::from_secs(30));

    // Nothing in the container holds the guest's IPv6 address or the link-local address the
    // guest derives from its MAC: duplicate address detection in the guest cannot fail.
    let addrs = ctr.exec("ip -6 -o addr show").stdout;
    assert!(!addrs.contains(&format!(" {}/", nic.ip6())), "{addrs}");
    let guest_ll = eui64_link_local(&nic.mac);
    assert!(!addrs.contains(&format!(" {guest_ll}/")), "{addrs}");
    // The container's door has a link-local address of its own, and its IPv6 routes.
    assert!(
        addrs
            .lines()
            .any(|l| l.contains("vmlink0") && l.contains("fe80::")),
        "{addrs}"
    );
    let routes = ctr.exec("ip -6 route show dev vmlink0").stdout;
    assert!(
        routes.contains(&format!("{} metric", nic.ip6())),
        "{routes}"
    );
    assert!(
        routes.contains(&format!("default via {}", net.net6().gateway)),
        "{routes}"
    );

    vm.kill(Signal::SIGTERM);
    vm.expect_exit(STOP);
    assert_restored(&ctr, &before, "after a stop");

    // A SIGKILL leaves the record; the next run puts everything back first.
    let vm = standin_vm(&ctr, &disk, &log).spawn();
    vm.expect_log("QEMU running", Duration::from_secs(30));
    vm.kill(Signal::SIGKILL);
    vm.expect_exit(Duration::from_secs(10));
    let vm = standin_vm(&ctr, &disk, &log).spawn();
    vm.expect_log("QEMU running", Duration::from_secs(30));
    assert!(
        vm.log()
            .text()
            .contains("recovering the network left by an earlier run")
    );
    vm.kill(Signal::SIGTERM);
    vm.expect_exit(STOP);
    assert_restored(&ctr, &before, "after a kill, a recovering run and a stop");
}

/// The link-local address the kernel derives from `mac` (modified EUI-64).
fn eui64_link_local(mac: &str) -> std::net::Ipv6Addr {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).expect("hex"))
        .collect();
    std::net::Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        b[0] ^ 2,
        b[1],
        b[2],
        0xff,
        0xfe,
        b[3],
        b[4],
        b[5],
    ])
}
