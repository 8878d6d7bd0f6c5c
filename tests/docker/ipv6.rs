//! The vminit image on a real Docker `--ipv6` user network: the guest takes the container's
//! IPv6 address too, routes through the network's gateway (Docker sends no router
//! advertisements: vminit speaks for the gateway), and a peer container reaches it there.

use crate::common;

use common::docker::{BOOT, Scenario, VmOpts, expect_guest_nics};

#[test]
fn on_a_docker_ipv6_network_the_guest_gets_the_containers_ipv6_address_and_a_peer_container_pings_it()
 {
    // given
    let sc = Scenario::new("ipv6");
    let net = sc.network_ipv6();
    let gateway = sc.network_gateway6(&net);
    let vm = sc.create_vm(VmOpts::new().network(&net).kernel_args(&format!(
        "vminit_test_ipv6=eth0 vminit_test_ping6={gateway}"
    )));
    // when
    sc.start(&vm);
    // then
    let report = sc.guest_report(&vm);
    let ep = sc.only_endpoint(&vm);
    expect_guest_nics(&report, &[&ep]);
    let (ip6, prefix, gateway6) = sc.endpoint6(&vm);
    let nic = &report.nics[0].name;
    let global: Vec<&str> = report
        .global6(nic)
        .iter()
        .map(|a| a.addr.as_str())
        .collect();
    assert_eq!(
        global,
        [format!("{ip6}/128")],
        "the container's IPv6 address, by DHCPv6:\n{}",
        sc.logs_tail(&vm)
    );
    let network = std::net::Ipv6Addr::from(u128::from(ip6) & (u128::MAX << (128 - prefix)));
    assert!(
        report
            .routes6
            .iter()
            .any(|l| l.starts_with(&format!("{network}/{prefix} dev {nic}"))),
        "the container's prefix, on-link: {:#?}",
        report.routes6
    );
    // One default route, through the bridge itself (its link-local address, its MAC).
    let defaults = report.default_routes6();
    assert_eq!(defaults.len(), 1, "{:#?}", report.routes6);
    let router = defaults[0]
        .split_whitespace()
        .nth(2)
        .expect("default via ROUTER");
    assert!(router.starts_with("fe80:"), "{defaults:?}");
    assert_eq!(
        report.neighbour6(router, nic),
        Some(sc.bridge_mac(&net)),
        "the gateway's MAC: {:#?}",
        report.neigh6
    );
    // A peer container reaches the guest at the container's IPv6 address and MAC.
    let ping = sc.peer_ping6(&net, ip6);
    assert!(ping.ok, "{}", ping.output);
    assert_eq!(
        ping.neighbour_mac.as_deref(),
        Some(ep.mac.as_str()),
        "{}",
        ping.output
    );
    // The guest reaches the gateway's global address through it.
    assert_eq!(gateway, gateway6);
    assert_eq!(
        sc.wait_log_value(&vm, &format!("GUEST-PING6 {gateway} "), BOOT)
            .as_deref(),
        Some("ok"),
        "{}",
        sc.logs_tail(&vm)
    );
    assert!(sc.docker(&["stop", &vm]).success());
    assert_eq!(
        sc.inspect(&vm, "{{.State.ExitCode}}"),
        "0",
        "{}",
        sc.logs_tail(&vm)
    );
}
