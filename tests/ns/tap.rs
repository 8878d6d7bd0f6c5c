//! The tap datapath end to end, in network namespaces, with the real dnsmasq, the real QEMU
//! (TCG) and the test guest: a tap from /dev/net/tun joined to the container NIC by tc takes
//! the place of the macvtap, and everything the guest gets stays the same — the container's
//! MAC and addresses (IPv4 and IPv6), DHCP for the guest only, DNS through the door,
//! hot-plug, and the network put back exactly after a stop and after a kill.
//!
//! Lower links: a veth (Docker's bridge networks, most CNIs), a macvlan (Docker `-d
//! macvlan`) and a tap (rootless Podman's slirp4netns `tap0`). This machine's kernel has no
//! ipvlan driver, so the tap datapath is not tested on an ipvlan lower here.

use crate::common;

use std::time::Duration;

use common::{Container, GuestReport, Network, NicSpec, ScratchDisk, Vminit, VminitBuilder};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(120);
const STOP: Duration = Duration::from_secs(30);

/// vminit with the tap datapath, booting the test guest.
fn tap_vm<'c>(ctr: &'c Container, disk: &ScratchDisk, cmdline: &str) -> VminitBuilder<'c> {
    ctr.vminit_with_guest(disk, cmdline)
        .env("NET_DATAPATH", "tap")
}

fn report(vm: &Vminit) -> GuestReport {
    vm.expect_console("GUEST-REPORT done", BOOT);
    GuestReport::parse(&vm.console().text()).expect("a complete guest report")
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

#[test]
fn on_a_veth_the_tap_datapath_gives_the_guest_the_nic_and_the_network_reaches_it() {
    let net = Network::new(1);
    let ctr = Container::new();
    let nic = ctr.add_nic(&net, NicSpec::docker(&net, 2));
    ctr.set_default_route(net.gateway, "eth0");
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = tap_vm(&ctr, &disk, "").spawn();

    let r = report(&vm);
    assert!(
        vm.log().text().contains("datapath: tap (NET_DATAPATH=tap)"),
        "the choice is logged\n{}",
        vm.tails()
    );
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(g.mac, nic.mac, "the container's MAC");
    assert_eq!(g.addrs, nic.addrs, "the container's IP and prefix");
    assert_eq!(
        r.default_routes(),
        vec![format!("default via {} dev eth0", net.gateway)]
    );
    assert!(
        r.dns.iter().all(|d| d.starts_with("169.254.")),
        "the door is the guest's resolver: {:?}",
        r.dns
    );
    // The network reaches the guest at the container's IP, answered by the container's MAC.
    assert!(
        net.peer_ping(nic.ip()),
        "peer pings the guest\n{}",
        vm.tails()
    );
    assert_eq!(
        net.peer_neighbour_mac(nic.ip()).as_deref(),
        Some(nic.mac.as_str())
    );
    // The container reaches the guest through the tap.
    let ping = ctr.exec(&format!("ping -n -c 2 -W 2 {}", nic.ip()));
    assert!(ping.success(), "container pings the guest: {ping:?}");
    // The guest reaches the network through its gateway.
    guest_run(
        &vm,
        &format!("ping -c 2 -W 2 {} && echo PING-OK", net.peer_ip),
        "PING-OK",
    );
    // The tap is a tun device, and no macvtap was made.
    let links = ctr.exec("ip -d -o link show").stdout;
    assert!(
        links.contains("vmtap0") && links.contains("tun type tap"),
        "{links}"
    );
    assert!(!links.contains("macvtap"), "{links}");

    stop(&vm);
    assert_eq!(ctr.net_state(), before, "the network is put back");
    let qdiscs = ctr.exec("tc qdisc show dev eth0").stdout;
    assert!(!qdiscs.contains("ingress"), "{qdiscs}");
}

#[test]
fn on_a_macvlan_the_tap_datapath_keeps_the_nics_mac_for_the_guest() {
    // `docker network create -d macvlan`: eth0 is a macvlan on a NIC of the host (here the
    // network's bridge). The host NIC hands a macvlan only frames for its own MAC.
    let net = Network::new(1);
    let ctr = Container::new();
    let (mac, cidr) = ("02:42:0a:01:00:07", "10.1.0.7/24");
    ctr.add_macvlan_nic(&net, mac, cidr);
    ctr.set_default_route(net.gateway, "eth0");
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = tap_vm(&ctr, &disk, "").spawn();

    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(
        (g.mac.as_str(), g.addrs.as_slice()),
        (mac, [cidr.to_string()].as_slice())
    );
    assert_eq!(
        r.default_routes(),
        vec![format!("default via {} dev eth0", net.gateway)]
    );
    let ip = "10.1.0.7".parse().expect("an IPv4 address");
    assert!(net.peer_ping(ip), "peer pings the guest\n{}", vm.tails());
    assert_eq!(net.peer_neighbour_mac(ip).as_deref(), Some(mac));
    let ping = ctr.exec("ping -n -c 2 -W 2 10.1.0.7");
    assert!(ping.success(), "container pings the guest: {ping:?}");
    guest_run(
        &vm,
        &format!("ping -c 2 -W 2 {} && echo PING-OK", net.peer_ip),
        "PING-OK",
    );
    stop(&vm);
    assert_eq!(ctr.net_state(), before, "the macvlan NIC is put back");
}
