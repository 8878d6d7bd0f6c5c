//! The guest takes the container's IPv6 identity too, end to end in network namespaces: a Docker
//! `--ipv6` network's shape, a Calico pod's `/128` with a link-local gateway, two NICs with IPv6
//! on one. The real QEMU, the test guest (the kernel's own router advertisement handling and ISC
//! dhclient -6), vminit's own router advertisements and DHCPv6; a peer reaches the guest at the
//! container's IPv6 address and MAC, the guest reaches a host beyond the real gateway, a listening
//! neighbour hears nothing vminit announces, and the namespace comes back exactly.

use crate::common;
use crate::common::{guest_run, stop};

use std::time::Duration;

use common::{
    CALICO_GATEWAY6, Container, GuestReport, NetState, Network, NicSpec, ScratchDisk, Vminit,
    VminitBuilder, standin_vm, test_guest, vminit_binary,
};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(120);
const STOP: Duration = Duration::from_secs(30);
/// What a neighbour must never hear from vminit: router advertisements (ICMPv6 type 134) and
/// DHCPv6 answers (from the server port).
pub(crate) const ANNOUNCEMENTS: &str = "(icmp6 and ip6[40] == 134) or (udp and src port 547)";

/// vminit booting the test guest, which reports once `ipv6_nics` have their IPv6 address and
/// route.
pub(crate) fn guest_vm<'c>(
    ctr: &'c Container,
    disk: &ScratchDisk,
    ipv6_nics: &str,
) -> VminitBuilder<'c> {
    ctr.vminit(&vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("RAM_SIZE", "256M")
        .env("VMINIT_DISK", &disk.path)
        .args(test_guest().qemu_args(&format!("vminit_test_ipv6={ipv6_nics}")))
}

/// Waits for the guest's report and parses it.
pub(crate) fn report(vm: &Vminit) -> GuestReport {
    vm.expect_console("GUEST-REPORT done", BOOT);
    let text = vm.console().text();
    assert!(!text.contains("GUEST-ERROR"), "{}", vm.tails());
    GuestReport::parse(&text).expect("a complete guest report")
}

/// vminit with the stand-in QEMU, which runs until it is stopped.
/// A container on a Docker `--ipv6` network: `eth0` with 10.N.0.`host`/24 and fd00:N::`host`/64,
/// both default routes through the bridge.
pub(crate) fn docker_ipv6_container(net: &Network, host: u8) -> (Container, common::Nic) {
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

/// Compares as `==`, except that routes to `fe80::/64` through several NICs may be listed in
/// another order: the kernel lists routes to one prefix in the order they were added, and a
/// NIC's link-local address (with its route) goes to the guest and comes back.
pub(crate) fn assert_restored(ctr: &Container, before: &NetState, when: &str) {
    fn sorted_link_local(text: &str) -> String {
        let mut lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let j = i + lines[i..]
                .iter()
                .take_while(|l| l.starts_with("fe80::/64 dev "))
                .count();
            lines[i..j].sort_unstable();
            i = j.max(i + 1);
        }
        lines.join("\n")
    }
    let after = ctr.net_state();
    let mut a = after.clone();
    let mut b = before.clone();
    for s in [&mut a, &mut b] {
        s.routes = sorted_link_local(&s.routes);
        s.routes6 = sorted_link_local(&s.routes6);
    }
    assert!(
        a == b,
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
    assert_routes_through_the_gateway(&r, &v6);
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
        &format!("ping -6 -c 2 -W 2 {} && echo PING6-$((40+2))", v6.far),
        "PING6-42",
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

/// Exactly one IPv6 default route on the guest's eth0, through the real gateway's link-local
/// address, which the guest finds at the gateway's MAC: no hairpin through the container.
fn assert_routes_through_the_gateway(r: &GuestReport, v6: &common::Net6) {
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

#[test]
fn a_calico_pod_guest_gets_its_slash_128_and_a_default_route_through_the_link_local_gateway() {
    let net = Network::dual_stack(1);
    let v6 = net.net6().clone();
    let ctr = Container::with_ipv6();
    // Calico: 10.1.0.7/32 via 169.254.1.1, fd00:1::7/128 via fe80::ecee:eeff:feee:eeee.
    let pod6 = v6.addr(7);
    let nic = ctr.add_nic(&net, NicSpec::k8s(&net, 7).addr6(&format!("{pod6}/128")));
    ctr.set_k8s_default_route(&net, "eth0");
    ctr.set_calico_default_route6(&net, "eth0");
    let before = ctr.net_state();
    let listener = net.peer_listen(ANNOUNCEMENTS);
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk, "eth0")
        .resolv_conf(
            "nameserver fd00:1::53\nnameserver 10.96.0.10\nsearch default.svc.cluster.local\n",
        )
        .spawn();

    let r = report(&vm);
    let global: Vec<&str> = r.global6("eth0").iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(global, [format!("{pod6}/128")], "{r:#?}");
    assert_eq!(
        r.default_routes6(),
        [format!(
            "default via {CALICO_GATEWAY6} dev eth0 metric 1024"
        )],
        "{:#?}",
        r.routes6
    );
    assert!(
        !r.routes6.iter().any(|l| l.starts_with("fd00:1::/64")),
        "nothing is on-link for a /128: {:#?}",
        r.routes6
    );
    assert_eq!(
        r.neighbour6(&CALICO_GATEWAY6.to_string(), "eth0")
            .as_deref(),
        Some(v6.gateway_mac.as_str())
    );
    // DHCPv4 gives the guest a resolver (the cluster's 10.96.0.10), so DHCPv6 carries none: a
    // client that writes resolv.conf from its last lease alone (Debian's dhclient-script) keeps
    // DHCPv4's. The pod's IPv6 resolver goes by the advertisements' RDNSS only, which this
    // guest's kernel ignores (systemd-networkd and NetworkManager read it: tests/distro).
    assert_eq!(r.dns, ["10.96.0.10"], "{r:#?}");
    assert_eq!(r.dhcp6["eth0"]["dns6"], "", "{:?}", r.dhcp6);
    assert_eq!(r.dhcp6["eth0"]["ip6"], pod6.to_string(), "{:?}", r.dhcp6);

    assert!(net.peer_ping6(pod6), "{}", vm.tails());
    assert_eq!(
        net.peer_neighbour_mac_of(&pod6.to_string()).as_deref(),
        Some(nic.mac.as_str())
    );
    guest_run(
        &vm,
        &format!("ping -6 -c 2 -W 2 {} && echo PING6-$((40+2))", v6.far),
        "PING6-42",
    );
    let heard = listener.stop();
    assert!(heard.is_empty(), "{heard:#?}");
    stop(&vm);
    assert_restored(&ctr, &before, "after the stop");
}

#[test]
fn of_two_nics_only_the_one_with_ipv6_gets_it_and_the_other_keeps_its_link_local_address_free() {
    let net4 = Network::dual_stack(1);
    let net6 = Network::dual_stack(2);
    let v6 = net6.net6().clone();
    let ctr = Container::with_ipv6();
    // eth0: IPv4 only (the container's IPv4 default route); eth1: dual stack, the IPv6 one.
    let eth0 = ctr.add_nic(&net4, NicSpec::docker(&net4, 2).name("eth0"));
    let eth1 = ctr.add_nic(
        &net6,
        NicSpec::docker(&net6, 3)
            .name("eth1")
            .addr6(&v6.cidr(v6.addr(3))),
    );
    ctr.set_default_route(net4.gateway, "eth0");
    ctr.set_default_route6(v6.gateway, "eth1");
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk, "eth1").spawn();

    let r = report(&vm);
    assert!(r.global6("eth0").is_empty(), "{:#?}", r.addrs6);
    let global: Vec<&str> = r.global6("eth1").iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(global, [format!("{}/128", eth1.ip6())]);
    assert_eq!(
        r.default_routes(),
        [format!("default via {} dev eth0", net4.gateway)]
    );
    let defaults6 = r.default_routes6();
    assert_eq!(defaults6.len(), 1, "{:#?}", r.routes6);
    assert!(
        defaults6[0].starts_with(&format!("default via {} dev eth1 ", v6.gateway_ll)),
        "{defaults6:?}"
    );
    // The container's eth0 held the link-local address the guest derives from eth0's MAC:
    // it went before the guest started, so duplicate address detection passed there too.
    let eth0_ll = eui64_link_local(&eth0.mac);
    assert!(
        r.addrs6
            .iter()
            .any(|a| a.nic == "eth0" && a.addr == format!("{eth0_ll}/64") && a.flags.is_empty()),
        "{:#?}",
        r.addrs6
    );
    assert!(net6.peer_ping6(eth1.ip6()), "{}", vm.tails());
    assert!(net4.peer_ping(eth0.ip()), "{}", vm.tails());
    stop(&vm);
    assert_restored(&ctr, &before, "after the stop");
}

#[test]
fn a_gateway_that_does_not_answer_is_named_and_the_guest_still_gets_its_address_and_prefix() {
    let net = Network::dual_stack(1);
    let ctr = Container::with_ipv6();
    let v6 = net.net6().clone();
    let nic = ctr.add_nic(&net, NicSpec::docker(&net, 2).addr6(&v6.cidr(v6.addr(2))));
    ctr.set_default_route(net.gateway, "eth0");
    // Nobody has fd00:1::99.
    ctr.set_default_route6(v6.addr(0x99), "eth0");
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk, "eth0").spawn();
    vm.expect_log(
        "the IPv6 gateway fd00:1::99 did not answer neighbour discovery",
        Duration::from_secs(30),
    );
    let r = report(&vm);
    let global: Vec<&str> = r.global6("eth0").iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(global, [format!("{}/128", nic.ip6())]);
    assert!(
        r.routes6
            .iter()
            .any(|l| l.starts_with("fd00:1::/64 dev eth0"))
    );
    assert!(
        r.default_routes6().is_empty(),
        "no hairpin: {:#?}",
        r.routes6
    );
    assert!(net.peer_ping6(nic.ip6()), "{}", vm.tails());
    stop(&vm);
}

/// Runs vminit (stand-in QEMU) expecting it to refuse: exit `code`, one error line with
/// every needle, the namespace unchanged.
fn expect_refusal(ctr: &Container, vm: VminitBuilder, code: i32, needles: &[&str]) {
    let before = ctr.net_state();
    let log = vm.expect_refusal(code, needles, Duration::from_secs(30));
    assert!(
        !log.lines().any(|l| l.starts_with("vminit: ip ")),
        "refused before any change:\n{log}"
    );
    assert_restored(ctr, &before, "after the refusal");
}

#[test]
fn an_ipv6_selected_network_matching_no_address_is_refused_and_nothing_changes() {
    let net = Network::dual_stack(1);
    let (ctr, _) = docker_ipv6_container(&net, 2);
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let vm = standin_vm(&ctr, &disk, &log).env("SELECTED_NETWORK", "10.1.0.0/24,fd00:9::/64");
    expect_refusal(
        &ctr,
        vm,
        64,
        &["SELECTED_NETWORK", "fd00:9::/64", "no IPv6 address of eth0"],
    );
}

#[test]
fn without_net_raw_the_ipv6_announcements_cannot_be_made_and_the_capability_is_named() {
    let net = Network::dual_stack(1);
    let (ctr, _) = docker_ipv6_container(&net, 2);
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let vm = standin_vm(&ctr, &disk, &log).cap_drop("net_raw");
    expect_refusal(&ctr, vm, 69, &["packet socket", "NET_RAW"]);
}

#[test]
fn a_kill_after_any_step_of_a_dual_stack_takeover_is_recovered_by_the_next_run() {
    let net = Network::dual_stack(1);
    let (ctr, nic) = docker_ipv6_container(&net, 2);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let mut k = 1;
    while standin_vm(&ctr, &disk, &log).killed_at(&format!("setup:{k}")) {
        // The next run recovers, and a stop puts everything back.
        let vm = standin_vm(&ctr, &disk, &log).spawn();
        vm.expect_log("QEMU running", Duration::from_secs(30));
        let addrs = ctr.exec("ip -6 -o addr show dev eth0").stdout;
        assert!(
            !addrs.contains(&format!(" {}/", nic.ip6())),
            "step {k}: {addrs}"
        );
        vm.kill(Signal::SIGTERM);
        vm.expect_exit(STOP);
        assert_restored(&ctr, &before, &format!("killed after setup step {k}"));
        k += 1;
    }
    assert!(k > 15, "a dual-stack takeover has more steps than {k}");
}

#[test]
fn a_dual_stack_network_connected_while_the_guest_runs_brings_its_ipv6_along() {
    let (n1, n2) = (Network::dual_stack(1), Network::dual_stack(2));
    let (ctr, _) = docker_ipv6_container(&n1, 2);
    let disk = ScratchDisk::new();
    let vm = ctr
        .vminit_with_guest(&disk, "vminit_test_hotplug=1 vminit_test_ipv6=eth0")
        .spawn();
    report(&vm);
    // docker network connect: a second dual-stack NIC.
    let v6 = n2.net6().clone();
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 7).addr6(&v6.cidr(v6.addr(7))));
    vm.console()
        .wait_for_whole_line(&format!("mac={} ip=", eth1.mac), Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the guest never got {}\n{}", eth1.mac, vm.tails()));
    // The guest gets the new NIC's IPv6 address and prefix: the peer on the new network
    // reaches it there, answered by the container's MAC.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !n2.peer_ping6(eth1.ip6()) {
        assert!(std::time::Instant::now() < deadline, "{}", vm.tails());
    }
    assert_eq!(
        n2.peer_neighbour_mac_of(&eth1.ip6().to_string()).as_deref(),
        Some(eth1.mac.as_str())
    );
    assert!(
        n1.peer_ping6(n1.net6().addr(2)),
        "the first NIC's IPv6 still works"
    );
    stop(&vm);
}

// ---------------------------------------------------------------------------------------------
// IPv6-only NICs: IPv6 and no IPv4 (a Docker network made with `--ipv6 --ipv4=false`, an
// IPv6-only pod). The guest gets everything but IPv4; nothing is handed out over DHCPv4.

/// A container on an IPv6-only network: `eth0` with fd00:N::`host`/64 alone (a MAC of its own),
/// its IPv6 default route through the bridge.
pub(crate) fn ipv6_only_container(net: &Network, host: u8) -> (Container, common::Nic) {
    let ctr = Container::with_ipv6();
    let v6 = net.net6();
    let nic = ctr.add_nic(
        net,
        NicSpec::new()
            .mac(&format!("02:42:fd:00:{:02x}:{host:02x}", net.index))
            .addr6(&v6.cidr(v6.addr(u16::from(host)))),
    );
    ctr.set_default_route6(v6.gateway, "eth0");
    (ctr, nic)
}

/// The guest has `nic` (by its MAC) without any IPv4: no address, no DHCPv4 lease.
fn assert_no_ipv4(r: &GuestReport, name: &str, nic: &common::Nic) {
    let guest = r
        .nic(name)
        .unwrap_or_else(|| panic!("guest {name}: {r:#?}"));
    assert_eq!(guest.mac, nic.mac, "{guest:?}");
    assert!(
        guest.addrs.is_empty() && guest.dhcp.is_none(),
        "nothing over DHCPv4 for {name}: {guest:?}"
    );
    assert!(
        !r.routes.iter().any(|l| l.contains(&format!(" dev {name}"))),
        "{:#?}",
        r.routes
    );
}

#[test]
fn an_ipv6_only_nic_gives_the_guest_its_ipv6_address_route_and_mac_and_nothing_over_dhcpv4() {
    let net = Network::dual_stack(1);
    let v6 = net.net6().clone();
    let (ctr, nic) = ipv6_only_container(&net, 2);
    let before = ctr.net_state();
    let listener = net.peer_listen(ANNOUNCEMENTS);
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk, "eth0")
        .resolv_conf("nameserver 127.0.0.11\nnameserver fd00:1::53\n")
        .spawn();

    let r = report(&vm);
    assert_no_ipv4(&r, "eth0", &nic);
    assert_eq!(r.nic("eth0").map(|n| n.mtu), Some(nic.mtu));
    // No DHCPv4 resolver: DHCPv6 carries the IPv6 one (and the advertisements' RDNSS), after
    // the door, which the guest asks over IPv6 at its link-local address (the door has IPv6
    // here; tests/ns/dns.rs resolves through it).
    let dns6 = &r.dhcp6["eth0"]["dns6"];
    assert!(
        dns6.starts_with("fe80::") && dns6.ends_with(",fd00:1::53"),
        "{:?}",
        r.dhcp6
    );
    assert_eq!(r.dns.len(), 2, "{r:#?}");
    assert!(
        r.dns[0].starts_with("fe80::") && r.dns[0].ends_with("%eth0"),
        "{r:#?}"
    );
    assert_eq!(r.dns[1], "fd00:1::53", "{r:#?}");
    assert!(!vm.log().text().contains("cannot ask the door"));
    let global: Vec<&str> = r.global6("eth0").iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(global, [format!("{}/128", nic.ip6())], "{r:#?}");
    assert!(
        r.routes6
            .iter()
            .any(|l| l.starts_with("fd00:1::/64 dev eth0 ")),
        "the container's prefix, on-link: {:#?}",
        r.routes6
    );
    assert_routes_through_the_gateway(&r, &v6);
    // dnsmasq has no DHCP host for it (it serves the door resolver only); it did not answer
    // the guest's DHCPv4 discovers.
    let hosts = std::fs::read_to_string(vm.container_path("/run/vminit.dhcp/hosts"))
        .expect("the DHCP hosts");
    assert!(!hosts.contains(&nic.mac), "{hosts}");
    let log = vm.log().text();
    assert!(
        !log.contains("DHCPOFFER") && !log.contains("DHCPACK"),
        "dnsmasq answers nothing there: {}",
        vm.tails()
    );

    // A peer reaches the guest at the container's IPv6 address, answered by its MAC; the guest
    // reaches a host beyond the gateway.
    assert!(net.peer_ping6(nic.ip6()), "{}", vm.tails());
    assert_eq!(
        net.peer_neighbour_mac_of(&nic.ip6().to_string()).as_deref(),
        Some(nic.mac.as_str())
    );
    guest_run(
        &vm,
        &format!("ping -6 -c 2 -W 2 {} && echo PING6-$((40+2))", v6.far),
        "PING6-42",
    );
    let heard = listener.stop();
    assert!(heard.is_empty(), "{heard:#?}");
    stop(&vm);
    assert_restored(&ctr, &before, "after the stop");
}

#[test]
fn an_ipv6_only_nic_comes_back_exactly_after_a_stop_a_sigkill_and_a_kill_after_any_step() {
    let net = Network::dual_stack(1);
    let (ctr, nic) = ipv6_only_container(&net, 2);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let vm = standin_vm(&ctr, &disk, &log).spawn();
    vm.expect_log("QEMU running", Duration::from_secs(30));
    // While the guest runs: the container holds neither the guest's IPv6 address nor the
    // link-local address the guest derives from its MAC; the door has its link-local IPv4
    // address (numbered by the IPv6 host part: fd00:1::2 -> 169.254.1.3) and no route to a
    // guest IPv4 address.
    let addrs = ctr.exec("ip -o addr show").stdout;
    assert!(!addrs.contains(&format!(" {}/", nic.ip6())), "{addrs}");
    let guest_ll = eui64_link_local(&nic.mac);
    assert!(!addrs.contains(&format!(" {guest_ll}/")), "{addrs}");
    assert!(
        addrs
            .lines()
            .any(|l| l.contains("vmlink0") && l.contains("inet 169.254.1.3/32")),
        "{addrs}"
    );
    let routes = ctr.exec("ip route show dev vmlink0").stdout;
    assert!(routes.trim().is_empty(), "no IPv4 route: {routes}");
    vm.kill(Signal::SIGTERM);
    vm.expect_exit(STOP);
    assert_restored(&ctr, &before, "after a stop");

    // A SIGKILL while the guest runs: the next run puts everything back first.
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
    assert_restored(
        &ctr,
        &before,
        "after a SIGKILL, a recovering run and a stop",
    );

    // A kill after each step of the takeover.
    let mut k = 1;
    while standin_vm(&ctr, &disk, &log).killed_at(&format!("setup:{k}")) {
        let vm = standin_vm(&ctr, &disk, &log).spawn();
        vm.expect_log("QEMU running", Duration::from_secs(30));
        vm.kill(Signal::SIGTERM);
        vm.expect_exit(STOP);
        assert_restored(&ctr, &before, &format!("killed after setup step {k}"));
        k += 1;
    }
    assert!(k > 10, "an IPv6-only takeover has more steps than {k}");
}

#[test]
fn an_ipv6_only_network_connected_while_the_guest_runs_becomes_a_guest_nic() {
    let (n1, n2) = (Network::dual_stack(1), Network::dual_stack(2));
    let (ctr, eth0) = docker_ipv6_container(&n1, 2);
    let disk = ScratchDisk::new();
    let vm = ctr
        .vminit_with_guest(&disk, "vminit_test_hotplug=1 vminit_test_ipv6=eth0")
        .spawn();
    report(&vm);
    // docker network connect to an IPv6-only network.
    let v6 = n2.net6().clone();
    let eth1 = ctr.add_nic(
        &n2,
        NicSpec::new()
            .mac("02:42:fd:00:02:07")
            .addr6(&v6.cidr(v6.addr(7))),
    );
    vm.expect_log(
        &format!(
            "eth1: plugged into the guest as vmtap1 ({}, IPv6 only)",
            eth1.mac
        ),
        Duration::from_secs(30),
    );
    // The guest's hot-plug handling asks DHCPv4 in vain, then reports the NIC.
    vm.console()
        .wait_for_whole_line(
            &format!("mac={} ip=none", eth1.mac),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|| panic!("the guest never reported {}\n{}", eth1.mac, vm.tails()));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !n2.peer_ping6(eth1.ip6()) {
        assert!(std::time::Instant::now() < deadline, "{}", vm.tails());
    }
    assert_eq!(
        n2.peer_neighbour_mac_of(&eth1.ip6().to_string()).as_deref(),
        Some(eth1.mac.as_str())
    );
    let hosts = std::fs::read_to_string(vm.container_path("/run/vminit.dhcp/hosts"))
        .expect("the DHCP hosts");
    assert!(!hosts.contains(&eth1.mac), "{hosts}");
    assert!(n1.peer_ping(eth0.ip()), "the first NIC's IPv4 still works");
    assert!(n1.peer_ping6(eth0.ip6()), "and its IPv6");
    stop(&vm);
}

#[test]
fn a_dual_stack_container_whose_first_nic_is_ipv6_only_serves_each_family_on_its_own_nic() {
    let (n1, n2) = (Network::dual_stack(1), Network::dual_stack(2));
    let ctr = Container::with_ipv6();
    // eth0: IPv6 only, no default route; eth1: dual stack with both default routes.
    let v61 = n1.net6().clone();
    let eth0 = ctr.add_nic(
        &n1,
        NicSpec::new()
            .name("eth0")
            .mac("02:42:fd:00:01:02")
            .addr6(&v61.cidr(v61.addr(2))),
    );
    let v62 = n2.net6().clone();
    let eth1 = ctr.add_nic(
        &n2,
        NicSpec::docker(&n2, 3)
            .name("eth1")
            .addr6(&v62.cidr(v62.addr(3))),
    );
    ctr.set_default_route(n2.gateway, "eth1");
    ctr.set_default_route6(v62.gateway, "eth1");
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk, "eth0,eth1")
        .resolv_conf("nameserver 127.0.0.11\nsearch corp.example.test\n")
        .spawn();

    let r = report(&vm);
    assert_no_ipv4(&r, "eth0", &eth0);
    let g0: Vec<&str> = r.global6("eth0").iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(g0, [format!("{}/128", eth0.ip6())], "{r:#?}");
    assert!(
        r.routes6
            .iter()
            .any(|l| l.starts_with("fd00:1::/64 dev eth0 ")),
        "{:#?}",
        r.routes6
    );
    // eth1 is the primary NIC (the first with IPv4): the IPv4 default route, the door
    // resolver and the search list; and the only IPv6 default route.
    let g1 = r.nic("eth1").expect("guest eth1");
    assert_eq!(g1.addrs, [n2.cidr(n2.addr(3))]);
    assert_eq!(
        r.default_routes(),
        [format!("default via {} dev eth1", n2.gateway)]
    );
    let dhcp = g1.dhcp.as_ref().expect("a DHCP lease on eth1");
    assert!(dhcp["dns"].starts_with("169.254."), "{dhcp:?}");
    assert_eq!(dhcp["search"], "corp.example.test");
    let g: Vec<&str> = r.global6("eth1").iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(g, [format!("{}/128", eth1.ip6())]);
    let defaults6 = r.default_routes6();
    assert_eq!(defaults6.len(), 1, "{:#?}", r.routes6);
    assert!(
        defaults6[0].starts_with(&format!("default via {} dev eth1 ", v62.gateway_ll)),
        "{defaults6:?}"
    );

    assert!(n1.peer_ping6(eth0.ip6()), "{}", vm.tails());
    assert_eq!(
        n1.peer_neighbour_mac_of(&eth0.ip6().to_string()).as_deref(),
        Some(eth0.mac.as_str())
    );
    assert!(n2.peer_ping(eth1.ip()), "{}", vm.tails());
    assert!(n2.peer_ping6(eth1.ip6()), "{}", vm.tails());
    stop(&vm);
    assert_restored(&ctr, &before, "after the stop");
}

#[test]
fn sigterm_while_the_ipv6_gateway_is_asked_ends_the_wait_at_once_and_puts_the_network_back() {
    let net = Network::dual_stack(1);
    let ctr = Container::with_ipv6();
    let v6 = net.net6().clone();
    ctr.add_nic(&net, NicSpec::docker(&net, 2).addr6(&v6.cidr(v6.addr(2))));
    ctr.set_default_route(net.gateway, "eth0");
    // Nobody has fd00:1::99: vminit would wait 3 s for it.
    ctr.set_default_route6(v6.addr(0x99), "eth0");
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let vm = standin_vm(&ctr, &disk, &log).spawn();
    vm.expect_log(
        "asking the IPv6 gateway fd00:1::99",
        Duration::from_secs(30),
    );
    // The gateway is asked while QEMU starts, never before.
    let text = vm.log().text();
    assert!(
        text.find("QEMU running") < text.find("asking the IPv6 gateway"),
        "{text}"
    );
    let sent = std::time::Instant::now();
    vm.kill(Signal::SIGTERM);
    vm.expect_exit(Duration::from_secs(15));
    assert!(
        !vm.log()
            .text()
            .contains("did not answer neighbour discovery"),
        "the wait ended at the signal, not at its timeout ({:?} later)\n{}",
        sent.elapsed(),
        vm.tails()
    );
    assert_restored(&ctr, &before, "after the stop");
}

#[test]
fn a_gateway_that_answers_only_after_qemu_started_is_still_the_guests_first_router() {
    let net = Network::dual_stack(1);
    let v6 = net.net6().clone();
    let (ctr, nic) = docker_ipv6_container(&net, 2);
    let before = ctr.net_state();
    // The gateway's address leaves the bridge: nothing answers for it until it comes back.
    let gateway = format!("{}/64", v6.gateway);
    net.host_exec(&format!("ip -6 addr del {gateway} dev {}", net.bridge));
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk, "eth0").spawn();
    vm.expect_log("QEMU running", BOOT);
    vm.expect_log(
        &format!("asking the IPv6 gateway {}", v6.gateway),
        Duration::from_secs(30),
    );
    // Back once QEMU runs, with duplicate address detection (as a new bridge address gets
    // it): tentative for about a second, when it ignores solicitations, then answering.
    let added = net.host_exec(&format!("ip -6 addr add {gateway} dev {}", net.bridge));
    assert!(added.success(), "{added}");
    let found = format!(
        "IPv6 gateway {} is {} at {} (found in",
        v6.gateway, v6.gateway_ll, v6.gateway_mac
    );
    vm.expect_log(&found, Duration::from_secs(30));

    let r = report(&vm);
    let text = vm.log().text();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in\n{text}"))
    };
    assert!(
        at("QEMU running") < at(&found),
        "learned while QEMU starts:\n{text}"
    );
    // Every advertisement, the first answer to the guest's solicitation among them, names
    // the gateway as the default router; none was made before the gateway answered.
    let adverts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("advertising to the guest"))
        .collect();
    assert!(!adverts.is_empty(), "{text}");
    let router = format!(
        "router {} ({}): default route",
        v6.gateway_ll, v6.gateway_mac
    );
    assert!(adverts.iter().all(|l| l.contains(&router)), "{adverts:#?}");
    assert!(at(&found) < at("advertising to the guest"), "{text}");
    assert!(
        text.contains("eth0: DHCPv6: "),
        "the guest's DHCPv6 request was answered:\n{text}"
    );
    // The guest holds the container's address and its route through the gateway.
    let global: Vec<&str> = r.global6("eth0").iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(global, [format!("{}/128", nic.ip6())], "{r:#?}");
    assert_routes_through_the_gateway(&r, &v6);
    guest_run(
        &vm,
        &format!("ping -6 -c 2 -W 2 {} && echo PING6-$((40+2))", v6.far),
        "PING6-42",
    );
    stop(&vm);
    assert_restored(&ctr, &before, "after the stop");
}

#[test]
fn health_asks_the_guest_for_its_ipv6_address_too_names_it_when_lost_and_never_makes_a_tentative_one_fail()
 {
    let net = Network::dual_stack(1);
    let ctr = Container::with_ipv6();
    let v6 = net.net6().clone();
    let nic = ctr.add_nic(&net, NicSpec::docker(&net, 2).addr6(&v6.cidr(v6.addr(2))));
    ctr.set_default_route(net.gateway, "eth0");
    ctr.set_default_route6(v6.addr(1), "eth0");
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk, "eth0").spawn();
    report(&vm);
    let (code, text) = vm.health(2);
    assert_eq!(code, 0, "{text}\n{}", vm.tails());
    assert!(
        text.starts_with("healthy: the guest holds its 2 addresses"),
        "{text}"
    );
    // (The shell repeats the typed line: only the output has the marker whole.)
    guest_run(
        &vm,
        "ip -6 addr flush dev eth0 scope global; echo FLUS''HED6",
        "FLUSHED6",
    );
    vm.health(2);
    std::thread::sleep(Duration::from_secs(3));
    let (code, text) = vm.health(2);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "eth0: the guest does not answer for {}",
            nic.ip6()
        )),
        "{text}"
    );
    assert!(
        !text.contains(&nic.ip().to_string()),
        "IPv4 still held: {text}"
    );
    // The guest takes its address again, with duplicate address detection for five seconds
    // (a DHCPv6 client binding it, slowly).
    guest_run(
        &vm,
        &format!(
            "echo 5 >/proc/sys/net/ipv6/conf/eth0/dad_transmits; \
             ip -6 addr add {}/128 dev eth0; echo READ''DED6",
            nic.ip6()
        ),
        "READDED6",
    );
    // Asked meanwhile (Docker's HEALTHCHECK may run at any time): a tentative address is not
    // held yet.
    let (_, text) = vm.health(2);
    assert!(text.contains(&nic.ip6().to_string()), "{text}");
    vm.health(2);
    // Once its detection is over, the guest holds it: the questions were not taken for
    // another node's duplicate address detection.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (code, text) = loop {
        let (code, text) = vm.health(2);
        if code == 0 || std::time::Instant::now() > deadline {
            break (code, text);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut guest_addrs = String::new();
    if code != 0 {
        let from = vm.console().len();
        guest_run(&vm, "ip -6 addr show dev eth0; echo SHO''WN", "SHOWN");
        guest_addrs = vm.console().text_from(from);
    }
    assert_eq!(
        (code, text.lines().next()),
        (0, Some("healthy: the guest holds its 2 addresses")),
        "{text}\nthe guest's addresses:\n{guest_addrs}"
    );
    stop(&vm);
}

#[test]
fn when_the_ipv6_default_route_network_leaves_the_other_nic_announces_the_new_router() {
    let (n1, n2) = (Network::dual_stack(1), Network::dual_stack(2));
    let (ctr, _) = docker_ipv6_container(&n1, 2);
    let v6 = n2.net6().clone();
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 7).addr6(&v6.cidr(v6.addr(7))));
    let disk = ScratchDisk::new();
    let vm = ctr
        .vminit_with_guest(&disk, "vminit_test_hotplug=1 vminit_test_ipv6=eth0,eth1")
        .spawn();
    report(&vm);

    // docker network disconnect of the network with both default routes: Docker routes the
    // container through the other network's gateways (`ip -6 route add default via GW`).
    let mark = vm.console().len();
    ctr.remove_nic("eth0");
    vm.expect_console_from(mark, "GUEST-HOTPLUG removed eth0", Duration::from_secs(60));
    let moved = ctr.exec(&format!("ip -6 route add default via {}", v6.gateway));
    assert!(moved.success(), "{moved}");
    vm.expect_log(
        "eth1 now holds the container's IPv6 default route",
        Duration::from_secs(30),
    );

    // The guest's next router advertisement on that NIC gives it the route: at once.
    vm.type_console(
        "for i in $(seq 30); do ip -6 route show default | grep -q 'dev eth1' && break; sleep 1; done; \
         echo ROUTE6=$(ip -6 route show default | cut -d' ' -f1-5 | tr ' ' _)\n",
    );
    let line = vm
        .console()
        .wait_for_whole_line("ROUTE6=default_via_fe80:", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no IPv6 default route on eth1\n{}", vm.tails()));
    assert!(line.line.contains("_dev_eth1"), "{}", line.line);
    // Through it, the guest reaches beyond the new gateway.
    assert!(n2.peer_ping6(eth1.ip6()), "{}", vm.tails());
    stop(&vm);
}
