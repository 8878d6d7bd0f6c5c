//! Self-tests of the end-to-end harness (tests/common) and the test guest (tests/guest): the
//! namespaces are wired as Docker and Kubernetes wire them, PID 1 runs in a container-like
//! environment, everything is cleaned up, and the guest reports and obeys its power button.

use crate::common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::docker::{is_stale, owner_label};
use common::{
    Container, DistroReport, DnsServer, GuestReport, Network, NicSpec, Process, make_qcow2,
    qmp_execute, run_for, test_guest,
};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(10);

/// A shell script run as PID 1 that describes its surroundings, then echoes its input and
/// exits 7 on SIGTERM.
const DESCRIBE: &str = r#"
echo "pid=$$"
echo "dev=$(stat -f -c %T /dev) run=$(stat -f -c %T /run)"
echo "nodes=$(cd /dev && find . -mindepth 1 | sort | tr '\n' ' ')"
echo "hostname=$(hostname) resolv=$(grep nameserver /etc/resolv.conf)"
echo "links=$(ls /sys/class/net | tr '\n' ' ')"
echo "env=$(env | sort | tr '\n' ' ')"
if touch /sys/vmt-probe 2>/dev/null; then echo "sys=rw"; else echo "sys=ro"; fi
if echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null; then echo "procsys=rw"; else echo "procsys=ro"; fi
grep CapBnd /proc/self/status
echo "bound=$(cat /run/bound/file)"
trap 'echo got-term; exit 7' TERM
echo ready
read -r line
echo "got:$line"
while :; do sleep 1 & wait $!; done
"#;

#[test]
fn peers_reach_a_container_on_each_of_its_two_networks() {
    let net1 = Network::new(1);
    let net2 = Network::new(2);
    let ctr = Container::new();
    let eth0 = ctr.add_nic(&net1, NicSpec::docker(&net1, 2));
    let eth1 = ctr.add_nic(&net2, NicSpec::docker(&net2, 3).mtu(1400));
    ctr.set_default_route(net1.gateway, "eth0");

    assert_eq!((eth0.name.as_str(), eth1.name.as_str()), ("eth0", "eth1"));
    assert_eq!(eth0.mac, "02:42:0a:01:00:02");
    assert!(
        net1.peer_ping(eth0.ip()),
        "peer 1 cannot ping {}",
        eth0.ip()
    );
    assert!(
        net2.peer_ping(eth1.ip()),
        "peer 2 cannot ping {}",
        eth1.ip()
    );
    assert_eq!(
        net1.peer_neighbour_mac(eth0.ip()).as_deref(),
        Some(eth0.mac.as_str())
    );

    let routes = ctr.exec("ip route").stdout;
    assert!(
        routes.contains(&format!("default via {} dev eth0", net1.gateway)),
        "{routes}"
    );
    let link = ctr.exec("ip link show eth1").stdout;
    assert!(link.contains("mtu 1400"), "{link}");
}

#[test]
fn a_k8s_pod_with_a_slash_32_address_reaches_its_peer_through_the_link_local_gateway() {
    let net = Network::new(3);
    let ctr = Container::new();
    let eth0 = ctr.add_nic(&net, NicSpec::k8s(&net, 7));
    ctr.set_k8s_default_route(&net, "eth0");

    assert!(net.peer_ping(eth0.ip()), "peer cannot ping the pod");
    let out = ctr.exec(&format!("ping -n -q -c 2 -i 0.2 -W 1 {}", net.peer_ip));
    assert!(out.success(), "the pod cannot ping the peer: {out}");
    let routes = ctr.exec("ip route").stdout;
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0 onlink"),
        "{routes}"
    );
}

#[test]
fn a_nic_with_two_addresses_answers_on_both() {
    let net = Network::new(4);
    let ctr = Container::new();
    let nic = NicSpec::docker(&net, 8).addr(&net.cidr(net.addr(9)));
    let eth0 = ctr.add_nic(&net, nic);

    assert_eq!(eth0.addrs, ["10.4.0.8/24", "10.4.0.9/24"]);
    assert!(net.peer_ping(net.addr(8)));
    assert!(net.peer_ping(net.addr(9)));
}

#[test]
fn a_snapshot_of_the_container_network_changes_only_when_the_network_does() {
    let net = Network::new(5);
    let ctr = Container::new();
    ctr.add_nic(&net, NicSpec::docker(&net, 2));
    let before = ctr.net_state();
    net.peer_ping(net.addr(2));

    assert_eq!(before, ctr.net_state());
    ctr.exec("ip addr add 10.5.0.99/24 dev eth0");
    assert_ne!(before, ctr.net_state());
}

#[test]
fn a_distro_report_is_read_from_a_console_that_interleaves_other_output() {
    // Two reports (the last complete one counts), CRs from the serial line, a kernel message
    // and a shell prompt in between.
    let console = "DISTRO-REPORT begin\r\nDISTRO-REPORT nic ens3 mac=02:00:00:00:00:01 mtu=1500 \
                   ip=none\r\nDISTRO-REPORT end\r\n\
                   root@debian:~# DISTRO-REPORT begin\r\n\
                   DISTRO-REPORT client networkd systemd=252\r\n\
                   DISTRO-REPORT uptime 37.83\r\n\
                   DISTRO-REPORT nic ens3 mac=02:42:0A:01:00:03 mtu=1450 ip=10.1.0.3/24\r\n\
                   [   12.345678] random: crng init done\r\n\
                   DISTRO-REPORT nic ens4 mac=02:42:0a:02:00:04 mtu=9000 ip=10.2.0.4/24,10.2.0.9/24\r\n\
                   DISTRO-REPORT route default via 10.1.0.1 dev ens3 proto dhcp src 10.1.0.3 metric 1024\r\n\
                   DISTRO-REPORT route 10.1.0.53 dev ens4 proto dhcp scope link metric 1024\r\n\
                   DISTRO-REPORT dns ens3 10.1.0.53\r\nDISTRO-REPORT dns ens4 10.1.0.53\r\n\
                   DISTRO-REPORT search example.test\r\n\
                   DISTRO-REPORT route-get 10.1.0.53 dev=ens4 via=-\r\n\
                   DISTRO-REPORT resolve db.example.test 10.1.0.50\r\n\
                   DISTRO-REPORT resolve nowhere.test none\r\n\
                   DISTRO-REPORT failed networking.service\r\n\
                   DISTRO-REPORT nic ens5 mac=02:42:0a:01:00:06 mtu=1450 ip=10.1.0.6/24 mtu6=1450\r\n\
                   DISTRO-REPORT addr6 ens5 fd00:1::6/128 scope=global noprefixroute\r\n\
                   DISTRO-REPORT addr6 ens5 fe80::42:aff:fe01:6/64 scope=link -\r\n\
                   DISTRO-REPORT route6 fd00:1::/64 dev ens5 proto ra metric 1024 pref medium\r\n\
                   DISTRO-REPORT route6 default via fe80::42:feff:fe00:1 dev ens5 proto ra metric \
                   1024 expires 1789sec mtu 1450 pref medium\r\n\
                   DISTRO-REPORT neigh6 fe80::42:feff:fe00:1 dev ens5 lladdr 02:42:fe:00:00:01 \
                   router STALE\r\n\
                   DISTRO-REPORT dns ens5 fd00:1::53\r\n\
                   DISTRO-REPORT resolv-conf 127.0.0.53\r\n\
                   DISTRO-REPORT route-get fd00:1::53 dev=ens5 via=-\r\n\
                   DISTRO-REPORT end\r\nDISTRO-REPORT begin\r\n";
    let r = DistroReport::parse(console).expect("a complete report");
    assert_eq!(r.client, "networkd systemd=252");
    assert_eq!(r.uptime, 37.83);
    assert_eq!(r.nics.len(), 3);
    let ens3 = r
        .nic_with_mac("02:42:0a:01:00:03")
        .expect("MACs compare without case");
    assert_eq!((ens3.name.as_str(), ens3.mtu), ("ens3", 1450));
    let ens4 = r.nic_with_mac("02:42:0a:02:00:04").expect("ens4");
    assert_eq!(ens4.addrs, ["10.2.0.4/24", "10.2.0.9/24"]);
    assert_eq!(
        r.default_routes(),
        [("10.1.0.1".to_string(), "ens3".to_string())]
    );
    assert_eq!(r.dns_servers(), ["10.1.0.53", "fd00:1::53"]);
    assert_eq!(r.resolv_conf, ["127.0.0.53"]);
    // IPv6: the NIC's MTU, its addresses with scope and flags, routes, neighbours.
    let ens5 = r.nic_with_mac("02:42:0a:01:00:06").expect("ens5");
    assert_eq!((ens3.mtu6, ens5.mtu6), (None, Some(1450)));
    let global: Vec<(&str, &[String])> = r
        .global6("ens5")
        .iter()
        .map(|a| (a.addr.as_str(), a.flags.as_slice()))
        .collect();
    assert_eq!(
        global,
        [("fd00:1::6/128", &["noprefixroute".to_string()][..])]
    );
    assert_eq!(r.addrs6.len(), 2);
    assert!(r.addrs6[1].flags.is_empty());
    assert_eq!(
        r.default_routes6(),
        [("fe80::42:feff:fe00:1".to_string(), "ens5".to_string())]
    );
    assert_eq!(
        r.neighbour6("fe80::42:feff:fe00:1", "ens5").as_deref(),
        Some("02:42:fe:00:00:01")
    );
    let route6 = r.route_to("fd00:1::53").expect("the IPv6 resolver's route");
    assert_eq!((route6.dev.as_str(), route6.via.as_deref()), ("ens5", None));
    let route = r.route_to("10.1.0.53").expect("the resolver's route");
    assert_eq!((route.dev.as_str(), route.via.as_deref()), ("ens4", None));
    assert_eq!(r.search, ["example.test"]);
    assert_eq!(r.resolved["db.example.test"], ["10.1.0.50"]);
    assert!(r.resolved["nowhere.test"].is_empty());
    assert_eq!(r.failed_units, ["networking.service"]);
    assert!(DistroReport::parse("DISTRO-REPORT begin\nDISTRO-REPORT nic x\n").is_none());
}

#[test]
fn a_dns_server_in_a_namespace_answers_its_names_and_is_gone_after_drop() {
    let net = Network::new(7);
    let server = net.peer_ip;
    {
        let dns = DnsServer::start(net.peer_ns(), server, &[("peer.test", net.addr(9))]);
        // From the network's host side, as a guest on the network would ask.
        let answer = net.host_exec(&format!("busybox nslookup peer.test {server}"));
        assert!(
            answer.success() && answer.stdout.contains("10.7.0.9"),
            "{answer}\n{}",
            dns.log()
        );
        assert!(dns.log().contains("query[A] peer.test"), "{}", dns.log());
    }
    let listening = net.peer_exec("ss -lun").stdout;
    assert!(!listening.contains(&format!("{server}:53")), "{listening}");
}

#[test]
fn pid_one_runs_in_a_docker_like_container_and_gets_signals_and_console_input() {
    let net = Network::new(6);
    let ctr = Container::new();
    ctr.add_nic(&net, NicSpec::docker(&net, 2));
    let dir = RemoveDir::new("bind");
    let bound = dir.0.join("file");
    std::fs::write(&bound, "from the test\n").unwrap();
    let vm = ctr
        .vminit(Path::new("/bin/sh"))
        .args(["-c", DESCRIBE])
        .env("AUTO_ATTACH", "yes")
        .hostname("box1")
        .resolv_conf("nameserver 10.6.0.1\n")
        .bind(&bound, Path::new("/run/bound/file"))
        .spawn();

    vm.expect_console("ready", SHORT);
    let console = vm.console().text();
    assert!(console.contains("pid=1\n"), "{console}");
    assert!(console.contains("dev=tmpfs run=tmpfs"), "{console}");
    let nodes = console
        .lines()
        .find(|l| l.starts_with("nodes="))
        .unwrap_or_default();
    for node in [
        "./null",
        "./zero",
        "./urandom",
        "./random",
        "./tty",
        "./net/tun",
        "./pts/ptmx",
    ] {
        assert!(nodes.split(' ').any(|n| n == node), "no {node} in {nodes}");
    }
    assert!(
        !nodes.contains("./kvm") && !nodes.contains("./sda"),
        "{nodes}"
    );
    assert!(
        console.contains("hostname=box1 resolv=nameserver 10.6.0.1"),
        "{console}"
    );
    assert!(console.contains("links=eth0 lo"), "{console}");
    assert!(
        console.contains("AUTO_ATTACH=yes HOME=/root HOSTNAME=box1 PATH="),
        "{console}"
    );
    assert!(console.contains("sys=ro\nprocsys=ro\n"), "{console}");
    // Docker's capability set plus NET_ADMIN: 0x00000000a80435fb with bit 12 (net_admin).
    assert!(console.contains("CapBnd:\t00000000a80435fb"), "{console}");

    assert!(console.contains("bound=from the test\n"), "{console}");
    let inside = vm.exec_inside(&["sh", "-c", "hostname; stat -f -c %T /dev; ls /run/bound"]);
    assert_eq!(inside.stdout, "box1\ntmpfs\nfile\n", "{inside}");

    vm.type_console("hello\n");
    vm.expect_console("got:hello", SHORT);
    vm.kill(Signal::SIGTERM);
    vm.expect_console("got-term", SHORT);
    assert_eq!(vm.expect_exit(SHORT).code(), Some(7));
}

#[test]
fn pid_one_without_a_handler_ignores_sigterm_but_not_sigkill() {
    let ctr = Container::new();
    let vm = ctr
        .vminit(Path::new("/bin/sh"))
        .args(["-c", "echo ready; while :; do sleep 1; done"])
        .spawn();
    vm.expect_console("ready", SHORT);

    vm.kill(Signal::SIGTERM);
    assert_eq!(vm.wait_exit(Duration::from_millis(700)), None);
    vm.kill(Signal::SIGKILL);
    let status = vm.expect_exit(SHORT);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
}

#[test]
fn a_failing_pid_one_reports_its_exit_code_and_its_stderr() {
    let ctr = Container::new();
    let vm = ctr
        .vminit(Path::new("/bin/sh"))
        .args(["-c", "echo oops >&2; exit 3"])
        .spawn();

    assert_eq!(vm.expect_exit(SHORT).code(), Some(3));
    vm.expect_log("oops", SHORT);
}

#[test]
fn dropping_the_harness_removes_namespaces_and_processes_even_after_a_panic() {
    let seen: Mutex<Option<(Vec<String>, i32)>> = Mutex::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let net = Network::new(7);
        let ctr = Container::new();
        ctr.add_nic(&net, NicSpec::docker(&net, 2));
        let vm = ctr.vminit(Path::new("/bin/sleep")).arg("1000").spawn();
        let names = [net.host_ns().name(), net.peer_ns().name(), ctr.ns().name()];
        *seen.lock().unwrap() = Some((names.map(str::to_owned).to_vec(), vm.pid()));
        panic!("a test fails");
    }));

    assert!(result.is_err());
    let (names, pid) = seen.lock().unwrap().take().unwrap();
    for name in names {
        assert!(
            !Path::new("/run/netns").join(&name).exists(),
            "namespace {name} is left"
        );
    }
    let deadline = Instant::now() + SHORT;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "PID 1 (pid {pid}) still exists");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_test_guest_boots_in_a_container_reports_its_dhcp_lease_and_powers_off_on_the_button() {
    let guest = test_guest();
    let ctr = Container::new();
    let vm = ctr
        .vminit(Path::new("/usr/bin/qemu-system-x86_64"))
        .args([
            "-accel", "tcg", "-m", "256M", "-display", "none", "-monitor", "none",
        ])
        .args(["-chardev", "stdio,id=c,signal=off", "-serial", "chardev:c"])
        .args(["-qmp", "unix:/run/qmp.sock,server=on,wait=off"])
        .args(["-nic", "user,model=virtio-net-pci"])
        .args(guest.qemu_args(""))
        .spawn();

    vm.expect_console("GUEST-REPORT done", BOOT);
    let report = GuestReport::parse(&vm.console().text()).expect("a complete report");
    let eth0 = report.nic("eth0").expect("eth0 in the report");
    assert_eq!(eth0.addrs, ["10.0.2.15/24"], "{report:?}");
    assert_eq!(eth0.mac, "52:54:00:12:34:56");
    assert_eq!(
        eth0.dhcp.as_ref().map(|d| d["router"].as_str()),
        Some("10.0.2.2")
    );
    assert_eq!(report.default_routes(), ["default via 10.0.2.2 dev eth0"]);
    assert_eq!(report.dns, ["10.0.2.3"]);

    vm.expect_console("GUEST-READY", BOOT);
    let mark = vm.console().len();
    vm.type_console("echo $((6*7))\n");
    vm.expect_console_from(mark, "42", SHORT);

    let qmp = vm.container_path("/run/qmp.sock");
    qmp_execute(&qmp, "system_powerdown", None, SHORT).expect("QMP system_powerdown");
    vm.expect_console("GUEST-POWERBUTTON", SHORT);
    assert_eq!(
        vm.expect_exit(SHORT).code(),
        Some(0),
        "QEMU exits 0 when the guest powers off"
    );
}

#[test]
fn the_test_guest_keeps_disk_writes_across_boots_and_can_ignore_its_power_button() {
    let guest = test_guest();
    let temp = RemoveDir::new("disk");
    let dir = &temp.0;
    let disk = dir.join("disk.qcow2");
    make_qcow2(&disk, "16M");
    let qmp = dir.join("qmp.sock");
    let boot = |cmdline: &str| {
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args([
            "-accel", "tcg", "-m", "256M", "-display", "none", "-monitor", "none", "-nic", "none",
        ])
        .args(["-chardev", "stdio,id=c,signal=off", "-serial", "chardev:c"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", disk.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .args(guest.qemu_args(cmdline));
        Process::spawn(qemu)
    };

    let first = boot("vminit_test_write=hello vminit_test_ignore_powerbutton=1");
    let expect = |p: &Process, pattern: &str| {
        p.stdout()
            .wait_for(pattern, BOOT)
            .unwrap_or_else(|| panic!("no {pattern:?}\n{}", p.tails()))
    };
    expect(&first, "GUEST-DISK-WRITTEN hello");
    expect(&first, "GUEST-READY");
    qmp_execute(&qmp, "system_powerdown", None, SHORT).unwrap();
    expect(&first, "GUEST-POWERBUTTON-IGNORED");
    assert_eq!(
        first.wait_exit(Duration::from_secs(1)),
        None,
        "the guest ignored the button"
    );
    qmp_execute(&qmp, "quit", None, SHORT).unwrap();
    assert!(first.wait_exit(SHORT).is_some());

    let second = boot("");
    let disk_line = second
        .stdout()
        .wait_for_whole_line("GUEST-DISK", BOOT)
        .unwrap_or_else(|| panic!("no \"GUEST-DISK\"\n{}", second.tails()));
    assert_eq!(disk_line.line, "GUEST-DISK hello");
}

#[test]
fn a_command_past_its_time_limit_is_killed_with_everything_it_started_and_says_so() {
    let started = Instant::now();
    let out = run_for(
        &["sh", "-c", "sleep 300 & echo $!; wait"],
        Duration::from_secs(1),
    );
    assert!(started.elapsed() < SHORT, "{out}");
    assert!(!out.success(), "{out}");
    assert_eq!(out.timed_out, Some(Duration::from_secs(1)), "{out}");
    assert!(out.to_string().contains("timed out after 1s"), "{out}");
    // The shell's background child was in its process group: gone too (or a zombie until its
    // new parent reaps it).
    let sleeper = out.stdout.trim();
    let deadline = Instant::now() + SHORT;
    let running = || {
        std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
            .is_ok_and(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'))
    };
    while running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!running(), "sleep {sleeper} outlived the killed command");
}

#[test]
fn a_docker_object_is_stale_only_when_the_process_that_made_it_is_gone() {
    let me = owner_label();
    let fields: Vec<u64> = me.split(':').map(|f| f.parse().unwrap()).collect();
    let (ns, pid, start) = (fields[0], fields[1], fields[2]);
    let gone = run_for(&["sh", "-c", "echo $$"], SHORT).stdout;
    let gone = gone.trim();

    assert!(!is_stale("vmtd-a", &me), "ours, running");
    assert!(
        is_stale("vmtd-a", &format!("{ns}:{pid}:{}", start + 1)),
        "our pid, but another process made it"
    );
    assert!(
        is_stale("vmtd-a", &format!("{ns}:{gone}:{start}")),
        "its pid runs no more"
    );
    assert!(
        !is_stale("vmtd-a", &format!("{}:{gone}:{start}", ns + 1)),
        "another pid namespace: cannot be judged, left alone"
    );
    // Objects of older test code: named vmtd-<pid>-<n>-<role>, no owner label.
    assert!(!is_stale(&format!("vmtd-{pid}-1-x"), ""), "ours, running");
    assert!(
        is_stale(&format!("vmtd-{gone}-1-x"), ""),
        "its pid runs no more"
    );
    assert!(!is_stale(&format!("other-{gone}-1-x"), ""), "not a test's");
}

/// A new temporary directory, removed on drop.
struct RemoveDir(PathBuf);

impl RemoveDir {
    fn new(what: &str) -> RemoveDir {
        let dir = std::env::temp_dir().join(format!("{}-{what}", common::unique_id()));
        std::fs::create_dir_all(&dir).expect("make the temporary directory");
        RemoveDir(dir)
    }
}

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
