//! The guest's DNS end to end, in network namespaces, with the real dnsmasq, QEMU (TCG) and
//! test guest: container names and external names both resolve when an upstream is known
//! (Docker 25's `ExtServers`, `GUEST_DNS`), without waiting out a forwarding timeout; one
//! warning when nothing names an upstream; a container's IPv6 loopback resolver is forwarded
//! by the door; each NIC announces only what a client can use
//! through it; hostnames dnsmasq would misread reach the guest as hostnames.
//!
//! Docker's embedded DNS server is played by a dnsmasq on 127.0.0.11 in the container's
//! namespace that knows one container name and forwards every other name to the upstream
//! from that namespace, as Docker does for `--dns` servers (and for every upstream before
//! Docker 25): once the guest has the container's address, that forwarding breaks exactly as
//! Docker's does. The upstream is a dnsmasq on the network that answers one name of its own.

use crate::common;
use crate::common::{report, stop};

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use common::{
    Container, DnsServer, GuestLookup, Netns, Network, NicSpec, ScratchDisk, Vminit, VminitBuilder,
    unique_id,
};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(120);

/// The container name Docker's stand-in knows.
pub(crate) const CONTAINER_NAME: &str = "web";
/// The name only the upstream knows.
const EXTERNAL_NAME: &str = "ext.test";
/// Host number of the upstream resolver on the network (10.N.0.53).
const UPSTREAM_HOST: u8 = 53;
/// A lookup that waited out a forwarding timeout takes 4 s (Docker) to 5 s (glibc) or more.
const NO_TIMEOUT: u64 = 2000;

/// vminit as a user would run it, booting the test guest with `cmdline`.
fn vminit<'c>(ctr: &'c Container, disk: &ScratchDisk, cmdline: &str) -> VminitBuilder<'c> {
    ctr.vminit_with_guest(disk, cmdline)
}

/// The guest's lookups, once it has made them all (its shell starts after them).
fn lookups(vm: &Vminit) -> Vec<GuestLookup> {
    vm.expect_console("GUEST-READY", BOOT);
    GuestLookup::parse_all(&vm.console().text())
}

fn lookup<'a>(all: &'a [GuestLookup], name: &str) -> &'a GuestLookup {
    all.iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no lookup of {name} in {all:?}"))
}

/// A dnsmasq serving DNS in a namespace, stopped on drop.
pub(crate) struct Resolver {
    pidfile: PathBuf,
}

impl Resolver {
    /// `dnsmasq ARGS` in `ns` on `listen`, as a daemon with its own pid file.
    fn start(ns: &Netns, listen: Ipv4Addr, args: &str) -> Resolver {
        let pidfile = std::env::temp_dir().join(format!("{}-dns.pid", unique_id()));
        ns.exec_ok(&format!(
            "dnsmasq --listen-address={listen} --bind-interfaces --no-resolv --no-hosts \
             --user=root --pid-file={} {args}",
            pidfile.display()
        ));
        Resolver { pidfile }
    }

    /// Docker's embedded DNS server in the container: 127.0.0.11 knows `CONTAINER_NAME` (and
    /// has no IPv6 address for it, as Docker answers) and asks `upstream` for everything
    /// else, from the container's namespace.
    pub(crate) fn docker(ctr: &Container, name_addr: Ipv4Addr, upstream: Ipv4Addr) -> Resolver {
        ctr.ns().ip(&["addr", "add", "127.0.0.11/32", "dev", "lo"]);
        Resolver::start(
            ctr.ns(),
            Ipv4Addr::new(127, 0, 0, 11),
            &format!(
                "--host-record={CONTAINER_NAME},{name_addr} --local=/{CONTAINER_NAME}/ \
                 --server={upstream}"
            ),
        )
    }

    /// An upstream resolver at 10.N.0.53 on `net` (in its peer's namespace) that answers
    /// `EXTERNAL_NAME` and nothing else (NXDOMAIN).
    fn upstream(net: &Network, name_addr: Ipv4Addr) -> (Resolver, Ipv4Addr) {
        let addr = net.addr(UPSTREAM_HOST);
        net.peer_ns()
            .ip(&["addr", "add", &net.cidr(addr), "dev", "eth0"]);
        let resolver = Resolver::start(
            net.peer_ns(),
            addr,
            &format!("--host-record={EXTERNAL_NAME},{name_addr} --local=/#/"),
        );
        (resolver, addr)
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

/// One Docker-style container on `net` with Docker's DNS stand-in and an upstream; boots the
/// guest with `resolv_conf` and `guest_dns`, and checks that it resolves the container name
/// and the external name, the latter without waiting out a timeout.
fn both_names_resolve(resolv_conf: &str, guest_dns: Option<&str>) {
    let net = Network::new(1);
    let (ctr, _) = Container::docker_on(&net);
    // Each name points at a host that answers the guest's ping.
    let (_upstream, upstream) = Resolver::upstream(&net, net.gateway);
    let _docker = Resolver::docker(&ctr, net.peer_ip, upstream);
    let disk = ScratchDisk::new();
    let mut vm = vminit(
        &ctr,
        &disk,
        &format!("vminit_test_resolve={CONTAINER_NAME},{EXTERNAL_NAME}"),
    )
    .resolv_conf(resolv_conf);
    if let Some(list) = guest_dns {
        vm = vm.env("GUEST_DNS", list);
    }
    let vm = vm.spawn();

    let r = report(&vm);
    assert_eq!(r.dns.len(), 2, "the door, then the upstream: {:?}", r.dns);
    assert!(
        r.dns[0].starts_with("169.254."),
        "the door first: {:?}",
        r.dns
    );
    assert_eq!(r.dns[1], upstream.to_string());
    let all = lookups(&vm);
    let container = lookup(&all, CONTAINER_NAME);
    assert_eq!(
        container.addr,
        Some(net.peer_ip.to_string()),
        "{}",
        vm.tails()
    );
    let external = lookup(&all, EXTERNAL_NAME);
    assert_eq!(
        external.addr,
        Some(net.gateway.to_string()),
        "{}",
        vm.tails()
    );
    let ms = external.ms.expect("the lookup's time");
    eprintln!("lookups: {all:?}");
    assert!(ms < NO_TIMEOUT, "the external lookup took {ms} ms");
    assert!(!vm.log().text().contains("GUEST_DNS"), "no warning");
    stop(&vm);
}

#[test]
fn with_docker_25_extservers_the_guest_resolves_container_and_external_names_at_once() {
    both_names_resolve(
        "nameserver 127.0.0.11\noptions ndots:0\n\n# Based on host file: '/etc/resolv.conf' \
         (internal resolver)\n# ExtServers: [10.1.0.53]\n# Overrides: [nameservers]\n",
        None,
    );
}

#[test]
fn with_guest_dns_on_docker_20_10_the_guest_resolves_container_and_external_names_at_once() {
    both_names_resolve(
        "nameserver 127.0.0.11\noptions ndots:0\n",
        Some("10.1.0.53"),
    );
}

#[test]
fn without_a_known_upstream_vminit_warns_once_naming_guest_dns_and_container_names_resolve() {
    let net = Network::new(1);
    let (ctr, _) = Container::docker_on(&net);
    let _docker = Resolver::docker(&ctr, net.peer_ip, net.addr(UPSTREAM_HOST));
    let disk = ScratchDisk::new();
    let vm = vminit(
        &ctr,
        &disk,
        &format!("vminit_test_resolve={CONTAINER_NAME}"),
    )
    .resolv_conf("nameserver 127.0.0.11\noptions ndots:0\n")
    .spawn();

    let r = report(&vm);
    assert_eq!(r.dns.len(), 1, "the door only: {:?}", r.dns);
    let all = lookups(&vm);
    assert_eq!(
        lookup(&all, CONTAINER_NAME).addr,
        Some(net.peer_ip.to_string())
    );
    let log = vm.log().text();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("GUEST_DNS")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].starts_with("vminit: warning: "),
        "{}",
        warnings[0]
    );
    stop(&vm);
}

/// A Docker `-d macvlan` network: the container's NIC is a macvlan on the host's NIC, and so
/// a sibling of the door and of the guest's link there, which hears the guest's broadcasts.
/// The guest asks, broadcasting each time, who has the door address: only the link the door
/// address is on (`serves_on`: the door macvlan with macvtap, the tap with the tap datapath)
/// may answer, else the guest sends its lookups to a link dnsmasq does not serve, where they
/// time out (issue 20's macvlan DNS bug). Then a container name resolves through the door,
/// and the namespace (the NIC's `arp_ignore` included) comes back after the stop.
fn on_a_macvlan_network_only_the_door_answers_for_its_address(datapath: &str, serves_on: &str) {
    let net = Network::new(1);
    let ctr = Container::new();
    let (mac, cidr) = ("02:42:0a:01:00:07", "10.1.0.7/24");
    ctr.add_macvlan_nic(&net, mac, cidr);
    ctr.set_default_route(net.gateway, "eth0");
    let _docker = Resolver::docker(&ctr, net.peer_ip, net.addr(UPSTREAM_HOST));
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = vminit(
        &ctr,
        &disk,
        &format!("vminit_test_resolve={CONTAINER_NAME}"),
    )
    .env("NET_DATAPATH", datapath)
    .resolv_conf("nameserver 127.0.0.11\noptions ndots:0\n")
    .spawn();

    let r = report(&vm);
    let door = r.dns.first().expect("the door as resolver").clone();
    assert!(door.starts_with("169.254."), "the door: {:?}", r.dns);
    let all = lookups(&vm);
    let door_mac = ctr
        .exec(&format!("cat /sys/class/net/{serves_on}/address"))
        .stdout
        .trim()
        .to_string();
    let from = vm.console().len();
    vm.type_console(&format!(
        "arping -b -c 3 -w 5 -I eth0 {door} | sed -n 's/.*\\[\\(.*\\)\\].*/ARP-FROM \\1/p'; \
         echo ARP-$((40+2))\n"
    ));
    vm.expect_console_from(from, "ARP-42", Duration::from_secs(30));
    let mut answered: Vec<String> = vm
        .console()
        .text_from(from)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ARP-FROM "))
        .filter(|m| m.len() == 17 && m.bytes().filter(|b| *b == b':').count() == 5)
        .map(str::to_lowercase)
        .collect();
    answered.sort();
    answered.dedup();
    assert_eq!(
        answered,
        [door_mac],
        "who answered the guest's ARP for the door {door}\n{}",
        vm.tails()
    );
    assert_eq!(
        lookup(&all, CONTAINER_NAME).addr,
        Some(net.peer_ip.to_string()),
        "{}",
        vm.tails()
    );
    stop(&vm);
    assert_eq!(ctr.net_state(), before, "the macvlan NIC is put back");
}

#[test]
fn on_a_macvlan_network_only_the_door_answers_the_guests_arp_and_names_resolve_with_macvtap() {
    on_a_macvlan_network_only_the_door_answers_for_its_address("macvtap", "vmlink0");
}

#[test]
fn on_a_macvlan_network_only_the_tap_answers_the_guests_arp_and_names_resolve_with_tap() {
    on_a_macvlan_network_only_the_door_answers_for_its_address("tap", "vmtap0");
}

/// A container whose only resolvers are IPv6: a resolver of the pod on `::1` (a caching
/// sidecar), then one on the network. The guest, IPv4 only, gets the door, which forwards to
/// `::1` over the container's loopback; the network's IPv6 resolver is not handed to a guest
/// with no IPv6.
#[test]
fn a_container_with_only_ipv6_resolvers_gives_the_guest_the_door_to_its_loopback_one() {
    let net = Network::new(1);
    let ctr = Container::with_ipv6();
    ctr.add_nic(&net, NicSpec::docker(&net, 2));
    ctr.set_default_route(net.gateway, "eth0");
    let _sidecar = DnsServer::start(
        ctr.ns(),
        Ipv6Addr::LOCALHOST,
        &[(EXTERNAL_NAME, net.peer_ip)],
    );
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, &format!("vminit_test_resolve={EXTERNAL_NAME}"))
        .resolv_conf("nameserver ::1\nnameserver fd00:9::53\noptions ndots:0\n")
        .spawn();

    let r = report(&vm);
    assert_eq!(r.dns.len(), 1, "the door only: {:?}", r.dns);
    assert!(r.dns[0].starts_with("169.254."), "the door: {:?}", r.dns);
    let all = lookups(&vm);
    assert_eq!(
        lookup(&all, EXTERNAL_NAME).addr,
        Some(net.peer_ip.to_string()),
        "{}",
        vm.tails()
    );
    stop(&vm);
}

/// An IPv6-only guest (a Docker IPv6-only network's shape) of a container whose only resolver
/// is its loopback one, Docker's 127.0.0.11, which knows the container names: the guest cannot
/// ask the door over IPv4, so it asks it over IPv6, at the door's link-local address, which
/// DHCPv6 (and the router advertisements) announce first. The guest's client scopes the
/// address to its NIC (`fe80::…%eth0`), as Debian's dhclient-script does; glibc's resolver
/// resolves the container name through it.
///
/// Where new links get IPv6 (a Kubernetes pod), the door has the kernel's link-local address
/// and dnsmasq answers there. Under Docker new links get none
/// (`net.ipv6.conf.default.disable_ipv6=1` once its own NICs are there, `disable_ipv6` says
/// so): vminit answers for the address its MAC derives and relays the guest's queries to
/// dnsmasq at the door's IPv4 address.
fn an_ipv6_only_guest_resolves_a_container_name_through_the_door_over_ipv6(
    datapath: &str,
    serves_on: &str,
    disable_ipv6: bool,
) {
    let net = Network::dual_stack(1);
    let (ctr, _nic) = crate::ipv6::ipv6_only_container(&net, 2);
    if disable_ipv6 {
        ctr.ns().sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    }
    ctr.ns().ip(&["addr", "add", "127.0.0.11/32", "dev", "lo"]);
    let before = ctr.net_state();
    let web = net.net6().addr(80);
    let docker = DnsServer::start(
        ctr.ns(),
        Ipv4Addr::new(127, 0, 0, 11),
        &[(CONTAINER_NAME, web)],
    );
    let disk = ScratchDisk::new();
    let vm = vminit(
        &ctr,
        &disk,
        &format!("vminit_test_ipv6=eth0 vminit_test_resolve={CONTAINER_NAME}"),
    )
    .env("NET_DATAPATH", datapath)
    .resolv_conf("nameserver 127.0.0.11\noptions ndots:0\n")
    .spawn();

    let r = report(&vm);
    // "4: vmlink0@eth0    inet6 fe80::…/64 scope link \       valid_lft forever …"
    let kernel_ll = ctr
        .exec(&format!("ip -6 -o addr show dev {serves_on} scope link"))
        .stdout;
    let door: Ipv6Addr = if disable_ipv6 {
        assert!(
            kernel_ll.trim().is_empty(),
            "no IPv6 on the door: {kernel_ll}"
        );
        // 0e:1b:92:9a:54:2d: fe80::c1b:92ff:fe9a:542d
        let mac = ctr
            .exec(&format!("cat /sys/class/net/{serves_on}/address"))
            .stdout;
        let b: Vec<u8> = mac
            .trim()
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).expect("a MAC"))
            .collect();
        Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            u16::from_be_bytes([b[0] ^ 2, b[1]]),
            u16::from_be_bytes([b[2], 0xff]),
            u16::from_be_bytes([0xfe, b[3]]),
            u16::from_be_bytes([b[4], b[5]]),
        )
    } else {
        kernel_ll
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("the door's link-local address: {kernel_ll}"))
    };
    assert_eq!(r.dhcp6["eth0"]["dns6"], door.to_string(), "{:?}", r.dhcp6);
    assert_eq!(r.dns, [format!("{door}%eth0")], "{r:#?}");
    let all = lookups(&vm);
    assert_eq!(
        lookup(&all, CONTAINER_NAME).addr,
        Some(web.to_string()),
        "{}\n--- Docker's stand-in\n{}",
        vm.tails(),
        docker.log()
    );
    let log = vm.log().text();
    assert!(
        log.contains(&format!("DNS at the door {door}")) && !log.contains("cannot ask the door"),
        "{log}"
    );
    assert_eq!(
        log.contains(&format!("vminit answers for {door} and relays")),
        disable_ipv6,
        "{log}"
    );
    stop(&vm);
    crate::ipv6::assert_restored(&ctr, &before, "after the stop");
}

#[test]
fn an_ipv6_only_guest_resolves_a_container_name_through_the_doors_own_ipv6() {
    an_ipv6_only_guest_resolves_a_container_name_through_the_door_over_ipv6(
        "macvtap", "vmlink0", false,
    );
}

#[test]
fn an_ipv6_only_guest_resolves_a_container_name_through_a_door_without_ipv6_that_vminit_answers_for()
 {
    an_ipv6_only_guest_resolves_a_container_name_through_the_door_over_ipv6(
        "macvtap", "vmlink0", true,
    );
}

#[test]
fn with_the_tap_datapath_an_ipv6_only_guest_resolves_through_a_tap_without_ipv6() {
    an_ipv6_only_guest_resolves_a_container_name_through_the_door_over_ipv6("tap", "vmtap0", true);
}

/// Only an IPv6 resolver that is not the container's own, and no IPv6 in the guest: nothing
/// the guest could ask, which vminit says in one line naming GUEST_DNS.
#[test]
fn when_the_guest_can_reach_none_of_the_containers_resolvers_one_warning_names_guest_dns() {
    let net = Network::new(1);
    let ctr = Container::with_ipv6();
    ctr.add_nic(&net, NicSpec::docker(&net, 2));
    ctr.set_default_route(net.gateway, "eth0");
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "")
        .resolv_conf("nameserver fd00:9::53\n")
        .spawn();

    let r = report(&vm);
    assert!(r.dns.is_empty(), "{:?}", r.dns);
    let log = vm.log().text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the guest gets no resolver"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("fd00:9::53") && warnings[0].contains("GUEST_DNS="),
        "{}",
        warnings[0]
    );
    stop(&vm);
}

#[test]
fn each_nic_announces_only_the_resolvers_and_names_a_client_can_use_through_it() {
    let front = Network::new(1);
    let back = Network::new(2);
    let ctr = Container::new();
    ctr.add_nic(&front, NicSpec::docker(&front, 3));
    ctr.add_nic(&back, NicSpec::docker(&back, 5));
    ctr.set_default_route(front.gateway, "eth0");
    let _docker = Resolver::docker(&ctr, front.peer_ip, front.addr(UPSTREAM_HOST));
    let disk = ScratchDisk::new();
    // Docker's resolver; one in the back network's subnet; one reached only by the default
    // route (a cluster resolver); and GUEST_DNS in the front network.
    let vm = vminit(&ctr, &disk, "")
        .resolv_conf(
            "nameserver 127.0.0.11\nnameserver 10.2.0.53\nnameserver 10.96.0.10\n\
             search example.test\noptions ndots:0\n",
        )
        .env("GUEST_DNS", "10.1.0.53")
        .hostname("vm-front")
        .spawn();

    let r = report(&vm);
    let facts = |nic: &str| {
        r.nic(nic)
            .and_then(|n| n.dhcp.clone())
            .unwrap_or_else(|| panic!("{nic} got a lease: {r:?}"))
    };
    let (eth0, eth1) = (facts("eth0"), facts("eth1"));
    let eth0_dns: Vec<&str> = eth0["dns"].split(',').collect();
    assert_eq!(eth0_dns.len(), 3, "{eth0:?}");
    assert!(eth0_dns[0].starts_with("169.254."), "the door: {eth0:?}");
    assert_eq!(eth0_dns[1..], ["10.96.0.10", "10.1.0.53"], "{eth0:?}");
    assert_eq!(eth1["dns"], "10.2.0.53", "{eth1:?}");
    assert_eq!(eth0["search"], "example.test");
    assert_eq!(eth0["domain"], "example.test");
    assert_eq!(eth0["hostname"], "vm-front");
    for key in ["search", "domain", "hostname"] {
        assert_eq!(eth1[key], "", "{key} on the second NIC: {eth1:?}");
    }
    assert_eq!(r.hostname, "vm-front");
    stop(&vm);
}

/// Boots the guest in a container whose hostname is `hostname` and returns the guest's.
fn guest_hostname(hostname: &str) -> String {
    let net = Network::new(1);
    let (ctr, _) = Container::docker_on(&net);
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "").hostname(hostname).spawn();
    let r = report(&vm);
    assert_eq!(
        r.nic("eth0").map(|n| n.addrs.len()),
        Some(1),
        "a lease: {r:?}"
    );
    stop(&vm);
    r.hostname
}

#[test]
fn a_hostname_of_only_digits_reaches_the_guest_as_its_hostname() {
    // A Docker container id whose twelve hex digits happen to be decimal.
    assert_eq!(guest_hostname("123456789012"), "123456789012");
}

#[test]
fn a_hostname_that_is_a_dnsmasq_keyword_reaches_the_guest_as_its_hostname() {
    // Unquoted, `ignore` in dhcp-host makes dnsmasq ignore the guest: no lease at all.
    assert_eq!(guest_hostname("ignore"), "ignore");
}
