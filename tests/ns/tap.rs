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
use crate::common::{guest_run, report, stop};

use std::time::Duration;

use common::{Container, Network, NicSpec, ScratchDisk, VminitBuilder};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(120);
const STOP: Duration = Duration::from_secs(30);

/// vminit with the tap datapath, booting the test guest.
fn tap_vm<'c>(ctr: &'c Container, disk: &ScratchDisk, cmdline: &str) -> VminitBuilder<'c> {
    ctr.vminit_with_guest(disk, cmdline)
        .env("NET_DATAPATH", "tap")
}

#[test]
fn on_a_veth_the_tap_datapath_gives_the_guest_the_nic_and_the_network_reaches_it() {
    let net = Network::new(1);
    let (ctr, nic) = Container::docker_on(&net);
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
    // The health check asks the guest through the tap.
    let (code, text) = vm.health(20);
    assert_eq!(code, 0, "{text}\n{}", vm.tails());
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
        &format!("ping -c 2 -W 2 {} && echo PING-$((40+2))", net.peer_ip),
        "PING-42",
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
        &format!("ping -c 2 -W 2 {} && echo PING-$((40+2))", net.peer_ip),
        "PING-42",
    );
    stop(&vm);
    assert_eq!(ctr.net_state(), before, "the macvlan NIC is put back");
}

#[test]
fn with_the_tap_datapath_the_guest_resolves_through_the_door_and_a_peers_dhcp_gets_no_answer() {
    let net = Network::new(1);
    let (ctr, nic) = Container::docker_on(&net);
    let _dns = crate::network::embedded_dns(&ctr, &net);
    let disk = ScratchDisk::new();
    let vm = tap_vm(&ctr, &disk, "")
        .resolv_conf("nameserver 127.0.0.11\nsearch example.test\noptions ndots:0\n")
        .spawn();

    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(g.addrs, nic.addrs, "the guest's DHCP was answered");
    let server = r.dns.first().expect("a resolver").clone();
    assert!(server.starts_with("169.254."), "the door: {server}");
    // The guest asks the door, which forwards to the container's loopback resolver.
    guest_run(&vm, "nslookup peer.test", &format!("{}", net.peer_ip));
    // A peer on the network asks for a lease: vminit's dnsmasq does not answer it.
    let peer_dhcp =
        net.peer_exec("timeout 12 busybox udhcpc -f -n -q -t 3 -T 2 -i eth0 -s /bin/true 2>&1");
    assert!(
        peer_dhcp.stdout.contains("broadcasting discover"),
        "the peer asked: {peer_dhcp}"
    );
    assert!(
        !peer_dhcp.success() && !peer_dhcp.stdout.contains("lease of"),
        "a peer got a lease: {peer_dhcp}"
    );
    assert!(net.peer_ping(nic.ip()), "{}", vm.tails());
    stop(&vm);
}

#[test]
fn on_a_docker_ipv6_network_the_tap_datapath_gives_the_guest_the_containers_ipv6_identity() {
    use crate::ipv6::{ANNOUNCEMENTS, assert_restored, docker_ipv6_container, guest_vm};
    let net = Network::dual_stack(1);
    let v6 = net.net6().clone();
    let (ctr, nic) = docker_ipv6_container(&net, 2);
    let before = ctr.net_state();
    let listener = net.peer_listen(ANNOUNCEMENTS);
    let disk = ScratchDisk::new();
    let vm = guest_vm(&ctr, &disk, "eth0")
        .env("NET_DATAPATH", "tap")
        .spawn();

    let r = crate::ipv6::report(&vm);
    let global: Vec<&str> = r.global6("eth0").iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(global, [format!("{}/128", nic.ip6())], "{r:#?}");
    let defaults = r.default_routes6();
    assert_eq!(defaults.len(), 1, "{:#?}", r.routes6);
    assert!(
        defaults[0].starts_with(&format!("default via {} dev eth0 ", v6.gateway_ll)),
        "{defaults:?}"
    );
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
    assert!(net.peer_ping(nic.ip()), "and IPv4 too\n{}", vm.tails());
    let heard = listener.stop();
    assert!(
        heard.is_empty(),
        "a neighbour heard router advertisements or DHCPv6 answers: {heard:#?}"
    );
    stop(&vm);
    assert_restored(&ctr, &before, "after the stop");
}

#[test]
fn with_the_tap_datapath_a_network_connected_while_the_guest_runs_joins_and_leaves_again() {
    use crate::hotplug::{PLUG, expect_added};
    let (n1, n2) = (Network::new(1), Network::new(2));
    let ctr = Container::new();
    ctr.add_nic(&n1, NicSpec::docker(&n1, 2));
    ctr.set_default_route(n1.gateway, "eth0");
    let disk = ScratchDisk::new();
    let vm = tap_vm(&ctr, &disk, "vminit_test_hotplug=1").spawn();
    vm.expect_console("GUEST-READY", BOOT);
    assert!(n1.peer_ping(n1.addr(2)), "{}", vm.tails());

    // docker network connect
    let added = std::time::Instant::now();
    let eth1 = ctr.add_nic(&n2, NicSpec::docker(&n2, 7));
    let ip = expect_added(&vm, &eth1.mac);
    assert_eq!(ip, eth1.addrs[0], "by DHCP\n{}", vm.tails());
    let mut answered = false;
    while !answered && added.elapsed() < PLUG {
        answered = n2.peer_ping(eth1.ip());
    }
    assert!(answered, "the peer reaches the guest\n{}", vm.tails());
    assert_eq!(
        n2.peer_neighbour_mac(eth1.ip()).as_deref(),
        Some(eth1.mac.as_str())
    );
    let links = ctr.exec("ip -d -o link show vmtap1").stdout;
    assert!(links.contains("tun type tap"), "{links}");

    // docker network disconnect
    let mark = vm.console().len();
    ctr.remove_nic("eth1");
    vm.expect_console_from(mark, "GUEST-HOTPLUG removed eth1", PLUG);
    assert!(n1.peer_ping(n1.addr(2)), "the first NIC still works");
    stop(&vm);
    let left = ctr.exec("ip -o link show | grep -c vminit: || true").stdout;
    assert_eq!(left.trim(), "0", "no links of vminit's are left");
}

/// Runs vminit with the stand-in QEMU and `datapath` until it pauses after setup step `k`
/// (then kills it) or starts QEMU; whether it paused.
fn killed_at(ctr: &Container, disk: &ScratchDisk, datapath: &str, k: usize) -> bool {
    let log = disk.dir.join("standin.log");
    common::standin_vm(ctr, disk, &log)
        .env("NET_DATAPATH", datapath)
        .killed_at(&format!("setup:{k}"))
}

#[test]
fn a_kill_after_any_step_of_a_tap_takeover_is_recovered_by_either_datapath() {
    use crate::ipv6::{assert_restored, docker_ipv6_container};
    use common::standin_vm;
    let net = Network::dual_stack(1);
    let (ctr, nic) = docker_ipv6_container(&net, 2);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    // A tap run killed at each step is recovered by a macvtap run and a tap run in turn; a
    // macvtap run killed at each step by a tap run: neither mistakes the other's leftovers.
    for (killed, recovering) in [("tap", "macvtap"), ("tap", "tap"), ("macvtap", "tap")] {
        let mut k = 1;
        while killed_at(&ctr, &disk, killed, k) {
            let vm = standin_vm(&ctr, &disk, &log)
                .env("NET_DATAPATH", recovering)
                .spawn();
            vm.expect_log("QEMU running", Duration::from_secs(30));
            let addrs = ctr.exec("ip -o addr show dev eth0").stdout;
            assert!(
                !addrs.contains(&format!(" {}/", nic.ip())),
                "{killed} killed after step {k}, {recovering} running: {addrs}"
            );
            vm.kill(Signal::SIGTERM);
            vm.expect_exit(STOP);
            let when = format!("{killed} killed after setup step {k}, recovered by {recovering}");
            assert_restored(&ctr, &before, &when);
            let qdiscs = ctr.exec("tc qdisc show dev eth0").stdout;
            assert!(!qdiscs.contains("ingress"), "{when}: {qdiscs}");
            k += 1;
        }
        assert!(
            k > 15,
            "a dual-stack {killed} takeover has more steps than {k}"
        );
    }
}

#[test]
fn a_kill_during_a_tap_teardown_is_recovered_by_the_next_run() {
    use crate::ipv6::{assert_restored, docker_ipv6_container};
    use common::standin_vm;
    let net = Network::dual_stack(1);
    let (ctr, _nic) = docker_ipv6_container(&net, 2);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let log = disk.dir.join("standin.log");
    let tap_vm = || standin_vm(&ctr, &disk, &log).env("NET_DATAPATH", "tap");
    let mut k = 1;
    while tap_vm().killed_at(&format!("teardown:{k}")) {
        let vm = tap_vm().spawn();
        vm.expect_log("QEMU running", Duration::from_secs(30));
        vm.kill(Signal::SIGTERM);
        vm.expect_exit(STOP);
        assert_restored(&ctr, &before, &format!("killed after teardown step {k}"));
        k += 1;
    }
    assert_restored(&ctr, &before, "after the last teardown step");
    assert!(k > 10, "a dual-stack tap teardown has more steps than {k}");
}

/// slirp4netns serving a container's `tap0`, as rootless Podman runs it; killed on drop.
struct Slirp {
    child: std::process::Child,
    api: std::path::PathBuf,
}

impl Slirp {
    /// `slirp4netns --configure --netns-type=path /run/netns/NS tap0`: tap0 with 10.0.2.100/24
    /// and `mac`, a default route via 10.0.2.2; no way to the host's loopback or its DNS.
    fn start(ctr: &Container, mac: &str) -> Slirp {
        let api = std::env::temp_dir().join(format!("{}-slirp.sock", common::unique_id()));
        let child = std::process::Command::new("slirp4netns")
            .args(["--configure", "--mtu=1500", "--disable-host-loopback"])
            .args(["--disable-dns", "--macaddress", mac, "--api-socket"])
            .arg(&api)
            .args(["--netns-type=path"])
            .arg(format!("/run/netns/{}", ctr.ns().name()))
            .arg("tap0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("slirp4netns runs (scripts/install-deps.sh installs it)");
        let slirp = Slirp { child, api };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !ctr
            .exec("ip -4 -o addr show dev tap0")
            .stdout
            .contains("10.0.2.100/24")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "slirp4netns made no tap0"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        slirp
    }

    /// Publishes the guest's TCP `port` on the host's 127.0.0.1:`host_port` (`podman run -p`).
    fn forward(&self, host_port: u16, port: u16) {
        use std::io::{Read, Write};
        let mut api = std::os::unix::net::UnixStream::connect(&self.api).expect("the API socket");
        let request = format!(
            r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_addr":"127.0.0.1","host_port":{host_port},"guest_addr":"10.0.2.100","guest_port":{port}}}}}"#
        );
        api.write_all(request.as_bytes()).expect("write to the API");
        api.shutdown(std::net::Shutdown::Write)
            .expect("end the request");
        let mut answer = String::new();
        api.read_to_string(&mut answer)
            .expect("read the API's answer");
        assert!(answer.contains("return"), "{answer}");
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.api);
    }
}

#[test]
fn on_slirp4netns_tap0_the_guest_takes_the_containers_address_and_a_published_port_reaches_it() {
    let ctr = Container::new();
    let mac = "02:50:00:00:01:64";
    let slirp = Slirp::start(&ctr, mac);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = tap_vm(&ctr, &disk, "").spawn();

    let r = report(&vm);
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(
        (g.mac.as_str(), g.addrs.as_slice()),
        (mac, ["10.0.2.100/24".to_string()].as_slice()),
        "{}",
        vm.tails()
    );
    assert_eq!(r.default_routes(), vec!["default via 10.0.2.2 dev eth0"]);
    // slirp's gateway answers the guest.
    // (What is waited for is computed by the guest: the console echoes the typed command.)
    guest_run(
        &vm,
        "ping -c 2 -W 2 10.0.2.2 && echo PING-$((40+2))",
        "PING-42",
    );
    // A port published on the host reaches a service in the guest.
    guest_run(
        &vm,
        "mkdir -p /www && echo SERVED-BY-GUEST >/www/index.html && httpd -p 7777 -h /www && echo LISTENING-$((40+2))",
        "LISTENING-42",
    );
    let port = 20000 + (std::process::id() % 20000) as u16;
    slirp.forward(port, 7777);
    let got = common::run(&[
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 10 busybox nc 127.0.0.1 {port}"),
    ]);
    assert!(
        got.stdout.contains("SERVED-BY-GUEST"),
        "{got}\n{}",
        vm.tails()
    );
    stop(&vm);
    assert_eq!(ctr.net_state(), before, "tap0 is put back");
    drop(slirp);
}
