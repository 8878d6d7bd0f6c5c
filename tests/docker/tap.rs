//! The tap datapath under a real Docker daemon: a container granted only `--cap-add NET_ADMIN
//! --device /dev/net/tun --device /dev/kvm` (no device-cgroup rule, as a plain Kubernetes pod or
//! any runtime's default device list allows) boots the guest on the container's address; and on
//! a `-d macvlan` network the guest resolves container names through the door, as on a bridge.

use crate::common;

use common::docker::{BOOT, Scenario, VmOpts, expect_guest_nics};

#[test]
fn with_only_net_admin_tun_and_kvm_auto_takes_the_tap_datapath_and_a_peer_reaches_the_guest() {
    // given
    let sc = Scenario::new("tapauto");
    let net = sc.network();
    let vm = sc.create_vm(
        VmOpts::new()
            .network(&net)
            .without_cgroup_rule()
            .docker_flags(&["--device", "/dev/net/tun"]),
    );
    // when
    sc.start(&vm);
    // then
    let report = sc.guest_report(&vm);
    let ep = sc.only_endpoint(&vm);
    expect_guest_nics(&report, &[&ep]);
    let logs = sc.logs(&vm);
    assert!(
        logs.contains("datapath: tap (macvtap: "),
        "auto says it took tap, and why:\n{logs}"
    );
    sc.expect_answered(&net, ep.ip, &ep.mac, "the guest");
    let stopped = std::time::Instant::now();
    sc.docker_ok(&["stop", &vm]);
    assert!(
        stopped.elapsed() < std::time::Duration::from_secs(10),
        "docker stop beat its timeout"
    );
    let code = sc.inspect(&vm, "{{.State.ExitCode}}");
    assert_eq!(code.trim(), "0", "{}", sc.logs_tail(&vm));
    assert!(
        sc.logs(&vm).contains("restoring the container's network"),
        "{}",
        sc.logs_tail(&vm)
    );
}

#[test]
fn on_a_macvlan_network_the_guest_resolves_another_containers_name_through_the_door() {
    for datapath in ["macvtap", "tap"] {
        // given
        let sc = Scenario::new(&format!("mvl{datapath}"));
        let net = sc.network_macvlan();
        let other = sc.sleeper(&net);
        let other_ip = sc.endpoints(&other)[0].ip;
        let vm = sc.create_vm(
            VmOpts::new()
                .network(&net)
                .env("NET_DATAPATH", datapath)
                .docker_flags(&["--device", "/dev/net/tun"])
                .kernel_args(&format!("vminit_test_resolve={other}")),
        );
        // when
        sc.start(&vm);
        // then
        let report = sc.guest_report(&vm);
        let ep = sc.only_endpoint(&vm);
        expect_guest_nics(&report, &[&ep]);
        let answer = sc.wait_log_value(&vm, &format!("GUEST-RESOLVE {other} "), BOOT);
        assert_eq!(
            answer,
            Some(other_ip.to_string()),
            "{datapath}: Docker's name for the other container, resolved in the guest:\n{}",
            sc.logs_tail(&vm)
        );
    }
}
