//! The guest takes the container's IPv6 identity too, end to end in network namespaces: a Docker
//! `--ipv6` network's shape, a Calico pod's `/128` with a link-local gateway, two NICs with IPv6
//! on one. The real QEMU, the test guest (the kernel's own router advertisement handling and ISC
//! dhclient -6), vminit's own router advertisements and DHCPv6; a peer reaches the guest at the
//! container's IPv6 address and MAC, the guest reaches a host beyond the real gateway, a listening
//! neighbour hears nothing vminit announces, and the namespace comes back exactly.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    Container, GuestReport, NetState, Network, NicSpec, ScratchDisk, Vminit, VminitBuilder,
    recorder, standin_script, test_guest, vminit_binary,
};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(120);
const STOP: Duration = Duration::from_secs(30);
/// What a neighbour must never hear from vminit: router advertisements (ICMPv6 type 134) and
/// DHCPv6 answers (from the server port).
const ANNOUNCEMENTS: &str = "(icmp6 and ip6[40] == 134) or (udp and src port 547)";

/// vminit booting the test guest, which reports once `ipv6_nics` have their IPv6 address and
/// route.
fn guest_vm<'c>(ctr: &'c Container, disk: &ScratchDisk, ipv6_nics: &str) -> VminitBuilder<'c> {
    ctr.vminit(&vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("RAM_SIZE", "256M")
        .env("VMINIT_DISK", &disk.path)
        .args(test_guest().qemu_args(&format!("vminit_test_ipv6={ipv6_nics}")))
}

/// Waits for the guest's report and parses it.
fn report(vm: &Vminit) -> GuestReport {
    vm.expect_console("GUEST-REPORT done", BOOT);
    let text = vm.console().text();
    assert!(!text.contains("GUEST-ERROR"), "{}", vm.tails());
    GuestReport::parse(&text).expect("a complete guest report")
}

/// Types a command at the guest's shell and waits for `expect` in what follows.
fn guest_run(vm: &Vminit, command: &str, expect: &str) {
    vm.expect_console("GUEST-READY", BOOT);
    let from = vm.console().len();
    vm.type_console(&format!("{command}\n"));
    vm.expect_console_from(from, expect, Duration::from_secs(30));
}

/// `docker stop`: SIGTERM, a clean guest poweroff, exit 0.
fn stop(vm: &Vminit) {
    vm.kill(Signal::SIGTERM);
    let status = vm.expect_exit(STOP);
    assert_eq!(status.code(), Some(0), "exit status\n{}", vm.tails());
}

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

#[test]
fn on_a_docker_ipv6_network_the_guest_gets_the_containers_address_and_routes_through_the_real_gateway()
 {
    let net = Network::dual_stack(1);
    let v6 = net.net6().clone();
    let (ctr, nic) = docker_ipv6_container(&net, 2);
    let before = ctr.net_state();
    let listener = net.peer_listen(ANNOUNCEMENTS);
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk, "eth0").spawn();

    let r = report(&vm);
    // The container's address, by DHCPv6 (a /128, as Linux clients hold DHCPv6 addresses), on
    // the container's on-link prefix (from the router advertisement), past duplicate address
    // detection; the guest's own link-local address passed it too.
    let global: Vec<&str> = r.global6("eth0").iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(global, [format!("{}/128", nic.ip6())], "{r:#?}");
    assert!(
        r.routes6
            .iter()
            .any(|l| l.starts_with("fd00:1::/64 dev eth0 ")),
        "the container's prefix, on-link: {:#?}",
        r.routes6
    );
    assert!(
        r.addrs6
            .iter()
            .all(|a| !a.flags.iter().any(|f| f == "dadfailed" || f == "tentative")),
        "{:#?}",
        r.addrs6
    );
    // Exactly one default route, through the real gateway's link-local address, which the
    // guest finds at the gateway's MAC: no hairpin through the container.
    let defaults = r.default_routes6();
    assert_eq!(defaults.len(), 1, "{:#?}", r.routes6);
    assert!(
        defaults[0].starts_with(&format!("default via {} dev eth0 ", v6.gateway_ll)),
        "{defaults:?}"
    );
    assert_eq!(
        r.neighbour6(&v6.gateway_ll.to_string(), "eth0").as_deref(),
        Some(v6.gateway_mac.as_str()),
        "{:#?}",
        r.neigh6
    );
    assert_eq!(
        r.dhcp6
            .get("eth0")
            .and_then(|d| d.get("ip6"))
            .map(String::as_str),
        Some(nic.ip6().to_string().as_str())
    );

    // A peer reaches the guest at the container's IPv6 address, answered by its MAC.
    assert!(net.peer_ping6(nic.ip6()), "{}", vm.tails());
    assert_eq!(
        net.peer_neighbour_mac_of(&nic.ip6().to_string()).as_deref(),
        Some(nic.mac.as_str())
    );
    // The guest reaches a host beyond the gateway.
    guest_run(
        &vm,
        &format!("ping -6 -c 2 -W 2 {} && echo PING6-OK", v6.far),
        "PING6-OK",
    );
    // The container reaches the guest over IPv6 from its door.
    let ping = ctr.exec(&format!("ping -6 -n -c 2 -W 2 {}", nic.ip6()));
    assert!(ping.success(), "the container pings the guest: {ping}");

    let heard = listener.stop();
    assert!(
        heard.is_empty(),
        "a neighbour heard router advertisements or DHCPv6 answers: {heard:#?}"
    );
    stop(&vm);
    assert_restored(&ctr, &before, "after the stop");
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
