//! User mode (`NET_DATAPATH=user`, and `auto` without `NET_ADMIN`) end to end, in network
//! namespaces, with the real passt, QEMU (TCG) and test guest, vminit started with no
//! capability at all: the guest has the container's MAC, address, route, MTU and resolvers,
//! the namespace is left as it was, a peer reaches the guest's TCP and UDP ports on the
//! container's address, Docker's resolver answers the guest, `docker stop` is clean within
//! Docker's 10 s; and where a better datapath is asked for and cannot be had, the refusal
//! names the flags.

use crate::common;
use crate::common::report;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{
    Container, DnsServer, GuestLookup, GuestReport, Network, NicSpec, ScratchDisk, Vminit,
    VminitBuilder,
};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(120);
/// Docker's default stop timeout, which vminit's whole stop must fit in.
const DOCKER_STOP: Duration = Duration::from_secs(10);

/// The port the guest serves TCP and UDP on (tests/guest/serve.c), one of the default
/// `USER_PORTS`.
const PORT: u16 = 80;

/// vminit started as root with no capability (empty bounding, inheritable and ambient sets:
/// what `docker run --cap-drop ALL` gives), booting the test guest with `cmdline`.
fn without_capabilities<'c>(
    ctr: &'c Container,
    disk: &ScratchDisk,
    cmdline: &str,
) -> VminitBuilder<'c> {
    ctr.vminit_with_guest(disk, cmdline).wrapped_by(&[
        "setpriv",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--",
    ])
}

/// `docker stop`: SIGTERM, exit 0 within Docker's 10 s.
fn stop_cleanly(vm: &Vminit) {
    let asked = Instant::now();
    vm.kill(Signal::SIGTERM);
    let status = vm.expect_exit(DOCKER_STOP + Duration::from_secs(5));
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "exit status\n{}", vm.tails());
    assert!(took < DOCKER_STOP, "the stop took {took:?}\n{}", vm.tails());
}

/// A Docker-style container on `net` (10.N.0.2/24 via 10.N.0.1), where unprivileged
/// processes may bind low ports, as Docker sets it.
fn docker_container(net: &Network) -> Container {
    let ctr = Container::new();
    ctr.add_nic(net, NicSpec::docker(net, 2));
    ctr.set_default_route(net.gateway, "eth0");
    ctr.ns().sysctl("net.ipv4.ip_unprivileged_port_start", "0");
    ctr
}

/// Docker's embedded resolver (127.0.0.11), which the guest's queries are relayed to: it
/// answers `web` with the peer's address.
fn docker_resolver(ctr: &Container, net: &Network) -> DnsServer {
    ctr.ns().ip(&["addr", "add", "127.0.0.11/32", "dev", "lo"]);
    DnsServer::start(
        ctr.ns(),
        Ipv4Addr::new(127, 0, 0, 11),
        &[("web", net.peer_ip)],
    )
}

/// A peer reaches the guest's TCP and UDP `PORT` on `addr`, and the guest resolved `web`
/// through Docker's resolver (`docker_resolver`).
fn guest_serves_and_resolves(vm: &Vminit, net: &Network, addr: Ipv4Addr, r: &GuestReport) {
    let (tcp, udp) = peer_talks_to(net, addr, PORT);
    assert_eq!(tcp, format!("GUEST-TCP {PORT}"), "{}", vm.tails());
    assert_eq!(udp, format!("GUEST-UDP {PORT} ping"), "{}", vm.tails());
    vm.expect_console("GUEST-READY", BOOT);
    let lookups = GuestLookup::parse_all(&vm.console().text());
    let web = lookups
        .iter()
        .find(|l| l.name == "web")
        .expect("the lookup");
    assert_eq!(
        web.addr,
        Some(net.peer_ip.to_string()),
        "Docker's resolver answers the guest (resolvers {:?})\n{}",
        r.dns,
        vm.tails()
    );
}

/// What a peer on the network reads from `addr`:`port` over TCP once it has said `ping`,
/// and gets back for a UDP datagram `ping` (bash's /dev/tcp and /dev/udp; empty when nothing
/// answers). The client speaks first: the passt of Debian 12 acknowledges the guest's side
/// of a new connection only with the client's first bytes (see docs/user-mode.md).
fn peer_talks_to(net: &Network, addr: Ipv4Addr, port: u16) -> (String, String) {
    // Up to five connections of 10 s each: a guest under TCG on a loaded machine can miss one.
    let tcp = net.peer_exec(&format!(
        "for i in 1 2 3 4 5; do r=$(timeout 10 bash -c 'exec 3<>/dev/tcp/{addr}/{port} && \
         echo ping >&3 && head -n 1 <&3') && [ -n \"$r\" ] && {{ echo \"$r\"; exit; }}; \
         sleep 1; done"
    ));
    // One datagram per try: head reads it whole (bash's read would take one byte of it).
    let udp = net.peer_exec(&format!(
        "timeout 10 bash -c 'exec 3<>/dev/udp/{addr}/{port}; for i in 1 2 3 4 5; do \
         echo ping >&3; r=$(timeout 1 head -n 1 <&3) && [ -n \"$r\" ] && {{ echo \"$r\"; exit; }}; done'"
    ));
    (tcp.stdout.trim().to_owned(), udp.stdout.trim().to_owned())
}

#[test]
fn without_any_capability_auto_boots_in_user_mode_with_the_containers_identity_and_ports() {
    let net = Network::new(1);
    let ctr = docker_container(&net);
    let nic = ctr.nics()[0].clone();
    let _docker_dns = docker_resolver(&ctr, &net);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = without_capabilities(
        &ctr,
        &disk,
        &format!("vminit_test_serve={PORT} vminit_test_resolve=web"),
    )
    .spawn();

    let r = report(&vm);
    let log = vm.log().text();
    assert!(
        log.contains("datapath: user mode (this container lacks the capability NET_ADMIN)")
            && log.contains("--cap-add NET_ADMIN"),
        "one line says why user mode and which flags give better:\n{log}"
    );
    let caps = std::fs::read_to_string(format!("/proc/{}/status", vm.pid())).unwrap_or_default();
    assert!(
        caps.contains("CapEff:\t0000000000000000") && caps.contains("CapBnd:\t0000000000000000"),
        "vminit runs without capabilities:\n{caps}"
    );
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(g.mac, nic.mac, "the container's MAC");
    assert_eq!(g.addrs, nic.addrs, "the container's IP and prefix");
    assert_eq!(g.mtu, nic.mtu, "the container's MTU");
    assert_eq!(
        r.default_routes(),
        vec![format!("default via {} dev eth0", net.gateway)]
    );
    assert_eq!(
        ctr.net_state(),
        before,
        "user mode changes nothing in the namespace"
    );
    // No door to probe the guest's addresses from: healthy once QEMU runs the guest.
    let (code, text) = vm.health(20);
    assert_eq!(code, 0, "{text}\n{}", vm.tails());

    guest_serves_and_resolves(&vm, &net, nic.ip(), &r);

    // docker stop: the guest powers off, passt stops after QEMU, all within Docker's 10 s.
    stop_cleanly(&vm);
    vm.expect_log("exit 0", Duration::from_secs(5));
    let log = vm.log().text();
    let qemu_exit = log.find("QEMU (pid").expect("QEMU's exit is logged");
    let passt_stop = log
        .find("passt of guest NIC 0 (pid")
        .unwrap_or_else(|| panic!("passt's stop is logged:\n{log}"));
    assert!(qemu_exit < passt_stop, "passt stops after QEMU:\n{log}");
    assert!(
        vm.console().text().contains("GUEST-POWERBUTTON"),
        "{}",
        vm.tails()
    );
    assert_eq!(ctr.net_state(), before);
}

#[test]
fn user_ports_chooses_the_forwarded_ports() {
    let net = Network::new(1);
    let ctr = docker_container(&net);
    let nic = ctr.nics()[0].clone();
    let disk = ScratchDisk::new();
    // 8080 is not among the default ports.
    let vm = without_capabilities(&ctr, &disk, "vminit_test_serve=8080")
        .env("NET_DATAPATH", "user")
        .env("USER_PORTS", "22,8000-8100")
        .spawn();
    report(&vm);
    vm.expect_log("(NET_DATAPATH=user)", Duration::from_secs(5));
    let (tcp, udp) = peer_talks_to(&net, nic.ip(), 8080);
    assert_eq!(
        (tcp.as_str(), udp.as_str()),
        ("GUEST-TCP 8080", "GUEST-UDP 8080 ping"),
        "{}",
        vm.tails()
    );
    let log = vm.log().text();
    assert!(log.contains("TCP and UDP ports 22,8000-8100"), "{log}");
    assert!(log.contains("(NET_DATAPATH=user)"), "{log}");
    stop_cleanly(&vm);
}

#[test]
fn tap_asked_without_net_admin_is_refused_naming_the_flag_and_user_mode() {
    let net = Network::new(1);
    let ctr = docker_container(&net);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    ctr.vminit_with_guest(&disk, "")
        .env("NET_DATAPATH", "tap")
        .cap_drop("net_admin")
        .expect_refusal(
            69,
            &[
                "NET_DATAPATH=tap but this container lacks the capability NET_ADMIN",
                "--cap-add NET_ADMIN",
                "NET_DATAPATH=user",
            ],
            Duration::from_secs(10),
        );
    assert_eq!(ctr.net_state(), before);
}

#[test]
fn a_passt_that_dies_is_restarted_and_said_and_the_guest_still_stops_cleanly() {
    let net = Network::new(1);
    let ctr = docker_container(&net);
    let disk = ScratchDisk::new();
    let vm = without_capabilities(&ctr, &disk, "").spawn();
    report(&vm);
    let started = vm.expect_log("passt for eth0 running, pid ", Duration::from_secs(5));
    let pid = started
        .line
        .rsplit(' ')
        .next()
        .expect("the pid ends the line")
        .to_owned();
    let socket = vm.container_path("/run/vminit/passt0.sock");
    assert!(socket.exists(), "{}", vm.tails());

    let killed = vm.exec_inside(&["kill", "-KILL", &pid]);
    assert!(killed.success(), "{killed}");
    vm.expect_log(
        &format!("passt of guest NIC 0 (pid {pid}) exited: killed by SIGKILL; restarting it"),
        Duration::from_secs(5),
    );
    vm.expect_log(
        "the guest's NIC on eth0 has no network until the container restarts",
        Duration::from_secs(5),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(socket.exists(), "a new passt serves\n{}", vm.tails());

    stop_cleanly(&vm);
}

#[test]
fn with_net_admin_but_neither_macvtap_nor_tap_auto_takes_user_mode_naming_both_flags() {
    let net = Network::new(1);
    let ctr = docker_container(&net);
    let disk = ScratchDisk::new();
    // No mknod (no macvtap node) and no /dev/net/tun (no tap): NET_ADMIN alone is not enough.
    let vm = ctr
        .vminit_with_guest(&disk, "")
        .cap_drop("mknod")
        .dev_net_tun(false)
        .spawn();
    report(&vm);
    let line = vm.expect_log("datapath: user mode (", Duration::from_secs(5));
    for words in [
        "--device-cgroup-rule 'c ",
        "--device /dev/net/tun",
        "MAC is not on the wire",
    ] {
        assert!(line.line.contains(words), "{words}: {}", line.line);
    }
    stop_cleanly(&vm);
}

/// vminit under the seccomp profile of a default `docker run` as far as user mode meets it
/// (`unshare` refused: passt cannot build its sandbox), with no capability at all.
fn under_default_seccomp<'c>(
    ctr: &'c Container,
    disk: &ScratchDisk,
    cmdline: &str,
) -> VminitBuilder<'c> {
    let no_unshare = common::standin_tool("no_unshare");
    ctr.vminit_with_guest(disk, cmdline).wrapped_by(&[
        "setpriv".as_ref(),
        "--inh-caps=-all".as_ref(),
        "--ambient-caps=-all".as_ref(),
        "--bounding-set=-all".as_ref(),
        "--".as_ref(),
        no_unshare.as_os_str(),
    ])
}

#[test]
fn where_passt_cannot_sandbox_itself_slirp_gives_the_guest_the_containers_address_and_ports() {
    let net = Network::new(1);
    let ctr = docker_container(&net);
    let nic = ctr.nics()[0].clone();
    let _docker_dns = docker_resolver(&ctr, &net);
    let before = ctr.net_state();
    let disk = ScratchDisk::new();
    let vm = under_default_seccomp(
        &ctr,
        &disk,
        &format!("vminit_test_serve={PORT} vminit_test_resolve=web"),
    )
    .spawn();

    let r = report(&vm);
    let line = vm.expect_log(
        "user mode: QEMU's user networking (slirp)",
        Duration::from_secs(5),
    );
    for words in [
        "unshare(CLONE_NEWUSER): Operation not permitted",
        "/29",
        "no IPv6",
        "--security-opt seccomp=unconfined",
    ] {
        assert!(line.line.contains(words), "{words}: {}", line.line);
    }
    assert!(
        !vm.log().text().contains("starting passt") && !vm.log().text().contains("/passt "),
        "no passt is started:\n{}",
        vm.log().text()
    );
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!(g.mac, nic.mac, "the container's MAC");
    assert_eq!(
        g.addrs,
        vec![format!("{}/29", nic.ip())],
        "the container's IP, in slirp's /29"
    );
    assert_eq!(
        r.default_routes(),
        vec![format!("default via {} dev eth0", net.gateway)],
        "the container's router, which lies in the /29"
    );
    assert_eq!(ctr.net_state(), before, "nothing in the namespace changes");

    guest_serves_and_resolves(&vm, &net, nic.ip(), &r);

    stop_cleanly(&vm);
    assert_eq!(ctr.net_state(), before);
}

#[test]
fn two_networks_get_one_passt_each_and_each_networks_peer_reaches_the_guest_there() {
    let (front, back) = (Network::new(1), Network::new(2));
    let ctr = docker_container(&front);
    ctr.add_nic(&back, NicSpec::docker(&back, 2));
    let nics = ctr.nics();
    let disk = ScratchDisk::new();
    let vm = without_capabilities(&ctr, &disk, &format!("vminit_test_serve={PORT}")).spawn();
    let r = report(&vm);
    for nic in &nics {
        let g = r
            .nic(&nic.name)
            .unwrap_or_else(|| panic!("guest {}", nic.name));
        assert_eq!((&g.mac, &g.addrs), (&nic.mac, &nic.addrs), "{}", nic.name);
        vm.expect_log(
            &format!("passt for {} running", nic.name),
            Duration::from_secs(5),
        );
    }
    // One default route, the container's; the other NIC's router serves that NIC only.
    assert_eq!(
        r.default_routes(),
        vec![format!("default via {} dev eth0", front.gateway)]
    );
    for (net, nic) in [(&front, &nics[0]), (&back, &nics[1])] {
        let (tcp, udp) = peer_talks_to(net, nic.ip(), PORT);
        assert_eq!(
            tcp,
            format!("GUEST-TCP {PORT}"),
            "{}: {}",
            nic.name,
            vm.tails()
        );
        assert_eq!(
            udp,
            format!("GUEST-UDP {PORT} ping"),
            "{}: {}",
            nic.name,
            vm.tails()
        );
    }
    stop_cleanly(&vm);
}

#[test]
fn as_a_user_other_than_root_with_no_capability_the_guest_boots_with_the_containers_address() {
    // Kubernetes' runAsNonRoot: UID and GID 1000, no supplementary group, no capability, the
    // run directory under /tmp (the image's /run is root's), the disk the user's own.
    let net = Network::new(1);
    let ctr = docker_container(&net);
    let nic = ctr.nics()[0].clone();
    let disk = ScratchDisk::new();
    common::run_ok(&["chown", "-R", "1000:1000", &disk.dir.display().to_string()]);
    let vm = ctr
        .vminit_with_guest(&disk, &format!("vminit_test_serve={PORT}"))
        .env("VMINIT_RUN_DIR", "/tmp/vminit")
        .wrapped_by(&[
            "setpriv",
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ])
        .spawn();
    let r = report(&vm);
    let status = std::fs::read_to_string(format!("/proc/{}/status", vm.pid())).unwrap_or_default();
    for line in ["Uid:\t1000\t1000\t1000\t1000", "CapEff:\t0000000000000000"] {
        assert!(status.contains(line), "{line}:\n{status}");
    }
    let g = r.nic("eth0").expect("guest eth0");
    assert_eq!((&g.mac, &g.addrs), (&nic.mac, &nic.addrs));
    let (tcp, _) = peer_talks_to(&net, nic.ip(), PORT);
    assert_eq!(tcp, format!("GUEST-TCP {PORT}"), "{}", vm.tails());
    // The readiness probe, with the container's environment as Kubernetes runs it.
    let binary = common::vminit_binary();
    let health = vm.exec_inside(&[
        "env",
        "VMINIT_RUN_DIR=/tmp/vminit",
        "HEALTH_GRACE=20",
        &binary.to_string_lossy(),
        "health",
    ]);
    assert!(
        health.success(),
        "`vminit health` finds the run directory: {health}"
    );
    stop_cleanly(&vm);
}
