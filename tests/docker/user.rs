//! User mode in a real dockerd: `docker run` with no `--cap-add` and no device-cgroup rule at
//! all boots the guest with the container's address, and a port published with `-p` reaches a
//! service in the guest. passt's sandbox makes a user namespace, which Docker's default seccomp
//! profile forbids: the container runs with `--security-opt seccomp=unconfined`, and without it
//! vminit stops with one line naming that flag and the better datapath's.

use crate::common;

use std::time::Duration;

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
    // docs/user-mode.md)
    let published = sc.docker_ok(&["port", &vm, "80/tcp"]);
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
    assert_eq!(answer, "GUEST-TCP 80", "{}", sc.logs_tail(&vm));
    // docker stop: a clean poweroff
    let stop = sc.docker(&["stop", &vm]);
    assert!(stop.success(), "{stop}");
    let code = sc.inspect(&vm, "{{.State.ExitCode}}");
    assert_eq!(code.trim(), "0", "{}", sc.logs(&vm));
}

#[test]
fn under_dockers_default_seccomp_profile_user_mode_stops_naming_the_flags() {
    // given: no --cap-add, no device-cgroup rule, Docker's default seccomp profile
    let sc = Scenario::new("user-seccomp");
    let net = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .without_net_admin()
            .without_cgroup_rule(),
    );
    // when
    let (code, error) = sc.run_to_error(&vm);
    // then
    assert_eq!(code, 69, "{}", sc.logs(&vm));
    for flag in ["--security-opt seccomp=unconfined", "--cap-add NET_ADMIN"] {
        assert!(error.contains(flag), "{flag}: {error}");
    }
    assert!(
        sc.logs(&vm).contains("Couldn't create user namespace"),
        "passt's own message\n{}",
        sc.logs(&vm)
    );
}
