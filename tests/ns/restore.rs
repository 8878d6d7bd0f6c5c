//! The container's network comes back exactly as it was — after a clean stop, after a
//! SIGKILL and a restart in the same namespace, and whatever step a kill interrupts — for
//! the shapes users have: two addresses in one subnet, labels, flags and lifetimes,
//! route metrics, `onlink`, `src`, other tables, policy rules, permanent neighbours, many
//! routes, and names the kernel allows but that are not text. Door addresses of guests on
//! one network never collide.

use crate::common;
use crate::common::{report, stop};

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{
    Container, NetState, Network, Nic, NicSpec, ScratchDisk, Vminit, VminitBuilder, standin_vm,
};
use nix::sys::signal::Signal;

const STOP: Duration = Duration::from_secs(30);

/// vminit booting the test guest in `ctr`.
fn guest_vm<'c>(ctr: &'c Container, disk: &ScratchDisk) -> VminitBuilder<'c> {
    ctr.vminit_with_guest(disk, "")
}

/// A Kubernetes container restart: SIGKILL; the namespace stays.
fn kill(vm: Vminit) {
    vm.kill(Signal::SIGKILL);
    vm.expect_exit(Duration::from_secs(10));
}

/// Each line that differs between two snapshots, for readable failures.
fn diff(before: &NetState, after: &NetState) -> String {
    let mut out = String::new();
    for (what, a, b) in [
        ("links", &before.links, &after.links),
        ("addrs", &before.addrs, &after.addrs),
        ("routes", &before.routes, &after.routes),
        ("rules", &before.rules, &after.rules),
        ("neighbours", &before.neighbours, &after.neighbours),
        ("routes6", &before.routes6, &after.routes6),
        ("rules6", &before.rules6, &after.rules6),
        ("ipv4_conf", &before.ipv4_conf, &after.ipv4_conf),
    ] {
        for line in a.lines().filter(|l| !b.lines().any(|m| m == *l)) {
            out += &format!("{what} lost:   {line}\n");
        }
        for line in b.lines().filter(|l| !a.lines().any(|m| m == *l)) {
            out += &format!("{what} gained: {line}\n");
        }
        if out.is_empty() && a != b {
            out += &format!("{what}: same lines, another order:\n{a}---\n{b}\n");
        }
    }
    out
}

fn assert_restored(ctr: &Container, before: &NetState, when: &str) {
    let after = ctr.net_state();
    assert!(
        after == *before,
        "{when}: the namespace differs from before the first run:\n{}",
        diff(before, &after)
    );
}

#[test]
fn two_addresses_in_one_subnet_boot_and_come_back_in_their_order() {
    let net = Network::new(1);
    let ctr = Container::new();
    // Without SELECTED_NETWORK the first goes to the guest; the kernel would delete the
    // second (its secondary) with it.
    let nic = ctr.add_nic(&net, NicSpec::docker(&net, 2).addr(&net.cidr(net.addr(9))));
    ctr.set_default_route(net.gateway, "eth0");
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk).spawn();

    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(g.addrs, vec![net.cidr(net.addr(2))]);
    assert_eq!(g.mac, nic.mac);
    assert!(net.peer_ping(net.addr(2)), "{}", vm.tails());
    assert_eq!(
        net.peer_neighbour_mac(net.addr(2)).as_deref(),
        Some(nic.mac.as_str())
    );
    // The container keeps the second address, and it is routable: the container reaches
    // the network's peer from it.
    let kept = ctr.exec("ip -4 -o addr show dev eth0").stdout;
    assert!(kept.contains(&net.cidr(net.addr(9))), "{kept}");
    let ping = ctr.exec(&format!("ping -n -c 2 -W 2 {}", net.peer_ip));
    assert!(ping.success(), "the container reaches the peer: {ping}");

    stop(&vm);
    assert_restored(&ctr, &before, "after the stop");
}

/// A NIC with everything the kernel lets a container hold on it, beside a loopback whose
/// alias is not text and a link whose name is not text.
fn rich_container(net: &Network) -> (Container, Nic) {
    let ctr = Container::new();
    let nic = ctr.add_nic(net, NicSpec::docker(net, 2).addr(&net.cidr(net.addr(9))));
    ctr.set_default_route(net.gateway, "eth0");
    let gateway_mac = net
        .host_exec(&format!("cat /sys/class/net/{}/address", net.bridge))
        .stdout
        .trim()
        .to_string();
    let peer = format!("{}x", net.bridge);
    let script = format!(
        "set -e
        ip addr change {secondary} dev eth0 label eth0:vip
        ip addr add 10.99.0.5/24 dev eth0 noprefixroute valid_lft 3600 preferred_lft 1800
        ip route add 10.200.0.0/16 via {gw} dev eth0 metric 50
        ip route add 10.201.0.0/16 via 10.{n}.0.254 dev eth0 onlink
        ip route add 10.202.0.0/16 via {gw} dev eth0 src {secondary_ip}
        ip route add 10.204.0.0/16 via {gw} dev eth0 mtu 1400 advmss 1360
        ip route add default via {gw} dev eth0 table 100
        ip route add 10.203.0.0/16 dev eth0 table 100 proto static
        ip rule add from {first} lookup 100 priority 100
        ip rule add iif eth0 lookup 100 priority 200
        ip neigh add {gw} lladdr {gateway_mac} nud permanent dev eth0
        ip link set lo alias \"$(printf 'not\\377text')\"
        ip link add \"$(printf 'v\\377')\" type veth peer name {peer} netns {host}",
        secondary = net.cidr(net.addr(9)),
        secondary_ip = net.addr(9),
        first = net.addr(2),
        gw = net.gateway,
        n = net.index,
        host = net.host_ns().name(),
    );
    let made = ctr.exec(&script);
    assert!(made.success(), "{made}");
    (ctr, nic)
}

#[test]
fn everything_the_nic_held_comes_back_after_a_stop_and_after_a_kill() {
    let net = Network::new(1);
    let (ctr, nic) = rich_container(&net);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();

    let vm = guest_vm(&ctr, &disk).spawn();
    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!((&g.mac, &g.addrs), (&nic.mac, &vec![net.cidr(net.addr(2))]));
    assert!(
        r.routes
            .iter()
            .any(|l| l.starts_with(&format!("10.200.0.0/16 via {} dev eth0", net.gateway))),
        "the guest gets the NIC's main-table routes: {:?}",
        r.routes
    );
    assert_eq!(
        r.default_routes(),
        vec![format!("default via {} dev eth0", net.gateway)]
    );
    assert!(net.peer_ping(net.addr(2)), "{}", vm.tails());
    stop(&vm);
    assert_restored(&ctr, &before, "after a clean stop");

    let vm = guest_vm(&ctr, &disk).spawn();
    report(&vm);
    kill(vm);
    let vm = guest_vm(&ctr, &disk).spawn();
    let r = report(&vm);
    assert!(
        vm.log()
            .text()
            .contains("recovering the network left by an earlier run"),
        "{}",
        vm.tails()
    );
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!((&g.mac, &g.addrs), (&nic.mac, &vec![net.cidr(net.addr(2))]));
    stop(&vm);
    assert_restored(&ctr, &before, "after a kill, a recovering run and a stop");
}

#[test]
fn a_nic_with_many_routes_boots_and_is_recovered_after_a_kill() {
    let net = Network::new(1);
    let (ctr, nic) = Container::docker_on(&net);
    for i in 0..16 {
        ctr.ns().ip(&[
            "route",
            "add",
            &format!("10.{}.0.0/16", 100 + i),
            "via",
            &net.gateway.to_string(),
            "dev",
            "eth0",
            "metric",
            &(1000 + i).to_string(),
        ]);
    }
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk).spawn();
    let r = report(&vm);
    assert_eq!(r.nic("eth0").map(|g| &g.mac), Some(&nic.mac));
    // The record did not fit one alias: it continues on carrier links.
    let carriers = ctr.exec("ip -o link show | grep -c 'vmrec0\\.'").stdout;
    assert!(
        carriers.trim().parse::<u32>().unwrap_or(0) >= 1,
        "{carriers}"
    );
    kill(vm);
    let vm = guest_vm(&ctr, &disk).spawn();
    let r = report(&vm);
    assert_eq!(
        r.nic("eth0").map(|g| (&g.mac, &g.addrs)),
        Some((&nic.mac, &nic.addrs))
    );
    stop(&vm);
    assert_restored(&ctr, &before, "after a kill and a recovering run");
}

/// The door address vminit gave the container in `ctr` (`vmlink0`'s).
fn door_of(ctr: &Container) -> String {
    let out = ctr.exec("ip -4 -o addr show dev vmlink0").stdout;
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no door address in {out:?}"))
        .to_string()
}

/// Waits until the stand-in QEMU runs (setup is complete).
fn wait_standin(vm: &Vminit) {
    vm.expect_log("QEMU running", Duration::from_secs(30));
}

#[test]
fn guests_on_one_slash_16_get_different_doors_and_a_restart_keeps_each() {
    let net = Network::new(5);
    // x.y.1.10 and x.y.255.10: the same low byte, 254 /24s apart, on one /16.
    let (a, b) = (Container::new(), Container::new());
    a.add_nic(&net, NicSpec::new().addr("10.5.1.10/16"));
    b.add_nic(&net, NicSpec::new().addr("10.5.255.10/16"));
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let vm_a = standin_vm(&a, &disk, &log).spawn();
    let vm_b = standin_vm(&b, &disk, &log).spawn();
    wait_standin(&vm_a);
    wait_standin(&vm_b);
    let (door_a, door_b) = (door_of(&a), door_of(&b));
    assert_ne!(door_a, door_b, "two containers on one network share a door");
    drop(vm_b);

    // A restart (here: after a kill) picks the same door again.
    kill(vm_a);
    let vm_a = standin_vm(&a, &disk, &log).spawn();
    wait_standin(&vm_a);
    assert_eq!(door_of(&a), door_a);
}

/// Two NICs of the shapes a fault must not break: one with two addresses in one subnet,
/// one with extra routes (main table and another) and a permanent neighbour.
fn two_nic_container(n1: &Network, n2: &Network) -> (Container, Vec<Nic>) {
    let ctr = Container::new();
    let eth0 = ctr.add_nic(n1, NicSpec::docker(n1, 2).addr(&n1.cidr(n1.addr(9))));
    let eth1 = ctr.add_nic(n2, NicSpec::docker(n2, 3));
    ctr.set_default_route(n1.gateway, "eth0");
    let script = format!(
        "set -e
        ip route add 10.210.0.0/16 via {gw2} dev eth1 metric 7
        ip route add 10.211.0.0/16 via {gw2} dev eth1 table 200
        ip neigh add {gw2} lladdr 02:00:00:00:02:01 nud permanent dev eth1",
        gw2 = n2.gateway
    );
    let made = ctr.exec(&script);
    assert!(made.success(), "{made}");
    (ctr, vec![eth0, eth1])
}

/// Starts vminit (stand-in QEMU) paused after `at` (`setup:K` or `teardown:K`), kills it
/// there, and says whether the pause was reached (false: there are fewer steps than K).
fn kill_at(ctr: &Container, disk: &ScratchDisk, log: &Path, at: &str) -> bool {
    standin_vm(ctr, disk, log).killed_at(at)
}

/// The next run recovers: QEMU gets every NIC's original MAC, dnsmasq serves it the
/// original address; after a stop the namespace is as it was.
fn recover_and_check(ctr: &Container, disk: &ScratchDisk, log: &Path, nics: &[Nic], at: &str) {
    let _ = std::fs::remove_file(log);
    let vm = standin_vm(ctr, disk, log).spawn();
    wait_standin(&vm);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut argv = String::new();
    while !argv.contains("\nstarted") && Instant::now() < deadline {
        sleep(Duration::from_millis(20));
        argv = std::fs::read_to_string(log).unwrap_or_default();
    }
    let conf =
        std::fs::read_to_string(vm.container_path("/run/vminit.dhcp/hosts")).unwrap_or_default();
    for nic in nics {
        assert!(
            argv.contains(&format!("mac={},", nic.mac)),
            "{at}: QEMU lacks {}'s MAC {}:\n{argv}\n{}",
            nic.name,
            nic.mac,
            vm.tails()
        );
        assert!(
            conf.contains(&format!("{},", nic.mac)) && conf.contains(&format!(",{},", nic.ip())),
            "{at}: dnsmasq does not give {} to {}:\n{conf}",
            nic.ip(),
            nic.mac
        );
    }
    vm.kill(Signal::SIGTERM);
    let status = vm.expect_exit(STOP);
    assert_eq!(
        status.code(),
        Some(137),
        "{at}: forced stop\n{}",
        vm.tails()
    );
}

#[test]
fn a_kill_after_any_step_of_the_takeover_is_recovered_by_the_next_run() {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let (ctr, nics) = two_nic_container(&n1, &n2);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let mut k = 1;
    while kill_at(&ctr, &disk, &log, &format!("setup:{k}")) {
        let at = format!("killed after setup step {k}");
        recover_and_check(&ctr, &disk, &log, &nics, &at);
        assert_restored(&ctr, &before, &at);
        k += 1;
    }
    assert!(k > 20, "a two-NIC takeover has more steps than {k}");
}

#[test]
fn a_kill_during_teardown_is_recovered_by_the_next_run() {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let (ctr, nics) = two_nic_container(&n1, &n2);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let mut k = 1;
    while kill_at(&ctr, &disk, &log, &format!("teardown:{k}")) {
        let at = format!("killed after teardown step {k}");
        recover_and_check(&ctr, &disk, &log, &nics, &at);
        assert_restored(&ctr, &before, &at);
        k += 1;
    }
    assert!(k > 15, "a two-NIC teardown has more steps than {k}");
}

/// A Docker `-d macvlan` NIC: the kernel hangs the door and the guest's macvtap on the host's
/// NIC under it (in another namespace), and the macvtap takeover changes the NIC's
/// `arp_ignore` (so that only the door answers the guest's ARP for the door address). A kill
/// after any step of the takeover or of the teardown is recovered by the next run, which
/// knows its links by the NIC beside them, that setting included.
#[test]
fn a_kill_after_any_step_on_a_macvlan_nic_is_recovered_with_its_arp_ignore() {
    let net = Network::new(1);
    let ctr = Container::new();
    let nic = ctr.add_macvlan_nic(&net, "02:42:0a:01:00:07", "10.1.0.7/24");
    ctr.set_default_route(net.gateway, "eth0");
    let before = ctr.net_state();
    assert!(before.ipv4_conf.contains("./eth0/arp_ignore:0\n"));
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    for phase in ["setup", "teardown"] {
        let mut k = 1;
        while kill_at(&ctr, &disk, &log, &format!("{phase}:{k}")) {
            let at = format!("killed after {phase} step {k}");
            recover_and_check(&ctr, &disk, &log, std::slice::from_ref(&nic), &at);
            assert_restored(&ctr, &before, &at);
            k += 1;
        }
        assert!(k > 8, "a macvlan NIC's {phase} has more steps than {k}");
    }
}

#[test]
fn after_a_kill_at_the_riskiest_steps_the_real_guest_gets_its_identity_back() {
    let (n1, n2) = (Network::new(1), Network::new(2));
    let (ctr, nics) = two_nic_container(&n1, &n2);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    // Every guest link made and nothing of the container's changed yet (QEMU's start); points
    // in the first NIC's address and MAC changes, and in the second NIC's.
    for at in ["setup:6", "setup:11", "setup:13", "setup:22"] {
        assert!(kill_at(&ctr, &disk, &log, at), "{at} exists");
        let vm = guest_vm(&ctr, &disk).spawn();
        let r = report(&vm);
        for (guest, nic) in ["eth0", "eth1"].iter().zip(&nics) {
            let g = r
                .nic(guest)
                .unwrap_or_else(|| panic!("{at}: guest {guest}"));
            assert_eq!(
                (&g.mac, g.addrs.first()),
                (&nic.mac, nic.addrs.first()),
                "{at}: {guest}"
            );
        }
        assert!(n2.peer_ping(nics[1].ip()), "{at}\n{}", vm.tails());
        stop(&vm);
        assert_restored(&ctr, &before, at);
    }
}

/// Links that carry vminit's alias without being vminit's: the container NIC itself with a
/// garbage one, a bridge and macvlans with well-formed records (the wrong kind, the wrong
/// lower link, a record that does not fit the NIC), a macvlan with a garbage record.
fn forge_aliases(ctr: &Container, net: &Network, nic: &Nic) {
    // A record in vminit's format that would give eth0 another MAC and address.
    let forged = "1/1 v1 02:00:00:00:00:99;a 10.9.9.9/24;r 0.0.0.0/0 g=10.9.9.1";
    // One that fits eth0's addresses but not its MAC: vminit changes the MAC only after it
    // took an address off.
    let own = format!("1/1 v1 02:00:00:00:00:98;a {}", net.cidr(nic.ip()));
    let script = format!(
        "set -e
        ip link set eth0 alias 'vminit:door x'
        ip link add br0 type bridge
        ip link set br0 alias 'vminit:door eth0 {forged}'
        ip link add link eth0 name vmlink5 type macvlan mode bridge
        ip link set vmlink5 alias 'vminit:door eth0 {own}'
        ip link add link eth0 name vmlink6 type macvlan mode private
        ip link set vmlink6 alias 'vminit:door eth1 {forged}'
        ip link add link eth0 name vmrec7.2 type macvlan
        ip link set vmrec7.2 alias \"vminit:rec eth0 2/2 $(printf 'garbage;;\\001')\"
        ip link add link eth0 name vmlink7 type macvlan
        ip link set vmlink7 alias 'vminit:door eth0 1/2 v1 zz'
        ip link add link eth0 name mvx type macvlan
        ip link set mvx alias 'vminit:nic eth0'"
    );
    let made = ctr.exec(&script);
    assert!(made.success(), "{made}");
}

#[test]
fn forged_vminit_aliases_change_nothing_and_the_guest_boots_normally() {
    let net = Network::new(1);
    let (ctr, nic) = Container::docker_on(&net);
    forge_aliases(&ctr, &net, &nic);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();

    // AUTO_ATTACH=no: mvx, a user's macvlan without an address, is no NIC for the guest.
    let eth0_only = || {
        guest_vm(&ctr, &disk)
            .env("AUTO_ATTACH", "no")
            .env("ATTACH_IFACES", "eth0")
            .spawn()
    };
    let vm = eth0_only();
    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!((&g.mac, &g.addrs), (&nic.mac, &vec![net.cidr(nic.ip())]));
    assert!(net.peer_ping(nic.ip()), "{}", vm.tails());
    let log = vm.log().text();
    for link in ["eth0", "br0", "vmlink5", "vmlink6", "vmlink7", "mvx"] {
        let names = |l: &str| -> Vec<String> {
            let list = l
                .split("leaving ")
                .nth(1)
                .and_then(|r| r.split(" alone:").next());
            list.map(|n| n.split(", ").map(str::to_string).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            log.lines()
                .filter(|l| names(l).contains(&link.to_string()))
                .count(),
            1,
            "one warning for {link}:\n{log}"
        );
    }
    assert!(!log.contains("recovering the network"), "{log}");
    stop(&vm);
    assert_restored(&ctr, &before, "after a stop");

    // A kill: the next run recovers its own record and still leaves the forged ones alone.
    let vm = eth0_only();
    report(&vm);
    kill(vm);
    let vm = eth0_only();
    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0 after the kill");
    assert_eq!((&g.mac, &g.addrs), (&nic.mac, &vec![net.cidr(nic.ip())]));
    assert!(
        vm.log()
            .text()
            .contains("recovering the network left by an earlier run"),
        "{}",
        vm.tails()
    );
    stop(&vm);
    assert_restored(&ctr, &before, "after a kill, a recovering run and a stop");
}

#[test]
fn a_run_directory_with_a_comma_reaches_qemu_escaped_and_the_stop_goes_through_qmp() {
    let net = Network::new(1);
    let (ctr, nic) = Container::docker_on(&net);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk)
        .env("VMINIT_RUN_DIR", "/run/vm,init")
        .spawn();
    let r = report(&vm);
    assert_eq!(r.nic("eth0").expect("guest eth0").mac, nic.mac);
    // The power button goes through the QMP socket in that directory: exit 0, not a kill.
    stop(&vm);
    assert_restored(&ctr, &before, "after the stop");
}
