//! User mode in a real dockerd: `docker run` with no `--cap-add` and no device-cgroup rule at
//! all boots the guest with the container's address, and a port published with `-p` reaches a
//! service in the guest. passt's sandbox makes a user namespace, which Docker's default seccomp
//! profile forbids: with `--security-opt seccomp=unconfined` the guest gets passt, and with no
//! flag at all QEMU's own user networking (slirp), said in one line.

use crate::common;

use std::time::{Duration, Instant};

use common::docker::{Scenario, VmOpts, expect_default_route_via, expect_guest_nics};

#[test]
fn without_any_cap_add_the_guest_boots_with_the_containers_ip_and_a_published_port_reaches_it() {
    // given: the README's run line without --cap-add NET_ADMIN and without the device-cgroup
    // rule; the guest serves TCP on port 80, published on the host's loopback
    let sc = Scenario::new("user");
    let net = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .without_net_admin()
            .without_cgroup_rule()
            .docker_flags(&[
                "--publish=127.0.0.1::80",
                "--security-opt=seccomp=unconfined",
            ])
            .kernel_args("vminit_test_serve=80"),
    );
    // when
    sc.start(&vm);
    // then: the guest has the container's MAC, address and gateway
    let report = sc.guest_report(&vm);
    let ep = sc.only_endpoint(&vm);
    expect_guest_nics(&report, &[&ep]);
    expect_default_route_via(&report, &ep);
    let logs = sc.logs(&vm);
    assert!(
        logs.contains("datapath: user mode, passt (this container lacks the capability NET_ADMIN)"),
        "{logs}"
    );
    // and the published port reaches the guest's service (the client speaks first: see
    // docs/user-mode.md); docker stop: a clean poweroff
    expect_published_port_reaches_the_guest(&sc, &vm);
    expect_clean_stop(&sc, &vm);
}

/// `docker port VM 80/tcp` answers with the guest's service.
fn expect_published_port_reaches_the_guest(sc: &Scenario, vm: &str) {
    let published = sc.docker_ok(&["port", vm, "80/tcp"]);
    let host_port = published
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .map(str::trim)
        .expect("docker port prints ADDR:PORT")
        .to_owned();
    let script =
        format!("exec 3<>/dev/tcp/127.0.0.1/{host_port} && echo ping >&3 && timeout 10 cat <&3");
    let mut answer = String::new();
    for _ in 0..10 {
        let out = common::run(&["timeout", "15", "bash", "-c", &script]);
        answer = out.stdout.trim().to_owned();
        if answer == "GUEST-TCP 80" {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(answer, "GUEST-TCP 80", "{}", sc.logs_tail(vm));
}

/// `docker stop`: exit 0, within Docker's 10 s (no SIGKILL).
fn expect_clean_stop(sc: &Scenario, vm: &str) {
    let asked = Instant::now();
    let stop = sc.docker(&["stop", vm]);
    let took = asked.elapsed();
    assert!(stop.success(), "{stop}");
    let code = sc.inspect(vm, "{{.State.ExitCode}}");
    assert_eq!(code.trim(), "0", "{}", sc.logs(vm));
    assert!(took < Duration::from_secs(10), "docker stop took {took:?}");
}

#[test]
fn with_no_flag_at_all_slirp_boots_the_guest_with_the_containers_ip_and_a_published_port() {
    // given: only the disk and /dev/kvm's absence: no --cap-add, no device-cgroup rule, no
    // --security-opt (Docker's default seccomp profile forbids passt's sandbox)
    let sc = Scenario::new("user-seccomp");
    let net = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .without_net_admin()
            .without_cgroup_rule()
            .docker_flags(&["--publish=127.0.0.1::80"])
            .kernel_args("vminit_test_serve=80"),
    );
    // when
    sc.start(&vm);
    // then: the guest has the container's MAC and address (in slirp's /29) and its gateway
    let report = sc.guest_report(&vm);
    let ep = sc.only_endpoint(&vm);
    let nic = report
        .nics
        .iter()
        .find(|n| n.mac == ep.mac)
        .unwrap_or_else(|| {
            panic!(
                "no guest NIC has the container's MAC {}: {report:?}",
                ep.mac
            )
        });
    assert_eq!(nic.addrs, vec![format!("{}/29", ep.ip)], "{report:?}");
    expect_default_route_via(&report, &ep);
    let logs = sc.logs(&vm);
    assert!(
        logs.contains("user mode: QEMU's user networking (slirp), as passt cannot build its sandbox here (unshare(CLONE_NEWUSER): Operation not permitted"),
        "one line says which relay and why\n{logs}"
    );
    assert!(logs.contains("--security-opt seccomp=unconfined"), "{logs}");
    // and the published port reaches the guest's service; docker stop is clean
    expect_published_port_reaches_the_guest(&sc, &vm);
    expect_clean_stop(&sc, &vm);
}
