//! End to end with real distributions: Debian 12 guests built from Debian's archive
//! (tests/distro/build-images.sh), each with its own kernel, initramfs, systemd and network
//! stack — systemd-networkd (+ systemd-resolved), ifupdown + isc-dhcp-client, NetworkManager —
//! take over container NICs through vminit. Every fact asserted is what the guest's own tools
//! report once the distribution says its network is online (the `DISTRO-REPORT` block), what
//! the networks' peers see, and a clean ACPI poweroff on SIGTERM (`docker stop`).
//!
//! The matrix (docs/testing.md, "Distribution guests"): every client boots three times —
//! a Calico `/32` pod NIC with a cluster DNS server behind the gateway (one NIC, the pod
//! shape), two Docker networks with different MTUs, the first dual-stack (a Docker `--ipv6`
//! network: the guest's IPv6 comes from vminit's router advertisements and DHCPv6), with Docker's
//! loopback resolver and an IPv6 one, and two networks with a resolver on the first network's
//! subnet (the multi-NIC DNS case of issue 15).

#[path = "../common/mod.rs"]
mod common;

mod cloud;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use common::{
    Container, DistroGuest, DistroReport, DnsServer, Network, Nic, NicSpec, OverlayDisk, Vminit,
    VminitBuilder, distro_guest, vminit_binary,
};
use nix::sys::signal::Signal;

/// A systemd boot under TCG takes about 30 s alone; four at once on two cores, much longer.
const BOOT: Duration = Duration::from_secs(600);
/// systemd's poweroff under TCG, with the same margin.
const STOP: Duration = Duration::from_secs(240);

/// vminit as a user would run it for a systemd guest: more memory than the test guest, and a
/// stop timeout a systemd poweroff fits in.
fn vminit<'c>(
    ctr: &'c Container,
    guest: &DistroGuest,
    disk: &OverlayDisk,
    extra_cmdline: &str,
) -> VminitBuilder<'c> {
    ctr.vminit(&vminit_binary())
        .env("AUTO_ATTACH", "yes")
        .env("ACCEL", "tcg")
        .env("RAM_SIZE", "512M")
        .env("STOP_TIMEOUT", "200")
        .env("VMINIT_DISK", &disk.path)
        .args(guest.qemu_args(extra_cmdline))
}

/// Waits for the guest's report and parses it; logs how long the boot took.
fn report(vm: &Vminit, guest: &DistroGuest, started: Instant) -> DistroReport {
    vm.expect_console("DISTRO-REPORT end", BOOT);
    let report = DistroReport::parse(&vm.console().text()).expect("a complete DISTRO-REPORT");
    eprintln!(
        "{}: network reported {:.1} s after vminit started (guest uptime {:.1} s); {}",
        guest.name,
        started.elapsed().as_secs_f64(),
        report.uptime,
        report.client
    );
    eprintln!("  {}", report.lines.join("\n  "));
    report
}

/// Types `command` at the guest's root shell (distro-shell.service on ttyS0) once it answers,
/// and waits for `expect` in what follows. Write `expect` so that the typed line (which the
/// terminal echoes) cannot contain it, e.g. `echo OK-$((40+2))` and `OK-42`.
fn guest_run(vm: &Vminit, command: &str, expect: &str) {
    let mut ready = false;
    for _ in 0..10 {
        let from = vm.console().len();
        vm.type_console("echo SHELL-READY-$((6*7))\n");
        if vm
            .console()
            .wait_for_from(from, "SHELL-READY-42", Duration::from_secs(15))
            .is_some()
        {
            ready = true;
            break;
        }
    }
    assert!(ready, "the guest's shell never answered\n{}", vm.tails());
    let from = vm.console().len();
    vm.type_console(&format!("{command}\n"));
    vm.expect_console_from(from, expect, Duration::from_secs(60));
}

/// `docker stop`: SIGTERM to vminit, which presses the power button; systemd stops its units
/// and powers off; vminit exits 0.
fn power_off(vm: &Vminit) {
    let started = Instant::now();
    vm.kill(Signal::SIGTERM);
    let status = vm.expect_exit(STOP);
    let console = vm.console().text();
    assert_eq!(
        status.code(),
        Some(0),
        "vminit's exit status\n{}",
        vm.tails()
    );
    assert!(
        console.contains("DISTRO-REPORT stopping"),
        "systemd stopped its units (an orderly shutdown)\n{}",
        vm.tails()
    );
    assert!(
        console.contains("reboot: Power down"),
        "the kernel powered off\n{}",
        vm.tails()
    );
    eprintln!("powered off in {:.1} s", started.elapsed().as_secs_f64());
}

/// The guest NIC that took over `nic` (found by its MAC); asserts its address and MTU.
fn guest_nic<'r>(r: &'r DistroReport, nic: &Nic, what: &str) -> &'r str {
    let g = r.nic_with_mac(&nic.mac).unwrap_or_else(|| {
        panic!(
            "{what}: no guest NIC has the container's MAC {}: {r:#?}",
            nic.mac
        )
    });
    assert_eq!(
        g.addrs, nic.addrs,
        "{what}: the guest's addresses on {}",
        g.name
    );
    assert_eq!(g.mtu, nic.mtu, "{what}: the guest's MTU on {}", g.name);
    &g.name
}

/// Asserts the guest's one default route: via `gateway`, out of `dev`.
fn assert_one_default_route(r: &DistroReport, gateway: Ipv4Addr, dev: &str) {
    assert_eq!(
        r.default_routes(),
        vec![(gateway.to_string(), dev.to_owned())],
        "exactly one default route; the guest's routes: {:#?}",
        r.routes
    );
}

/// `a.b.c.d/p` contains `addr`.
fn in_subnet(cidr: &str, addr: Ipv4Addr) -> bool {
    let (net, prefix) = cidr.split_once('/').expect("ADDR/PREFIX");
    let net: Ipv4Addr = net.parse().expect("an IPv4 address");
    let prefix: u32 = prefix.parse().expect("a prefix length");
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(net) & mask == u32::from(addr) & mask
}

/// `a:b::/p` (an address with its prefix length) contains `addr`.
fn in_subnet6(cidr: &str, addr: Ipv6Addr) -> bool {
    let (net, prefix) = cidr.split_once('/').expect("ADDR/PREFIX");
    let net: Ipv6Addr = net.parse().expect("an IPv6 address");
    let prefix: u32 = prefix.parse().expect("a prefix length");
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(net) & mask == u128::from(addr) & mask
}

/// The container NIC through which the guest can reach `server`: for IPv4, the NIC whose door
/// (vminit's link-local address in the container, alias `vminit:door ethN`) holds it, else the
/// NIC whose subnet holds it; for IPv6, the NIC whose prefix holds it; else `default`, the NIC
/// with the default route.
fn nic_reaching(ctr: &Container, default: &Nic, server: IpAddr) -> Nic {
    let nics = ctr.nics();
    let server = match server {
        IpAddr::V4(server) => server,
        IpAddr::V6(server) => {
            return nics
                .iter()
                .find(|n| n.addrs6.iter().any(|a| in_subnet6(a, server)))
                .unwrap_or(default)
                .clone();
        }
    };
    // "7: vmlink0@eth0: <...> ... link/ether ... alias vminit:door eth0"
    let links = ctr.exec("ip -o link show").stdout;
    for line in links.lines() {
        let Some((_, lower)) = line.split_once("alias vminit:door ") else {
            continue;
        };
        let door = line
            .split_whitespace()
            .nth(1)
            .map(|n| n.trim_end_matches(':').split('@').next().unwrap_or(n))
            .unwrap_or_default();
        let addrs = ctr.exec(&format!("ip -o -4 addr show dev {door}")).stdout;
        if addrs.contains(&format!(" {server}/")) {
            let lower = lower.split_whitespace().next().unwrap_or_default();
            if let Some(nic) = nics.iter().find(|n| n.name == lower) {
                return nic.clone();
            }
        }
    }
    nics.iter()
        .find(|n| n.addrs.iter().any(|a| in_subnet(a, server)))
        .unwrap_or(default)
        .clone()
}

/// Asserts that every resolver the guest uses (of either family) is routed out of the guest NIC
/// through which it can be reached.
fn assert_resolvers_routed(r: &DistroReport, ctr: &Container, default: &Nic) {
    let servers = r.dns_servers();
    assert!(
        !servers.is_empty(),
        "the guest has a resolver\n{}",
        r.dns_summary()
    );
    for server in servers {
        let addr: IpAddr = server.parse().expect("a resolver's address");
        assert!(
            !addr.is_loopback(),
            "no loopback resolver\n{}",
            r.dns_summary()
        );
        let nic = nic_reaching(ctr, default, addr);
        let want = &r.nic_with_mac(&nic.mac).expect("the guest NIC").name;
        let got = r.route_to(&server).map(|g| g.dev.as_str());
        assert_eq!(
            got,
            Some(want.as_str()),
            "`ip route get {server}` must leave by {want} (the container's {}), the NIC it is \
             reachable through\n{}",
            nic.name,
            r.dns_summary()
        );
    }
}

/// Asserts that `name` resolved, through the guest's own resolver, to exactly `addr`.
fn assert_resolves(r: &DistroReport, name: &str, addr: Ipv4Addr, dns: &DnsServer) {
    assert_eq!(
        r.resolved.get(name),
        Some(&vec![addr.to_string()]),
        "the guest resolves {name}\n{}--- the resolver's log\n{}",
        r.dns_summary(),
        dns.log()
    );
}

/// Asserts that the network's peer reaches the guest at `nic`'s address and that the guest
/// answered ARP with `nic`'s MAC.
fn assert_peer_reaches(net: &Network, nic: &Nic, vm: &Vminit) {
    net.peer_flush_neighbours();
    assert!(
        net.peer_ping(nic.ip()),
        "the peer of 10.{}.0.0/24 pings the guest at {}\n{}",
        net.index,
        nic.ip(),
        vm.tails()
    );
    assert_eq!(
        net.peer_neighbour_mac(nic.ip()).as_deref(),
        Some(nic.mac.as_str()),
        "the container's MAC answers for {}",
        nic.ip()
    );
}

/// Asserts the guest's IPv6 identity on `dev`, the guest NIC that took over `nic` on the
/// dual-stack network `net`: the container's address alone (DHCPv6 carries no prefix length, so
/// Linux clients hold it as a /128), past duplicate address detection; the container's prefix
/// on-link (the router advertisement's); exactly one IPv6 default route, through the real
/// gateway's link-local address; the IPv6 MTU of the NIC.
fn assert_ipv6_identity(r: &DistroReport, net: &Network, nic: &Nic, dev: &str) {
    let v6 = net.net6();
    let global: Vec<&str> = r.global6(dev).iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(
        global,
        [format!("{}/128", nic.ip6())],
        "{}: the guest's global IPv6 addresses on {dev}: {:#?}",
        r.client,
        r.addrs6
    );
    assert!(
        r.addrs6
            .iter()
            .filter(|a| a.nic == dev)
            .all(|a| !a.flags.iter().any(|f| f == "tentative" || f == "dadfailed")),
        "duplicate address detection passed on {dev}: {:#?}",
        r.addrs6
    );
    let prefix = format!("{}/{} ", v6.addr(0), v6.prefix);
    assert!(
        r.routes6.iter().any(|l| l.starts_with(&prefix)
            && !l.contains(" via ")
            && l.contains(&format!(" dev {dev} "))),
        "{}: the container's prefix {prefix}on-link on {dev}: {:#?}",
        r.client,
        r.routes6
    );
    assert_eq!(
        r.default_routes6(),
        vec![(v6.gateway_ll.to_string(), dev.to_owned())],
        "exactly one IPv6 default route, through the gateway's link-local address; the \
         guest's IPv6 routes: {:#?}",
        r.routes6
    );
    let g = r
        .nics
        .iter()
        .find(|n| n.name == dev)
        .expect("the guest NIC");
    assert_eq!(g.mtu6, Some(nic.mtu), "the IPv6 MTU of {dev}");
}

/// Asserts that the network's peer reaches the guest at `nic`'s IPv6 address and that the
/// guest answered neighbour discovery with `nic`'s MAC.
fn assert_peer_reaches6(net: &Network, nic: &Nic, vm: &Vminit) {
    net.peer_flush_neighbours();
    assert!(
        net.peer_ping6(nic.ip6()),
        "the peer pings the guest at {}\n{}",
        nic.ip6(),
        vm.tails()
    );
    assert_eq!(
        net.peer_neighbour_mac_of(&nic.ip6().to_string()).as_deref(),
        Some(nic.mac.as_str()),
        "the container's MAC answers for {}",
        nic.ip6()
    );
}

/// Asserts that systemd reports no failed unit.
fn assert_clean_boot(r: &DistroReport) {
    assert!(
        r.failed_units.is_empty(),
        "failed units: {:?}",
        r.failed_units
    );
}

/// One NIC, the Calico pod shape (10.1.0.7/32, `default via 169.254.1.1 dev eth0 onlink`),
/// with the cluster's DNS server (10.96.0.10, a service address routed to the network's peer)
/// in resolv.conf, as Kubernetes writes it.
fn pod_nic(client: &str) {
    let guest = distro_guest(client);
    let net = Network::new(1);
    let ctr = Container::new();
    let nic = ctr.add_nic(&net, NicSpec::k8s(&net, 7));
    ctr.set_k8s_default_route(&net, "eth0");
    // The cluster DNS service: 10.96.0.10 on the peer, routed there by the node.
    let cluster_dns = Ipv4Addr::new(10, 96, 0, 10);
    net.peer_ns()
        .ip(&["addr", "add", "10.96.0.10/32", "dev", "lo"]);
    net.host_ns().ip(&[
        "route",
        "add",
        "10.96.0.10/32",
        "via",
        &net.peer_ip.to_string(),
    ]);
    // Not under cluster.local: systemd-resolved sends every *.local name to mDNS unless the
    // link has that domain as a search or routing domain, which networkd does not take from
    // DHCP by default (UseDomains=no). A Kubernetes cluster domain other than cluster.local.
    let name = "web.default.svc.cluster.test";
    let dns = DnsServer::start(net.peer_ns(), cluster_dns, &[(name, net.peer_ip)]);
    let disk = guest.disk();
    let started = Instant::now();
    let vm = vminit(
        &ctr,
        &guest,
        &disk,
        &format!("distro_report.resolve={name}"),
    )
    .resolv_conf(
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local \
             cluster.local\noptions ndots:5\n",
    )
    .spawn();

    let r = report(&vm, &guest, started);
    let dev = guest_nic(&r, &nic, "the pod NIC");
    assert_eq!(r.nics.len(), 1, "{:#?}", r.nics);
    assert_one_default_route(&r, common::K8S_GATEWAY, dev);
    assert_eq!(
        r.dns_servers(),
        vec![cluster_dns.to_string()],
        "{}",
        r.dns_summary()
    );
    assert_resolvers_routed(&r, &ctr, &nic);
    assert_resolves(&r, name, net.peer_ip, &dns);
    assert_peer_reaches(&net, &nic, &vm);
    // The guest reaches the network through the on-link gateway.
    guest_run(
        &vm,
        &format!(
            "ping -c 2 -W 3 {} >/dev/null && echo GUEST-PING-$((40+2))",
            net.peer_ip
        ),
        "GUEST-PING-42",
    );
    assert_clean_boot(&r);
    power_off(&vm);
}

/// The host number of the dual-stack NIC in [`two_networks`]: 10.1.0.6 and fd00:1::6, Docker's
/// MAC 02:42:0a:01:00:06, which the ifupdown guest maps to its `inet6 dhcp` stanza
/// (tests/distro/guests/ifupdown/root/etc/network/interfaces).
const DUAL_STACK_HOST: u8 = 6;

/// Two Docker networks with different MTUs (1450 like an overlay, 9000 like a jumbo-frame
/// backend), connected in the order eth1, eth0, with the default route on eth0 and Docker's
/// embedded resolver (127.0.0.11, which vminit forwards through each NIC's door). The first is
/// dual-stack, a Docker `--ipv6` network: fd00:1::/64 with the gateway fd00:1::1 on the bridge,
/// which sends no router advertisements, and the container's IPv6 default route through it. Its
/// resolv.conf keeps the host's IPv6 resolver after Docker's, as Docker writes it for a user
/// network (its embedded server forwards to IPv4 upstreams only): fd00:1::53, on the first
/// network, knowing the same name.
fn two_networks(client: &str) {
    let guest = distro_guest(client);
    let front = Network::dual_stack_with_mtu(1, 1450);
    let v6 = front.net6().clone();
    let back = Network::with_mtu(2, 9000);
    let ctr = Container::with_ipv6();
    let eth1 = ctr.add_nic(&back, NicSpec::docker(&back, 5).name("eth1"));
    let eth0 = ctr.add_nic(
        &front,
        NicSpec::docker(&front, DUAL_STACK_HOST)
            .addr6(&v6.cidr(v6.addr(DUAL_STACK_HOST.into())))
            .name("eth0"),
    );
    ctr.set_default_route(front.gateway, "eth0");
    ctr.set_default_route6(v6.gateway, "eth0");
    // Docker's embedded DNS server: 127.0.0.11 in the container, knowing the peer's name.
    ctr.ns().ip(&["addr", "add", "127.0.0.11/32", "dev", "lo"]);
    let embedded = Ipv4Addr::new(127, 0, 0, 11);
    // It also knows a name the IPv6 resolver does not (as Docker's knows container names).
    let container_name = "web.test";
    let dns = DnsServer::start(
        ctr.ns(),
        embedded,
        &[("peer.test", front.peer_ip), (container_name, back.peer_ip)],
    );
    // ip -6 addr add fd00:1::53/64 dev eth0 nodad (in the peer)
    let resolver6 = v6.addr(0x53);
    front.peer_ns().ip(&[
        "-6",
        "addr",
        "add",
        &v6.cidr(resolver6),
        "dev",
        "eth0",
        "nodad",
    ]);
    let dns6 = DnsServer::start(front.peer_ns(), resolver6, &[("peer.test", front.peer_ip)]);
    let disk = guest.disk();
    let started = Instant::now();
    let vm = vminit(
        &ctr,
        &guest,
        &disk,
        &format!("distro_report.resolve=peer.test,{container_name} distro_report.ipv6=1"),
    )
    .resolv_conf(&format!(
        "nameserver 127.0.0.11\nnameserver {resolver6}\noptions ndots:0\n"
    ))
    .spawn();

    let r = report(&vm, &guest, started);
    assert_eq!(r.nics.len(), 2, "{:#?}", r.nics);
    let dev0 = guest_nic(&r, &eth0, "the front NIC").to_owned();
    let dev1 = guest_nic(&r, &eth1, "the back NIC").to_owned();
    assert_one_default_route(&r, front.gateway, &dev0);
    assert_resolvers_routed(&r, &ctr, &eth0);
    assert_eq!(
        r.resolved.get("peer.test"),
        Some(&vec![front.peer_ip.to_string()]),
        "the guest resolves peer.test\n{}--- Docker's resolver's log\n{}--- the IPv6 \
         resolver's log\n{}",
        r.dns_summary(),
        dns.log(),
        dns6.log()
    );

    // IPv6 on the front NIC, from vminit's router advertisements and DHCPv6.
    assert_ipv6_identity(&r, &front, &eth0, &dev0);
    assert!(
        r.global6(&dev1).is_empty(),
        "the back network has no IPv6: {:#?}",
        r.addrs6
    );
    // What each client makes of the resolvers (docs/testing.md, "Distribution guests"): every
    // client keeps the door (Docker's resolver, forwarded; from DHCPv4), first. The IPv6
    // resolver goes by the router advertisements' RDNSS alone (DHCPv6 carries none while DHCPv4
    // gives a resolver), which systemd-networkd and NetworkManager read; Debian's
    // dhclient-script does not, and writes resolv.conf from its last lease alone, so a DHCPv6
    // resolver would have replaced the door there.
    let (v4, v6_servers): (Vec<String>, Vec<String>) = r
        .dns_servers()
        .into_iter()
        .partition(|s| s.parse::<Ipv4Addr>().is_ok());
    let want6 = if client == "ifupdown" {
        vec![]
    } else {
        vec![resolver6.to_string()]
    };
    assert_eq!(
        (v4.len(), v6_servers),
        (1, want6),
        "{}: the guest's IPv4 resolvers (the door) and IPv6 resolvers\n{}",
        r.client,
        r.dns_summary()
    );
    assert_eq!(
        r.dns_servers().first(),
        v4.first(),
        "the door comes first\n{}",
        r.dns_summary()
    );
    // What a user checks: a name only Docker's resolver knows resolves, through the door.
    assert_eq!(
        r.resolved.get(container_name),
        Some(&vec![back.peer_ip.to_string()]),
        "{}: the guest resolves {container_name} (Docker's resolver only)\n{}--- Docker's \
         resolver's log\n{}",
        r.client,
        r.dns_summary(),
        dns.log()
    );
    assert_peer_reaches(&front, &eth0, &vm);
    assert_peer_reaches(&back, &eth1, &vm);
    assert_peer_reaches6(&front, &eth0, &vm);
    // The guest reaches the gateway and a host beyond it over IPv6, through the gateway itself:
    // its neighbour table holds the gateway's link-local address at the gateway's MAC.
    guest_run(
        &vm,
        &format!(
            "ping -6 -c 2 -W 3 {} >/dev/null && ping -6 -c 2 -W 3 {} >/dev/null && echo \
             GUEST-PING6-$((40+2))",
            v6.gateway, v6.far
        ),
        "GUEST-PING6-42",
    );
    guest_run(
        &vm,
        &format!("ip -6 neigh show {} dev {dev0}", v6.gateway_ll),
        &format!("lladdr {}", v6.gateway_mac),
    );
    assert_clean_boot(&r);
    power_off(&vm);
}

/// Two networks and a resolver that only the first one reaches: `nameserver 10.1.0.53` in the
/// container's resolv.conf, served by a DNS server on network 1's subnet; network 2 has no
/// gateway. The guest must route 10.1.0.53 out of the NIC with the default route, and resolve
/// through it. (Issue 15: vminit announced the resolver on both NICs; systemd-networkd then
/// routes it on-link out of the second NIC.)
fn resolver_on_the_first_network(client: &str) {
    let guest = distro_guest(client);
    let front = Network::new(1);
    let back = Network::with_mtu(2, 1400);
    let ctr = Container::new();
    let eth0 = ctr.add_nic(&front, NicSpec::docker(&front, 3));
    let eth1 = ctr.add_nic(&back, NicSpec::docker(&back, 4));
    ctr.set_default_route(front.gateway, "eth0");
    let resolver = front.addr(53);
    front
        .peer_ns()
        .ip(&["addr", "add", &front.cidr(resolver), "dev", "eth0"]);
    let name = "db.example.test";
    let dns = DnsServer::start(front.peer_ns(), resolver, &[(name, front.peer_ip)]);
    let disk = guest.disk();
    let started = Instant::now();
    let vm = vminit(
        &ctr,
        &guest,
        &disk,
        &format!("distro_report.resolve={name}"),
    )
    .resolv_conf(&format!("nameserver {resolver}\n"))
    .spawn();

    let r = report(&vm, &guest, started);
    let dev0 = guest_nic(&r, &eth0, "the front NIC").to_owned();
    guest_nic(&r, &eth1, "the back NIC");
    assert_one_default_route(&r, front.gateway, &dev0);
    assert!(
        r.dns_servers().contains(&resolver.to_string()),
        "the guest uses {resolver}\n{}",
        r.dns_summary()
    );
    // Both facts in one message: where the route goes and whether the name resolved.
    let route = r.route_to(&resolver.to_string()).map(|g| g.dev.clone());
    let resolved = r.resolved.get(name).cloned().unwrap_or_default();
    assert!(
        route.as_deref() == Some(dev0.as_str()) && resolved == vec![front.peer_ip.to_string()],
        "{}: `ip route get {resolver}` must leave by {dev0} (the NIC with the default route) \
         and {name} must resolve to {}; the guest reported:\n{}--- routes\n{}\n--- the \
         resolver's log\n{}",
        guest.name,
        front.peer_ip,
        r.dns_summary(),
        r.routes.join("\n"),
        dns.log()
    );
    assert_resolvers_routed(&r, &ctr, &eth0);
    assert_peer_reaches(&front, &eth0, &vm);
    assert_clean_boot(&r);
    power_off(&vm);
}

/// Debian 12's cloud-init (22.4) renders vminit's seed itself (issue 21): the `cloud-eni` guest
/// with its ENI renderer (ifupdown, resolvconf), the `cloud-networkd` guest with its networkd
/// renderer (systemd-networkd, systemd-resolved); neither runs a DHCP client. The seed's host
/// route to the door resolver (written `via` the guest's own address, since that cloud-init
/// drops `on-link`) must stay on the link: `ip route get DOOR` leaves by the NIC without a
/// gateway (before, the door went via the default gateway, or the route failed with "Network
/// is unreachable"), and a name only Docker's resolver knows resolves through the door.
fn cloud_init_seed(client: &str) {
    let guest = distro_guest(client);
    let net = Network::new(1);
    let ctr = Container::new();
    let eth0 = ctr.add_nic(&net, NicSpec::docker(&net, 6));
    ctr.set_default_route(net.gateway, "eth0");
    ctr.ns().ip(&["addr", "add", "127.0.0.11/32", "dev", "lo"]);
    let name = "web.test";
    let docker = DnsServer::start(
        ctr.ns(),
        Ipv4Addr::new(127, 0, 0, 11),
        &[(name, net.peer_ip)],
    );
    let disk = guest.disk();
    let started = Instant::now();
    let vm = vminit(
        &ctr,
        &guest,
        &disk,
        &format!("distro_report.resolve={name}"),
    )
    .env("CLOUD_INIT_USER", "tester")
    .resolv_conf("nameserver 127.0.0.11\noptions ndots:0\n")
    .spawn();

    let r = report(&vm, &guest, started);
    let dev = guest_nic(&r, &eth0, "the NIC").to_owned();
    assert_one_default_route(&r, net.gateway, &dev);
    let servers = r.dns_servers();
    let door = servers
        .first()
        .filter(|s| s.starts_with("169.254."))
        .unwrap_or_else(|| panic!("the door first\n{}", r.dns_summary()))
        .clone();
    let route = r.route_to(&door);
    let own = eth0.ip().to_string();
    assert!(
        route.is_some_and(|g| g.dev == dev && g.via.as_deref().is_none_or(|v| v == own)),
        "{}: `ip route get {door}` must leave by {dev} on the link, not via the gateway {}: \
         {route:?}\n--- routes\n{}",
        guest.name,
        net.gateway,
        r.routes.join("\n")
    );
    assert_resolves(&r, name, net.peer_ip, &docker);
    // The configuration is cloud-init's rendering of the seed, with the door's route in it.
    let rendered = if client == "cloud-eni" {
        "/etc/network/interfaces.d/50-cloud-init"
    } else {
        "/etc/systemd/network/10-cloud-init-*.network"
    };
    guest_run(
        &vm,
        &format!("grep -q '{door}' {rendered} && echo RENDERED-$((40+2))"),
        "RENDERED-42",
    );
    if !r.failed_units.is_empty() {
        // Why, in the failure's output: what cloud-init said about it.
        let from = vm.console().len();
        guest_run(
            &vm,
            "journalctl -b -q -u 'cloud-*' --no-pager | grep -iE 'fail|error|warn' | tail -n 20; \
             echo JOURNAL-$((40+2))",
            "JOURNAL-42",
        );
        eprintln!("{}", &vm.console().text()[from..]);
    }
    assert_clean_boot(&r);
    power_off(&vm);
}

/// cloud-init's renderers, each on its own guest (not in the matrix: these guests configure
/// their network from the seed only).
mod cloud_init {
    #[test]
    fn the_eni_renderer_keeps_the_route_to_the_door_resolver_on_the_link_and_container_names_resolve()
     {
        super::cloud_init_seed("cloud-eni");
    }

    #[test]
    fn the_networkd_renderer_keeps_the_route_to_the_door_resolver_on_the_link_and_container_names_resolve()
     {
        super::cloud_init_seed("cloud-networkd");
    }
}

/// The same three tests for every client.
macro_rules! distro_matrix {
    ($($client:ident),* $(,)?) => {$(
        mod $client {
            #[test]
            fn a_calico_pod_guest_takes_its_32_address_on_link_gateway_and_cluster_dns() {
                super::pod_nic(stringify!($client));
            }

            #[test]
            fn two_networks_with_different_mtus_one_dual_stack_give_two_nics_one_default_route_per_family_and_working_dns(
            ) {
                super::two_networks(stringify!($client));
            }

            #[test]
            fn a_resolver_on_the_first_network_is_routed_through_the_default_route_nic() {
                super::resolver_on_the_first_network(stringify!($client));
            }
        }
    )*};
}

distro_matrix!(networkd, ifupdown, networkmanager);
