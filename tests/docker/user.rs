//! User mode in a real dockerd: `docker run` with no `--cap-add` and no device-cgroup rule at
//! all boots the guest with the container's address, and a port published with `-p` reaches a
//! service in the guest. passt's sandbox makes a user namespace, which Docker's default seccomp
//! profile forbids: with `--security-opt seccomp=unconfined` the guest gets passt, and with no
//! flag at all QEMU's own user networking (slirp), said in one line.

use crate::common;

use std::time::{Duration, Instant};

use crate::tap::KubePlay;
use common::docker::{Scenario, VmOpts, expect_default_route_via, expect_guest_nics, guest_nic_of};

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
        logs.contains("datapath: user mode (this container lacks the capability NET_ADMIN)"),
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

/// What `docker inspect` says the container was given: no added capability, no security
/// option, not privileged, no device-cgroup rule, and no device but `/dev/kvm`.
fn expect_no_privilege_asked(sc: &Scenario, vm: &str) {
    let asked = sc.inspect(
        vm,
        "{{json .HostConfig.CapAdd}} {{json .HostConfig.SecurityOpt}} {{.HostConfig.Privileged}} {{json .HostConfig.DeviceCgroupRules}} {{range .HostConfig.Devices}}{{.PathOnHost}} {{end}}",
    );
    assert_eq!(asked.trim(), "null null false null /dev/kvm", "{asked}");
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
    // given: no --cap-add, no device-cgroup rule, no --security-opt (Docker's default seccomp
    // profile forbids passt's sandbox), no device but /dev/kvm (every test of this tier passes
    // it; vminit uses it when present)
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
    expect_no_privilege_asked(&sc, &vm);
    // when
    sc.start(&vm);
    // then: the guest has the container's MAC and address (in slirp's /29) and its gateway
    let report = sc.guest_report(&vm);
    let ep = sc.only_endpoint(&vm);
    let nic = guest_nic_of(&report, &ep);
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

#[test]
fn podman_kube_play_runs_the_restricted_pod_as_a_user_without_capabilities_and_the_vm_takes_the_pods_address()
 {
    // given: the shipped Restricted-profile manifest (UID 1000, all capabilities dropped, no
    // privilege escalation, seccomp RuntimeDefault), its disk owned by that user
    let fx = common::docker::fixtures();
    let play = KubePlay::new(&fx.image, "pod-restricted.yaml", (1000, 1000));
    let manifest = play.manifest.display().to_string();
    // when
    let up = play.podman(&["kube", "play", &manifest]);
    assert!(up.success(), "{up}");
    // then: vminit runs as 1000 with no capability, without privilege escalation
    let logs = play.guest_report_logs();
    let pid = play.podman(&["inspect", "vm-vm", "--format", "{{.State.Pid}}"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.stdout.trim()))
        .expect("vminit's status");
    for line in [
        "Uid:\t1000\t1000\t1000\t1000",
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(status.contains(line), "{line}:\n{status}");
    }
    assert!(logs.contains("user mode: "), "which relay is said\n{logs}");
    // and the guest has the pod's MAC and address, and a peer reaches its service
    let f = play.pod_network();
    let (network, ip, mac) = (f[0].as_str(), f[1].as_str(), f[3].as_str());
    let report = common::GuestReport::parse(&logs).expect("a guest report");
    let g = report.nic("eth0").expect("the guest's eth0");
    assert_eq!(g.mac, mac, "the pod's MAC");
    assert_eq!(
        g.addrs
            .iter()
            .map(|a| a.split('/').next().unwrap_or(""))
            .collect::<Vec<_>>(),
        vec![ip],
        "the pod's address"
    );
    let answer = play.peer(
        network,
        &format!("for i in 1 2 3 4 5; do r=$(echo ping | /bin/busybox timeout 10 /bin/busybox nc {ip} 80) && [ -n \"$r\" ] && {{ echo \"$r\"; exit 0; }}; sleep 1; done; exit 1"),
    );
    assert_eq!(answer.stdout.trim(), "GUEST-TCP 80", "{answer}\n{logs}");
    // The pod stops within its grace period, vminit exiting 0.
    assert_eq!(play.stop(), "0", "{}", play.podman(&["logs", "vm-vm"]));
}
