//! Live NICs: a network connected while the guest runs becomes a guest NIC with the
//! container NIC's MAC and address (hot-plugged over QMP, configured by DHCP in the guest);
//! one disconnected leaves the guest; the others keep working throughout. Real QEMU,
//! dnsmasq and the test guest, whose /init configures NICs that appear later.

use crate::common;
use crate::common::stop;

use std::time::{Duration, Instant};

use common::{
    Container, Network, NicSpec, ScratchDisk, Vminit, VminitBuilder, recorder, standin_script,
    vminit_binary,
};
use nix::sys::signal::Signal;

use crate::dns::{self, Resolver};

const BOOT: Duration = Duration::from_secs(120);
pub(crate) const PLUG: Duration = Duration::from_secs(60);

fn vminit<'c>(ctr: &'c Container, disk: &ScratchDisk) -> VminitBuilder<'c> {
    ctr.vminit_with_guest(disk, "vminit_test_hotplug=1")
}

/// A container on `net` (10.N.0.2, default route) whose guest has booted.
fn booted<'c>(ctr: &'c Container, net: &Network, disk: &ScratchDisk) -> Vminit<'c> {
    ctr.add_nic(net, NicSpec::docker(net, 2));
    ctr.set_default_route(net.gateway, "eth0");
    let vm = vminit(ctr, disk).spawn();
    vm.expect_console("GUEST-READY", BOOT);
    vm
}

/// Waits for the guest to report a NIC added with `mac`; its `ip=` value.
pub(crate) fn expect_added(vm: &Vminit, mac: &str) -> String {
    let line = vm
        .console()
        .wait_for_whole_line(&format!("mac={mac} ip="), PLUG)
        .unwrap_or_else(|| panic!("the guest never got {mac}\n{}", vm.tails()))
        .line;
    assert!(line.contains("GUEST-HOTPLUG added "), "{line}");
    line.rsplit("ip=").next().unwrap_or("").trim().to_string()
}

#[test]
fn a_network_connected_while_the_guest_runs_becomes_a_guest_nic_and_leaves_again() {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let ctr = Container::new();
    let disk = ScratchDisk::new();
    let vm = booted(&ctr, &n1, &disk);
    connect_and_disconnect(&ctr, &vm, &n1, &n2);
    stop(&vm);
}

#[test]
fn under_q35_a_network_connected_while_the_guest_runs_comes_on_a_pcie_root_port_and_leaves_again() {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let ctr = Container::new();
    let disk = ScratchDisk::new();
    ctr.add_nic(&n1, NicSpec::docker(&n1, 2));
    ctr.set_default_route(n1.gateway, "eth0");
    // BOOT_MODE=secure runs the q35 machine (OVMF, slower to boot under TCG).
    let vm = vminit(&ctr, &disk).env("BOOT_MODE", "secure").spawn();
    vm.expect_console("GUEST-READY", Duration::from_secs(240));
    let log = vm.log().text();
    assert!(log.contains("-machine q35,smm=on"), "{log}");
    assert!(
        log.contains("pcie-root-port,id=port4,"),
        "a root port for the NIC and four for hot-plug: {log}"
    );
    connect_and_disconnect(&ctr, &vm, &n1, &n2);
    stop(&vm);
}

/// `docker network connect` of `n2` to a container on `n1` whose guest runs: the guest gets a
/// NIC with the container's MAC and address, a peer on `n2` reaches it at that MAC and the
/// container keeps no copy of the address; then `docker network disconnect`: the NIC leaves
/// the guest and dnsmasq forgets it. The first NIC answers throughout; the VM keeps running.
fn connect_and_disconnect(ctr: &Container, vm: &Vminit, n1: &Network, n2: &Network) {
    assert!(n1.peer_ping(n1.addr(2)), "{}", vm.tails());
    // docker network connect
    let added = Instant::now();
    let eth1 = ctr.add_nic(n2, NicSpec::docker(n2, 7));
    let ip = expect_added(vm, &eth1.mac);
    assert_eq!(
        ip,
        eth1.addrs[0],
        "the container's address, by DHCP\n{}",
        vm.tails()
    );
    let mut answered = false;
    while !answered && added.elapsed() < PLUG {
        answered = n2.peer_ping(eth1.ip());
    }
    assert!(
        answered,
        "the peer on the new network reaches the guest\n{}",
        vm.tails()
    );
    assert_eq!(
        n2.peer_neighbour_mac(eth1.ip()).as_deref(),
        Some(eth1.mac.as_str()),
        "answered by the container's MAC"
    );
    assert!(n1.peer_ping(n1.addr(2)), "the first NIC still works");
    // The container keeps no copy of the address: only the guest answers for it.
    let kept = ctr.exec("ip -4 -o addr show dev eth1").stdout;
    assert!(!kept.contains(&eth1.addrs[0]), "{kept}");

    // docker network disconnect
    let mark = vm.console().len();
    ctr.remove_nic("eth1");
    vm.expect_console_from(mark, "GUEST-HOTPLUG removed eth1", PLUG);
    assert!(n1.peer_ping(n1.addr(2)), "the first NIC still works");
    assert!(
        vm.wait_exit(Duration::from_millis(10)).is_none(),
        "the VM keeps running"
    );
    let hosts =
        std::fs::read_to_string(vm.container_path("/run/vminit.dhcp/hosts")).unwrap_or_default();
    assert!(
        !hosts.contains(&eth1.mac),
        "dnsmasq forgot the MAC:\n{hosts}"
    );
}

#[test]
fn two_networks_connected_at_once_both_reach_the_guest() {
    let (n1, n2, n3) = (Network::new(1), Network::new(2), Network::new(3));
    let ctr = Container::new();
    let disk = ScratchDisk::new();
    let vm = booted(&ctr, &n1, &disk);
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 4));
    let eth2 = ctr.add_nic(&n3, NicSpec::docker(&n3, 5));
    for (net, nic) in [(&n2, &eth1), (&n3, &eth2)] {
        assert_eq!(expect_added(&vm, &nic.mac), nic.addrs[0]);
        let deadline = Instant::now() + PLUG;
        while !net.peer_ping(nic.ip()) {
            assert!(Instant::now() < deadline, "{}\n{}", nic.name, vm.tails());
        }
    }
    // Only the first NIC gives the guest a default route: the new ones hold none.
    let mark = vm.console().len();
    vm.type_console("echo DEFAULTS=$(ip -4 route | grep -c ^default)\n");
    vm.expect_console_from(mark, "DEFAULTS=1", Duration::from_secs(20));
    stop(&vm);
}

/// Asks `server` for the A record of `name` over and over from the container's namespace
/// (a new query 1 ms after the last is answered, each given 2 s), until `stop` exists: how many
/// were asked, how many were answered with an address, and the first failure.
const DNS_LOOP: &str = r#"
import os, socket, struct, sys, time
server, name, stop = sys.argv[1], sys.argv[2], sys.argv[3]
asked = answered = 0
failure = ""
query_id = 0
end = time.time() + 300
while not os.path.exists(stop) and time.time() < end:
    query_id = (query_id + 1) & 0xffff
    q = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    asked += 1
    try:
        s.connect((server, 53))
        s.send(q)
        r = s.recv(512)
        rid, flags, _, ancount = struct.unpack(">HHHH", r[:8])
        if rid == query_id and flags & 0xf == 0 and ancount > 0:
            answered += 1
        elif not failure:
            failure = "query %d: rcode %d, %d answers" % (asked, flags & 0xf, ancount)
    except OSError as e:
        if not failure:
            failure = "query %d: %s" % (asked, e)
    s.close()
    time.sleep(0.001)
print("asked=%d answered=%d failure=%s" % (asked, answered, failure))
"#;

#[test]
fn a_nic_plugged_in_while_dns_and_dhcp_are_asked_continuously_loses_none_of_their_answers() {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let ctr = Container::new();
    ctr.add_nic(&n1, NicSpec::docker(&n1, 2));
    ctr.set_default_route(n1.gateway, "eth0");
    // Docker's embedded DNS server, which knows the container name; dnsmasq forwards to it.
    let _docker = Resolver::docker(&ctr, n1.peer_ip, n1.gateway);
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk).spawn();
    vm.expect_console("GUEST-READY", BOOT);
    let door = ctr
        .exec("ip -4 -o addr show dev vmlink0")
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next().map(str::to_string))
        .expect("the door's address");

    // The guest asks for its lease on the first NIC again and again (a script that changes
    // nothing), in the background; the container asks the door's resolver, as the guest does.
    let mark = vm.console().len();
    vm.type_console(
        "printf '#!/bin/sh\\n' >/tmp/nop; chmod +x /tmp/nop; \
         (n=0; l=0; while [ ! -e /tmp/stop ]; do n=$((n+1)); \
         udhcpc -i eth0 -n -q -t 1 -T 3 -s /tmp/nop >/dev/null 2>&1 || l=$((l+1)); \
         echo DHCP-\"ASKED=$n\"; done; echo DHCP-\"DONE asked=$n lost=$l\") &\n",
    );
    vm.expect_console_from(mark, "DHCP-ASKED=2", PLUG);
    let stop_file = std::env::temp_dir().join(format!("vminit-dns-loop-{}", std::process::id()));
    let _ = std::fs::remove_file(&stop_file);
    let script = format!(
        "python3 -c '{}' {door} {} {}",
        DNS_LOOP.replace('\'', "\"'\"'"),
        dns::CONTAINER_NAME,
        stop_file.display()
    );
    let (dhcp, dns) = std::thread::scope(|s| {
        let dns_loop = s.spawn(|| ctr.ns().exec(&script));
        std::thread::sleep(Duration::from_secs(1));

        // docker network connect, while both are asked.
        let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 7));
        let ip = expect_added(&vm, &eth1.mac);
        let after = vm.console().len();
        vm.expect_console_from(after, "DHCP-ASKED=", PLUG);
        std::thread::sleep(Duration::from_secs(1));
        std::fs::write(&stop_file, "").unwrap();
        vm.type_console("touch /tmp/stop\n");
        let dhcp = vm
            .console()
            .wait_for_whole_line("DHCP-DONE ", Duration::from_secs(30))
            .map(|m| m.line);
        let dns = dns_loop.join().expect("the DNS loop").stdout;
        assert_eq!(ip, eth1.addrs[0], "{}", vm.tails());
        (dhcp, dns)
    });
    let _ = std::fs::remove_file(&stop_file);
    let dhcp = dhcp.unwrap_or_else(|| panic!("the guest's DHCP loop did not end\n{}", vm.tails()));

    eprintln!("{dhcp}\n{dns}");
    assert!(
        dhcp.contains(" lost=0"),
        "every lease was given: {dhcp}\n{}",
        vm.tails()
    );
    let asked: u32 = field(&dns, "asked=");
    assert!(asked >= 20, "{dns}");
    assert_eq!(
        field::<u32>(&dns, "answered="),
        asked,
        "every DNS query was answered: {dns}\n{}",
        vm.tails()
    );
    let log = vm.log().text();
    assert!(
        log.contains("reads its hosts and options again") && !log.contains("dnsmasq restarted"),
        "dnsmasq read its files again instead of restarting\n{}",
        vm.tails()
    );
    stop(&vm);
}

/// The number after `key` in `text`.
fn field<T: std::str::FromStr>(text: &str, key: &str) -> T {
    text.split(key)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

#[test]
fn when_the_default_route_network_leaves_the_guests_next_lease_routes_through_the_new_one() {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let ctr = Container::new();
    ctr.add_nic(&n1, NicSpec::docker(&n1, 2));
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 3));
    ctr.set_default_route(n1.gateway, "eth0");
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk).spawn();
    vm.expect_console("GUEST-READY", BOOT);

    // docker network disconnect of the network with the default route: Docker then routes
    // the container through the other network's gateway, on the link its route to that
    // gateway takes (`ip route add default via GW`).
    let mark = vm.console().len();
    ctr.remove_nic("eth0");
    vm.expect_console_from(mark, "GUEST-HOTPLUG removed eth0", PLUG);
    let moved = ctr.exec(&format!("ip route add default via {}", n2.gateway));
    assert!(moved.success(), "{moved}");
    vm.expect_log("eth1 now holds the container's default route", PLUG);

    // The guest's next lease on that NIC (a renewal, a reboot) gives it the router.
    let mark = vm.console().len();
    vm.type_console(
        "udhcpc -i eth1 -s /etc/dhcp-event.sh -n -q -O staticroutes -O mtu >/dev/null 2>&1; \
         echo ROUTES=$(ip -4 route show default | tr ' ' _)\n",
    );
    vm.expect_console_from(
        mark,
        &format!("ROUTES=default_via_{}_dev_eth1_", n2.gateway),
        Duration::from_secs(30),
    );
    assert!(n2.peer_ping(eth1.ip()), "{}", vm.tails());
    stop(&vm);
}

#[test]
fn a_nic_qemu_cannot_take_stays_with_the_container_and_the_vm_runs_on() {
    // A stand-in QEMU that runs but offers no QMP: every hot-plug fails at QEMU's end.
    let (n1, n2) = (Network::new(1), Network::new(2));
    let ctr = Container::new();
    let eth0 = ctr.add_nic(&n1, NicSpec::docker(&n1, 2));
    ctr.set_default_route(n1.gateway, "eth0");
    let disk = ScratchDisk::new();
    let vm = ctr
        .vminit(&vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("VMINIT_DISK", &disk.path)
        .env("VMINIT_QEMU", recorder())
        .env("STANDIN_SCRIPT", standin_script())
        .env("STANDIN_MODE", "wait")
        .env("STANDIN_LOG", disk.dir.join("standin.log"))
        .spawn();
    vm.expect_log("QEMU running", Duration::from_secs(30));
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 3));
    vm.expect_log("eth1: connect to QMP", PLUG);
    vm.expect_log("it stays with the container", PLUG);
    // eth1 is as Docker made it: its address and MAC, nothing of vminit's on it.
    let now = ctr
        .exec("ip -o addr show dev eth1; ip -o link show dev eth1")
        .stdout;
    assert!(
        now.contains(&eth1.addrs[0]) && now.contains(&eth1.mac),
        "{now}"
    );
    let links = ctr.exec("ip -o link show").stdout;
    assert!(
        !links.contains("vmlink1") && !links.contains("vmtap1"),
        "{links}"
    );
    assert!(n2.peer_ping(eth1.ip()), "the container keeps eth1");
    // dnsmasq, told to serve eth1 before the plug, is told to forget it again.
    // (It is written before the warning above is logged.)
    let conf =
        std::fs::read_to_string(vm.container_path("/run/vminit.dhcp/hosts")).unwrap_or_default();
    assert!(
        conf.contains(&eth0.mac) && !conf.contains(&eth1.mac),
        "dnsmasq serves eth0 only:\n{conf}"
    );
    assert!(
        vm.wait_exit(Duration::from_millis(10)).is_none(),
        "the VM runs on"
    );
}

#[test]
fn a_hot_plugged_nic_is_recovered_after_a_kill_and_put_back_after_the_stop() {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let ctr = Container::new();
    let disk = ScratchDisk::new();
    let vm = booted(&ctr, &n1, &disk);
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 6));
    expect_added(&vm, &eth1.mac);
    // The namespace as it would be without vminit: both NICs as Docker made them.
    // A Kubernetes container restart: SIGKILL, the namespace stays.
    vm.kill(Signal::SIGKILL);
    vm.expect_exit(Duration::from_secs(10));
    drop(vm);
    let vm = vminit(&ctr, &disk).spawn();
    vm.expect_console("GUEST-REPORT done", BOOT);
    let r = common::GuestReport::parse(&vm.console().text()).expect("a report");
    let macs: Vec<&str> = r.nics.iter().map(|n| n.mac.as_str()).collect();
    assert!(
        macs.contains(&eth1.mac.as_str()),
        "{macs:?}\n{}",
        vm.tails()
    );
    let g = r.nics.iter().find(|n| n.mac == eth1.mac).expect("the NIC");
    assert_eq!(g.addrs, eth1.addrs);
    stop(&vm);
    // Everything back: eth1 holds its address and MAC again.
    let now = ctr
        .exec("ip -o addr show dev eth1; ip -o link show dev eth1")
        .stdout;
    assert!(
        now.contains(&eth1.addrs[0]) && now.contains(&eth1.mac),
        "{now}"
    );
    let ours = ctr.exec("ip -o link show | grep -c vminit: || true").stdout;
    assert_eq!(ours.trim(), "0", "no links of vminit's are left");
}
