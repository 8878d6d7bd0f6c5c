//! End to end, in network namespaces, with the real dnsmasq, the real QEMU (TCG) and a real
//! guest kernel: the guest takes over each container NIC's MAC, IP, routes, MTU and DNS, and
//! the networks' peers reach it there.

use crate::common;
use crate::common::{guest_run, report};

use std::path::PathBuf;
use std::time::Duration;

use common::{Container, Network, NicSpec, ScratchDisk, Vminit, VminitBuilder, unique_id};
use nix::sys::signal::Signal;

/// TCG boots the guest to its report in a few seconds; parallel tests share two cores.
const BOOT: Duration = Duration::from_secs(120);
const STOP: Duration = Duration::from_secs(30);

/// vminit as a user would run it, booting the test guest.
fn vminit<'c>(ctr: &'c Container, disk: &ScratchDisk, cmdline: &str) -> VminitBuilder<'c> {
    ctr.vminit_with_guest(disk, cmdline)
}

/// `docker stop`: SIGTERM, a clean guest poweroff, exit 0.
fn stop(vm: &Vminit) {
    vm.kill(Signal::SIGTERM);
    let status = vm.expect_exit(STOP);
    assert_eq!(status.code(), Some(0), "exit status\n{}", vm.tails());
    assert!(
        vm.console().text().contains("GUEST-POWERBUTTON"),
        "{}",
        vm.tails()
    );
}

#[test]
fn the_guest_takes_over_a_docker_nic_and_the_network_reaches_it_there() {
    let net = Network::new(1);
    let (ctr, nic) = Container::docker_on(&net);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    // ACCEL=auto with /dev/kvm present: vminit must choose honestly (TCG on this machine).
    let vm = vminit(&ctr, &disk, "")
        .env("ACCEL", "auto")
        .kvm(true)
        .spawn();

    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(g.mac, nic.mac, "the container's MAC");
    assert_eq!(g.addrs, nic.addrs, "the container's IP and prefix");
    assert_eq!(g.mtu, 1500);
    assert_eq!(
        r.default_routes(),
        vec![format!("default via {} dev eth0", net.gateway)]
    );
    assert!(!r.dns.is_empty(), "the guest got a resolver");
    assert!(
        r.dns.iter().all(|d| !d.starts_with("127.")),
        "no loopback resolver: {:?}",
        r.dns
    );
    assert!(
        vm.log().text().contains("accelerator: "),
        "the choice is logged"
    );

    // A peer on the network reaches the guest at the container's IP, answered by its MAC.
    assert!(
        net.peer_ping(nic.ip()),
        "peer pings the guest\n{}",
        vm.tails()
    );
    assert_eq!(
        net.peer_neighbour_mac(nic.ip()).as_deref(),
        Some(nic.mac.as_str())
    );
    // The container reaches the guest (health checks) from its new address.
    let ping = ctr.exec(&format!("ping -n -c 2 -W 2 {}", nic.ip()));
    assert!(ping.success(), "container pings the guest: {ping:?}");
    // And the guest reaches the network through its gateway.
    guest_run(
        &vm,
        &format!("ping -c 2 -W 2 {} && echo PING-$((40+2))", net.peer_ip),
        "PING-42",
    );
    // The container's own addresses do not collide with the guest's.
    let addrs = ctr.exec("ip -4 -o addr show").stdout;
    assert!(!addrs.contains(&format!(" {}/", nic.ip())), "{addrs}");

    stop(&vm);
    assert_eq!(
        ctr.net_state(),
        before,
        "the network is put back after the guest stops"
    );
}

#[test]
fn two_networks_become_two_guest_nics_in_name_order_with_one_default_route() {
    let front = Network::new(1);
    let back = Network::with_mtu(2, 1400);
    let ctr = Container::new();
    // Docker attaches in connection order; ifindex order says nothing about names.
    let eth1 = ctr.add_nic(&back, NicSpec::docker(&back, 5).name("eth1"));
    let eth0 = ctr.add_nic(&front, NicSpec::docker(&front, 3).name("eth0"));
    ctr.set_default_route(front.gateway, "eth0");
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "").spawn();

    let r = report(&vm);
    let names: Vec<&str> = r.nics.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["eth0", "eth1"]);
    for (guest, nic) in [("eth0", &eth0), ("eth1", &eth1)] {
        let g = r.nic(guest).expect("guest NIC");
        assert_eq!(
            (&g.mac, &g.addrs, g.mtu),
            (&nic.mac, &nic.addrs, nic.mtu),
            "{guest}"
        );
    }
    assert_eq!(
        r.default_routes(),
        vec![format!("default via {} dev eth0", front.gateway)]
    );
    assert!(front.peer_ping(eth0.ip()), "front peer\n{}", vm.tails());
    assert!(back.peer_ping(eth1.ip()), "back peer\n{}", vm.tails());
    assert_eq!(
        back.peer_neighbour_mac(eth1.ip()).as_deref(),
        Some(eth1.mac.as_str())
    );
    stop(&vm);
}

#[test]
fn a_docker_macvlan_network_nic_is_taken_over_like_a_veth() {
    // `docker network create -d macvlan -o parent=HOSTNIC`: the container's eth0 is a macvlan
    // on a NIC of the host (here the network's bridge), moved into the container.
    let net = Network::new(1);
    let ctr = Container::new();
    let (mac, cidr) = ("02:42:0a:01:00:07", "10.1.0.7/24");
    ctr.add_macvlan_nic(&net, mac, cidr);
    ctr.set_default_route(net.gateway, "eth0");
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "").spawn();

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
    stop(&vm);
    assert_eq!(ctr.net_state(), before, "the macvlan NIC is put back");
}

#[test]
fn the_guest_resolves_names_through_the_containers_loopback_resolver() {
    let net = Network::new(1);
    let (ctr, nic) = Container::docker_on(&net);
    let _dns = embedded_dns(&ctr, &net);
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "")
        .resolv_conf("nameserver 127.0.0.11\nsearch example.test\noptions ndots:0\n")
        .spawn();

    let r = report(&vm);
    assert_eq!(r.search, vec!["example.test".to_string()]);
    let server = r.dns.first().expect("a resolver").clone();
    assert!(
        server.starts_with("169.254."),
        "the container's link-local door: {server}"
    );
    assert!(r.dns.iter().all(|d| !d.starts_with("127.")));
    guest_run(&vm, "nslookup peer.test", &format!("{}", net.peer_ip));
    assert!(net.peer_ping(nic.ip()));
    stop(&vm);
}

/// Docker's embedded DNS server: 127.0.0.11 inside the container, knowing the name
/// `peer.test` (as it knows container names): the network's peer. Stops when dropped.
pub(crate) fn embedded_dns(ctr: &Container, net: &Network) -> KillOnDrop {
    let pidfile = std::env::temp_dir().join(format!("{}-dns.pid", unique_id()));
    let dns = ctr.exec(&format!(
        "ip addr add 127.0.0.11/32 dev lo && dnsmasq --listen-address=127.0.0.11 --bind-interfaces \
         --no-resolv --no-hosts --address=/peer.test/{} --pid-file={} --user=root",
        net.peer_ip,
        pidfile.display()
    ));
    assert!(dns.success(), "{dns:?}");
    KillOnDrop(pidfile)
}

/// Kills the daemon whose pid file this is, on drop.
pub(crate) struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_nic_with_two_addresses_gives_the_guest_the_one_in_selected_network() {
    let net = Network::new(1);
    let ctr = Container::new();
    // Kubernetes can give a NIC two IPv4s; the first is not the one the VM should get.
    let nic = ctr.add_nic(
        &net,
        NicSpec::new()
            .addr("10.201.0.9/24")
            .addr(&net.cidr(net.addr(2)))
            .mac("02:42:0a:01:00:02"),
    );
    ctr.set_default_route(net.gateway, "eth0");
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "")
        .env("SELECTED_NETWORK", "10.1.0.0/255.255.255.0")
        .spawn();

    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(g.addrs, vec![net.cidr(net.addr(2))]);
    assert_eq!(g.mac, nic.mac);
    assert!(net.peer_ping(net.addr(2)), "{}", vm.tails());
    // The container keeps the other address.
    let kept = ctr.exec("ip -4 -o addr show dev eth0").stdout;
    assert!(kept.contains("10.201.0.9/24"), "{kept}");
    stop(&vm);
}

#[test]
fn a_slash_32_pod_guest_gets_a_working_default_route_through_an_on_link_gateway() {
    let net = Network::new(1);
    let ctr = Container::new();
    let nic = ctr.add_nic(&net, NicSpec::k8s(&net, 7));
    ctr.set_k8s_default_route(&net, "eth0");
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "")
        .resolv_conf("nameserver 10.96.0.10\nsearch default.svc.cluster.local\n")
        .spawn();

    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(g.addrs, vec![format!("{}/32", nic.ip())]);
    assert_eq!(
        r.default_routes(),
        vec!["default via 169.254.1.1 dev eth0".to_string()]
    );
    // A resolver the guest can reach itself is handed over as it is.
    assert_eq!(r.dns, vec!["10.96.0.10".to_string()]);
    assert!(
        net.peer_ping(nic.ip()),
        "peer pings the pod's guest\n{}",
        vm.tails()
    );
    guest_run(
        &vm,
        &format!("ping -c 2 -W 2 {} && echo PING-$((40+2))", net.peer_ip),
        "PING-42",
    );
    stop(&vm);
}

#[test]
fn an_interface_that_appears_after_start_is_waited_for() {
    let n1 = Network::new(1);
    let n2 = Network::new(2);
    let ctr = Container::new();
    let eth0 = ctr.add_nic(&n1, NicSpec::docker(&n1, 2));
    ctr.set_default_route(n1.gateway, "eth0");
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "")
        .env("AUTO_ATTACH", "no")
        .env("ATTACH_IFACES", "eth0 eth1")
        .env("IFACE_WAIT", "20")
        .spawn();
    vm.expect_log("waiting up to", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(700));
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 4));

    let r = report(&vm);
    assert_eq!(r.nic("eth0").map(|g| &g.addrs), Some(&eth0.addrs));
    assert_eq!(r.nic("eth1").map(|g| &g.addrs), Some(&eth1.addrs));
    assert!(n2.peer_ping(eth1.ip()), "{}", vm.tails());
    stop(&vm);
}

#[test]
fn attach_ifaces_gives_the_guest_only_the_named_nic_and_leaves_the_others_alone() {
    let n1 = Network::new(1);
    let n2 = Network::new(2);
    let ctr = Container::new();
    let eth0 = ctr.add_nic(&n1, NicSpec::docker(&n1, 2));
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 3));
    ctr.set_default_route(n1.gateway, "eth0");
    let eth0_before = ctr
        .exec("ip -o addr show dev eth0; ip -o link show dev eth0")
        .stdout;
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "")
        .env("AUTO_ATTACH", "no")
        .env("ATTACH_IFACES", "eth1")
        .spawn();

    let r = report(&vm);
    assert_eq!(r.nics.len(), 1, "{r:?}");
    let g = r.nic("eth0").expect("the guest's only NIC");
    assert_eq!((&g.mac, &g.addrs), (&eth1.mac, &eth1.addrs));
    // eth1 held no default route: the guest gets none either.
    assert!(r.default_routes().is_empty(), "{:?}", r.routes);
    assert!(n2.peer_ping(eth1.ip()));
    assert_eq!(
        ctr.exec("ip -o addr show dev eth0; ip -o link show dev eth0")
            .stdout,
        eth0_before
    );
    assert!(n1.peer_ping(eth0.ip()), "the container keeps eth0");
    stop(&vm);
}

#[test]
fn health_is_starting_until_the_guest_holds_its_addresses_then_healthy_then_unhealthy_when_one_is_lost()
 {
    let net = Network::new(1);
    let (ctr, nic) = Container::docker_on(&net);
    let disk = ScratchDisk::new();
    let vm = vminit(&ctr, &disk, "").spawn();

    // QEMU runs, the guest has not configured its NIC yet: starting, and which address.
    vm.expect_log("QEMU running", BOOT);
    let (code, text) = vm.health(3);
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("starting"), "{text}");

    report(&vm);
    let (code, text) = vm.health(3);
    assert_eq!(
        (code, text.lines().next()),
        (0, Some("healthy: the guest holds its 1 addresses")),
        "{text}"
    );

    // The guest drops its address: tolerated for HEALTH_GRACE, then unhealthy, naming it.
    // (The shell repeats the typed line: the marker is written so that only its output has it.)
    guest_run(&vm, "ip addr flush dev eth0; echo FLUS''HED", "FLUSHED");
    let (code, text) = vm.health(3);
    assert_eq!(code, 0, "within the grace period: {text}");
    assert!(
        text.contains(&format!("eth0: the guest does not answer for {}", nic.ip())),
        "{text}\n{}",
        vm.tails()
    );
    std::thread::sleep(Duration::from_secs(4));
    let (code, text) = vm.health(3);
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("unhealthy"), "{text}");
    assert!(
        text.contains(&format!("eth0: the guest does not answer for {}", nic.ip())),
        "{text}"
    );

    // It takes it back: healthy again.
    guest_run(
        &vm,
        &format!("ip addr add {} dev eth0; echo ADD''ED", net.cidr(nic.ip())),
        "ADDED",
    );
    let (code, text) = vm.health(3);
    assert_eq!(code, 0, "{text}");
    stop(&vm);
}
