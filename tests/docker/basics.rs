//! End-to-end tests of the vminit image under a real Docker daemon: the workflows of the README
//! (`docker run`, `docker network connect`, `docker attach`, `docker stop`, the debug shell, the
//! least-privilege flags and the HEALTHCHECK), each booting the test guest (tests/guest) through
//! the image's contract. The harness (daemon, image, fixtures, clean-up, time limits) is
//! [`common::docker`]; each test reads as given / when / then.

use crate::common;

use std::thread;
use std::time::{Duration, Instant};

use common::docker::{
    BOOT, Endpoint, HOST_BUSYBOX, Scenario, VmOpts, expect_default_route_via, expect_guest_nics,
    fixtures,
};
use common::{Cidata, GuestLookup};

/// Docker's default `docker stop` timeout, which a clean guest poweroff must beat.
const DOCKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn docker_run_gives_the_guest_the_containers_ip_and_mac_and_a_peer_container_pings_it() {
    // given
    let sc = Scenario::new("onenet");
    let net = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net));
    // when
    sc.start(&vm);
    // then
    let report = sc.guest_report(&vm);
    let ep = sc.only_endpoint(&vm);
    expect_guest_nics(&report, &[&ep]);
    expect_default_route_via(&report, &ep);
    sc.expect_answered(&net, ep.ip, &ep.mac, "the guest");
}

#[test]
fn the_guest_resolves_another_containers_name_on_the_docker_network() {
    // given
    let sc = Scenario::new("dns");
    let net = sc.network();
    let other = sc.sleeper(&net);
    let other_ip = sc.endpoints(&other)[0].ip;
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .kernel_args(&format!("vminit_test_resolve={other}")),
    );
    // when
    sc.start(&vm);
    // then
    let report = sc.guest_report(&vm);
    assert!(
        !report.dns.is_empty() && report.dns.iter().all(|d| !d.starts_with("127.")),
        "the guest gets a resolver it can reach, never a loopback one: {report:?}"
    );
    let answer = sc.wait_log_value(&vm, &format!("GUEST-RESOLVE {other} "), BOOT);
    assert_eq!(
        answer,
        Some(other_ip.to_string()),
        "Docker's name for the other container, resolved in the guest:\n{}",
        sc.logs_tail(&vm)
    );
}

#[test]
fn with_guest_dns_the_guest_resolves_container_names_and_names_only_the_upstream_knows() {
    // given: a container to resolve by name, and an upstream resolver on the network that
    // answers one name of its own (the image's dnsmasq, run as a plain DNS server)
    let sc = Scenario::new("dns-ext");
    let net = sc.network();
    let other = sc.sleeper(&net);
    let other_ip = sc.only_endpoint(&other).ip;
    let external = "upstream-only.dns.test";
    let record = format!("--host-record={external},{other_ip}");
    let upstream = sc.daemon(
        "upstream",
        &net,
        &["--entrypoint", "/usr/sbin/dnsmasq"],
        &fixtures().image,
        &[
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--log-facility=-",
            "--no-resolv",
            "--no-hosts",
            "--local=/#/",
            &record,
        ],
    );
    let upstream_ip = sc.only_endpoint(&upstream).ip.to_string();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .env("GUEST_DNS", &upstream_ip)
            .kernel_args(&format!("vminit_test_resolve={other},{external}")),
    );
    // when
    sc.start(&vm);
    // then: the door (Docker's resolver behind it), then the upstream
    let report = sc.guest_report(&vm);
    assert_eq!(report.dns.len(), 2, "{report:?}");
    assert!(report.dns[0].starts_with("169.254."), "{report:?}");
    assert_eq!(report.dns[1], upstream_ip);
    let logs = sc.wait_logs(&vm, "GUEST-READY", BOOT);
    let lookups = GuestLookup::parse_all(&logs);
    eprintln!("lookups: {lookups:?}");
    for name in [other.as_str(), external] {
        let lookup = lookups.iter().find(|l| l.name == name);
        assert_eq!(
            lookup.and_then(|l| l.addr.clone()),
            Some(other_ip.to_string()),
            "{name} resolved in the guest:\n{}",
            sc.logs_tail(&vm)
        );
        // Docker gives up on an upstream after 4 s, glibc on a server after 5 s.
        let ms = lookup.and_then(|l| l.ms).unwrap_or(u64::MAX);
        assert!(ms < 2000, "{name} took {ms} ms");
    }
    assert!(!sc.logs(&vm).contains("GUEST_DNS"), "no warning");
}

#[test]
fn two_networks_connected_before_start_both_reach_the_guest_which_has_one_default_route() {
    // given
    let sc = Scenario::new("twonet");
    let net1 = sc.network();
    let net2 = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net1));
    sc.connect(&vm, &net2);
    // when
    sc.start(&vm);
    // then
    let report = sc.guest_report(&vm);
    let eps = sc.endpoints(&vm);
    assert_eq!(eps.len(), 2, "{eps:?}");
    expect_guest_nics(&report, &[&eps[0], &eps[1]]);

    let defaults = report.default_routes();
    assert_eq!(
        defaults.len(),
        1,
        "the guest should have exactly one default route: {report:?}"
    );
    let gateways: Vec<String> = eps.iter().map(|e| e.gateway.to_string()).collect();
    assert!(
        gateways
            .iter()
            .any(|g| defaults[0].starts_with(&format!("default via {g} dev "))),
        "the guest's default route {:?} should go via one of the networks' gateways {gateways:?}",
        defaults[0]
    );

    for net in [&net1, &net2] {
        let ep = eps
            .iter()
            .find(|e| e.network == net.name)
            .expect("an endpoint on each network");
        sc.expect_answered(net, ep.ip, &ep.mac, "the guest");
    }
}

#[test]
fn attach_ifaces_eth1_gives_the_guest_only_eth1_and_leaves_eth0_to_the_container() {
    // given
    let sc = Scenario::new("attach1");
    let net1 = sc.network();
    let net2 = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net1)
            .env("AUTO_ATTACH", "no")
            .env("ATTACH_IFACES", "eth1"),
    );
    sc.connect(&vm, &net2);
    // when
    sc.start(&vm);
    // then
    let report = sc.guest_report(&vm);
    let eps = sc.endpoints(&vm);
    assert_eq!(eps.len(), 2, "{eps:?}");

    // The container's eth0 as seen from a busybox sharing its network namespace: Docker decides
    // which network is eth0, so find it by its (untouched) MAC.
    let inside = sc.in_netns_of(
        &vm,
        "ip -o link show dev eth0; ip -o -4 addr show dev eth0; ip route",
    );
    assert!(inside.success(), "{inside}");
    let kept = eps
        .iter()
        .find(|ep| inside.stdout.contains(&format!("link/ether {} ", ep.mac)))
        .unwrap_or_else(|| panic!("eth0 should keep its Docker MAC, one of {eps:?}:\n{inside}"));
    assert!(
        inside.stdout.contains(&format!("inet {} ", kept.cidr())),
        "eth0 should keep its address {}:\n{inside}",
        kept.cidr()
    );
    let given = eps
        .iter()
        .find(|ep| ep.network != kept.network)
        .expect("the other endpoint");

    // Only eth1's NIC, with eth1's MAC and IP.
    expect_guest_nics(&report, &[given]);
    let logs = sc.logs(&vm);
    assert!(
        !logs
            .lines()
            .any(|l| l.starts_with("vminit: ")
                && (l.contains(" dev eth0") || l.contains("link eth0 "))),
        "vminit should not touch eth0:\n{logs}"
    );

    let net_of = |ep: &Endpoint| {
        if ep.network == net1.name {
            &net1
        } else {
            &net2
        }
    };
    sc.expect_answered(net_of(given), given.ip, &given.mac, "the guest");
    sc.expect_answered(net_of(kept), kept.ip, &kept.mac, "the container's own eth0");
}

#[test]
fn docker_attach_talks_to_the_guest_shell_ctrl_c_reaches_the_guest_and_detach_leaves_it_running() {
    // given
    let sc = Scenario::new("attach");
    let net = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .docker_flags(&["--interactive", "--tty"]),
    );
    sc.start(&vm);
    sc.wait_logs(&vm, "GUEST-READY", BOOT);

    // when a user attaches and types
    let console = sc.attach_terminal(&vm);
    assert!(
        console.wait_for_prompt("guest# "),
        "no guest prompt through docker attach:\n{}\n{}",
        console.text(),
        sc.logs_tail(&vm)
    );
    let mark = console.len();
    console.write("echo $((6*7))\r");
    assert!(
        console.wait_for_line(mark, "42", Duration::from_secs(20)),
        "the guest did not answer 42:\n{}",
        console.text()
    );

    // Ctrl-C on the attached terminal interrupts the guest's foreground command; QEMU
    // (signal=off on its console) lives on.
    console.press("sleep 1000\r", Duration::from_millis(800));
    let mark = console.len();
    console.press("\x03", Duration::from_millis(300));
    console.write("echo after-$((2*3))-ctrl-c\r");
    assert!(
        console.wait_for_line(mark, "after-6-ctrl-c", Duration::from_secs(20)),
        "Ctrl-C did not reach the guest's shell:\n{}\n{}",
        console.text(),
        sc.logs_tail(&vm)
    );

    // and detaches with Docker's default detach keys: ctrl-p ctrl-q
    console.write("\x10\x11");
    assert!(
        console.wait_exit(Duration::from_secs(10)),
        "docker attach did not detach on ctrl-p ctrl-q:\n{}",
        console.text()
    );
    assert!(
        console.text().contains("read escape sequence"),
        "{}",
        console.text()
    );

    // then the guest runs on
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sc.inspect(&vm, "{{.State.Running}}"),
        "true",
        "{}",
        sc.logs_tail(&vm)
    );
    let health = sc.health_check(&vm);
    assert!(
        health.success(),
        "QEMU should still answer QMP after the detach: {health}\n{}",
        sc.logs_tail(&vm)
    );
}

#[test]
fn docker_stop_powers_the_guest_off_cleanly_and_exits_0_within_dockers_timeout() {
    // given
    let sc = Scenario::new("stop");
    let net = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net));
    sc.start(&vm);
    sc.wait_logs(&vm, "GUEST-READY", BOOT);

    // when
    let started = Instant::now();
    let stop = sc.docker(&["stop", &vm]);
    let took = started.elapsed();

    // then
    assert!(stop.success(), "{stop}");
    assert!(
        took < DOCKER_STOP_TIMEOUT,
        "docker stop took {took:?}:\n{}",
        sc.logs_tail(&vm)
    );
    assert_eq!(
        sc.inspect(&vm, "{{.State.ExitCode}}"),
        "0",
        "exit code:\n{}",
        sc.logs_tail(&vm)
    );
    let logs = sc.logs(&vm);
    assert!(
        logs.contains("GUEST-POWERBUTTON"),
        "the guest never saw the power button:\n{logs}"
    );
    let steps = logs.lines().filter(|l| l.starts_with("vminit: ")).count();
    assert!(
        steps >= 5,
        "docker logs should show vminit's steps:\n{logs}"
    );
    assert!(
        logs.contains("GUEST-REPORT done"),
        "docker logs should show the guest's console:\n{logs}"
    );
}

#[test]
fn the_debug_shell_gets_a_prepared_container_whose_qemu_sh_boots_the_guest_from_the_image_disk() {
    // given: CMD `sh` leaves QEMU no -kernel: the guest boots from /image/image.qcow2 (SYSLINUX).
    let sc = Scenario::new("debug");
    let net = sc.network();
    let busybox = format!("{HOST_BUSYBOX}:/bin/busybox:ro");
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .disk(&sc.boot_disk_dir("debugdisk"))
            .docker_flags(&["--interactive", "-v", &busybox])
            .cmd(&["sh"]),
    );
    let shell = sc.start_attached(&vm);
    sc.wait_logs(&vm, "vminit: debug mode", BOOT);
    // when
    shell.write("sh /run/vminit/qemu.sh\n");
    // then
    let report = sc.guest_report(&vm);
    let logs = sc.logs(&vm);
    assert!(
        !logs.contains("vminit: QEMU running"),
        "vminit itself should not start QEMU in debug mode:\n{logs}"
    );
    let ep = sc.only_endpoint(&vm);
    expect_guest_nics(&report, &[&ep]);
    sc.expect_answered(&net, ep.ip, &ep.mac, "the guest the shell started");
}

#[test]
fn macvtap_without_cap_add_net_admin_exits_non_zero_naming_the_flag() {
    // given (NET_DATAPATH=auto would boot in user mode: tests/docker/user.rs)
    let sc = Scenario::new("nocap");
    let net = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .without_net_admin()
            .env("NET_DATAPATH", "macvtap"),
    );
    // when
    let (code, error) = sc.run_to_error(&vm);
    // then
    assert_ne!(code, 0, "{}", sc.logs(&vm));
    assert!(
        error.contains("--cap-add NET_ADMIN"),
        "the error should name the flag: {error:?}\n{}",
        sc.logs(&vm)
    );
}

#[test]
fn macvtap_without_the_device_cgroup_rule_exits_non_zero_naming_the_flag() {
    // given
    let sc = Scenario::new("nocgroup");
    let net = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .without_cgroup_rule()
            .env("NET_DATAPATH", "macvtap"),
    );
    // when
    let (code, error) = sc.run_to_error(&vm);
    // then
    assert_ne!(code, 0, "{}", sc.logs(&vm));
    let rule = format!(
        "--device-cgroup-rule 'c {}:* rwm'",
        fixtures().macvtap_major
    );
    assert!(
        error.contains(&rule),
        "the error should name the flag ({rule}): {error:?}\n{}",
        sc.logs(&vm)
    );
}

#[test]
fn the_images_healthcheck_reports_healthy_while_the_guest_runs() {
    // given
    let sc = Scenario::new("health");
    let net = sc.network();
    let vm = sc.create_vm(VmOpts::new().network(&net).docker_flags(&[
        "--health-interval=1s",
        "--health-timeout=5s",
        "--health-start-period=60s",
    ]));
    // when
    sc.start(&vm);
    // then
    let status = sc.wait_health(&vm, "healthy", BOOT);
    assert_eq!(
        status,
        "healthy",
        "{}\n{}",
        sc.inspect(&vm, "{{json .State.Health}}"),
        sc.logs_tail(&vm)
    );
    let check = sc.health_check(&vm);
    assert!(check.success(), "{check}");
}

#[test]
fn a_seed_from_a_read_only_key_file_reaches_the_guest_and_its_id_survives_docker_restart() {
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAPFPMcJf+JBN2T9sgjx88buoVWz0EfiCGaLNOJ3CJYb alice@laptop";
    // given a key file mounted read-only and a guest that reports its cidata volume
    let sc = Scenario::new("seed");
    let net = sc.network();
    let keys = sc.disk_dir("keys").join("id_ed25519.pub");
    std::fs::write(&keys, format!("{KEY}\n")).expect("write the key file");
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .kernel_args("vminit_test_cidata=1")
            .env("CLOUD_INIT_SSH_KEYS_FILE", "/run/keys.pub")
            .docker_flags(&[&format!("--volume={}:/run/keys.pub:ro", keys.display())]),
    );
    // when
    sc.start(&vm);
    // then the guest finds a read-only seed with the key, the container's MAC and hostname
    let logs = sc.wait_logs(&vm, "GUEST-CIDATA done", BOOT);
    let first = Cidata::parse(&logs).expect("a seed report");
    assert!(
        first.device.contains(" ro=1 "),
        "a read-only disk: {first:?}"
    );
    assert!(
        first.text("user-data").contains(&format!("\"{KEY}\"")),
        "{first:?}"
    );
    let ep = sc.only_endpoint(&vm);
    assert!(
        first
            .text("network-config")
            .contains(&format!("macaddress: \"{}\"", ep.mac)),
        "the container's MAC: {first:?}"
    );
    let hostname = sc.inspect(&vm, "{{.Config.Hostname}}");
    let meta = first.text("meta-data");
    assert!(
        meta.contains(&format!("local-hostname: \"{hostname}\"\n")),
        "{meta}"
    );
    let id = meta
        .lines()
        .find(|l| l.starts_with("instance-id: \"vminit-"))
        .unwrap_or_else(|| panic!("an instance id: {meta}"))
        .to_owned();

    // when the container restarts, then the instance id is the same
    sc.docker_ok(&["restart", &vm]);
    let deadline = Instant::now() + BOOT;
    let logs = loop {
        let logs = sc.logs(&vm);
        if logs.matches("GUEST-CIDATA done").count() >= 2 {
            break logs;
        }
        assert!(
            Instant::now() < deadline,
            "no second boot within {BOOT:?}\n{}",
            sc.logs_tail(&vm)
        );
        thread::sleep(Duration::from_millis(300));
    };
    let second = Cidata::parse(&logs).expect("a seed report");
    let meta_again = second.text("meta-data");
    assert!(
        meta_again.lines().any(|l| l == id),
        "the instance id survives docker restart: {id} vs\n{meta_again}"
    );
}

#[test]
fn a_network_connected_and_disconnected_while_the_guest_runs_follows_the_container() {
    // given a running guest on one network, and a peer that pings it all along
    let sc = Scenario::new("hotplug");
    let (net1, net2) = (sc.network(), sc.network());
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net1)
            .kernel_args("vminit_test_hotplug=1"),
    );
    sc.start(&vm);
    sc.guest_report(&vm);
    let first = sc.only_endpoint(&vm);
    let pinger = sc.sleeper(&net1);
    let steady = {
        let (pinger, ip) = (pinger.clone(), first.ip);
        thread::spawn(move || {
            common::run_for(
                &[
                    "docker",
                    "exec",
                    &pinger,
                    "/bin/busybox",
                    "ping",
                    "-q",
                    "-c",
                    "150",
                    "-i",
                    "0.2",
                    "-W",
                    "1",
                    &ip.to_string(),
                ],
                Duration::from_secs(90),
            )
        })
    };

    // when a second network is connected
    sc.connect(&vm, &net2);
    // then the guest gets a NIC with the container's MAC and address there
    let second = sc.endpoint_on(&vm, &net2);
    let added = sc.wait_logs(&vm, &format!("mac={} ip=", second.mac), BOOT);
    assert!(
        added.contains(&format!("mac={} ip={}", second.mac, second.cidr())),
        "{}",
        sc.logs_tail(&vm)
    );
    sc.expect_answered(&net2, second.ip, &second.mac, "the guest's new NIC");

    // when it is disconnected, then the guest's NIC goes
    sc.docker_ok(&["network", "disconnect", &net2.name, &vm]);
    sc.wait_logs(&vm, "GUEST-HOTPLUG removed", BOOT);
    sc.expect_answered(&net1, first.ip, &first.mac, "the guest, still");

    // and the first network answered throughout
    let ping = steady.join().expect("the pinger");
    // "150 packets transmitted, 150 packets received, 0% packet loss"
    let lost = ping
        .stdout
        .split("% packet loss")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|p| p.parse::<u32>().ok());
    assert!(
        lost.is_some_and(|p| p <= 2),
        "the first NIC kept answering (loss {lost:?}):\n{ping}"
    );

    // when the second network comes back and the first, with the default route, goes
    let plugged_before = sc.logs(&vm).matches("GUEST-HOTPLUG added ").count();
    sc.connect(&vm, &net2);
    let again = sc.endpoint_on(&vm, &net2);
    let added = format!("mac={} ip={}", again.mac, again.cidr());
    let deadline = Instant::now() + BOOT;
    while !sc
        .logs(&vm)
        .lines()
        .filter(|l| l.contains("GUEST-HOTPLUG added "))
        .skip(plugged_before)
        .any(|l| l.contains(&added))
    {
        assert!(Instant::now() < deadline, "{added}?\n{}", sc.logs_tail(&vm));
        thread::sleep(Duration::from_millis(300));
    }
    sc.docker_ok(&["network", "disconnect", &net1.name, &vm]);
    // then Docker routes the container through the second network's gateway, and vminit
    // makes that NIC the one that gives the guest its router
    let moved = sc.wait_logs(&vm, "now holds the container's default route", BOOT);
    assert!(
        moved.contains(&format!("gives the router {}", again.gateway)),
        "{}",
        sc.logs_tail(&vm)
    );
    let routes = sc.in_netns_of(&vm, "ip route show default");
    assert!(
        routes
            .stdout
            .contains(&format!("default via {}", again.gateway)),
        "{routes}"
    );
    sc.expect_answered(
        &net2,
        again.ip,
        &again.mac,
        "the guest on the second network",
    );
    assert!(sc.docker(&["stop", &vm]).success());
    assert_eq!(
        sc.inspect(&vm, "{{.State.ExitCode}}"),
        "0",
        "{}",
        sc.logs_tail(&vm)
    );
}
