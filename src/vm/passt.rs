//! Renders the command line of passt, the user-mode datapath, for one guest NIC (pure).
//!
//! passt answers the guest's ARP, DHCP, NDP and DHCPv6 with what it reads from the container
//! NIC (`-i`), and relays the guest's TCP, UDP and ping through sockets of the container's
//! own namespace: nothing in the namespace changes and no capability is needed.

use std::ffi::OsString;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::config::{USER_PORTS_DEFAULT, UserPorts};
use crate::net::types::{Ipv4Net, Mac};

/// One NIC's passt.
pub struct PasstNic<'a> {
    pub passt: &'a Path,
    /// The Unix socket QEMU connects to.
    pub socket: &'a Path,
    /// The container NIC whose addresses, routes and MTU the guest gets (`eth0`).
    pub lower: &'a str,
    /// The guest's IPv4 address and prefix (the one `SELECTED_NETWORK` picks).
    pub addr: Option<Ipv4Net>,
    /// The guest's router; `None` where the NIC holds no default route (see `router`).
    pub gateway: Option<Ipv4Addr>,
    pub addr6: Option<Ipv6Addr>,
    pub mtu: u32,
    /// passt's own MAC towards the guest: not the guest's, which is the container NIC's.
    pub mac: Mac,
    pub ports: &'a UserPorts,
    /// Serve DHCP, DHCPv6 and router advertisements (`ENABLE_DHCP`).
    pub dhcp: bool,
    /// Let the guest's resolver be the gateway's address, which passt relays to the
    /// container's loopback resolver (Docker's 127.0.0.11); this also sends the guest's other
    /// connections to the gateway's address to the container's loopback.
    pub map_gateway: bool,
    /// The user and group passt runs as (`--runas`).
    pub runas: (u32, u32),
}

/// passt's argv, program first: in the foreground, errors only, on `socket`.
pub fn argv(p: &PasstNic) -> Vec<OsString> {
    let mut a: Vec<String> = vec![
        p.passt.display().to_string(),
        "--foreground".into(),
        "--quiet".into(),
        "--runas".into(),
        format!("{}:{}", p.runas.0, p.runas.1),
        "--socket".into(),
        p.socket.display().to_string(),
        "--interface".into(),
        p.lower.to_string(),
        "--mac-addr".into(),
        p.mac.to_string(),
        "--mtu".into(),
        p.mtu.to_string(),
    ];
    if let Some(net) = p.addr {
        a.extend([
            "--address".into(),
            net.addr.to_string(),
            "--netmask".into(),
            net.prefix.to_string(),
            "--gateway".into(),
            p.gateway.unwrap_or_else(|| router(net)).to_string(),
        ]);
    }
    if let Some(addr6) = p.addr6 {
        a.extend(["--address".into(), addr6.to_string()]);
    }
    if !p.map_gateway {
        a.push("--no-map-gw".into());
    }
    if !p.dhcp {
        a.extend(["--no-dhcp", "--no-dhcpv6", "--no-ra"].map(String::from));
    }
    // Bound to the NIC's own address, so that each NIC's passt forwards its own ports.
    let bound = |list: &str| match (p.addr, p.addr6) {
        (Some(net), _) => format!("{}/{list}", net.addr),
        (None, Some(addr6)) => format!("{addr6}/{list}"),
        (None, None) => list.to_string(),
    };
    let spec = match p.ports {
        UserPorts::None => None,
        UserPorts::All => Some("all".to_string()),
        UserPorts::List(list) => Some(bound(list)),
    };
    if let Some(spec) = spec {
        a.extend([
            "--tcp-ports".into(),
            spec.clone(),
            "--udp-ports".into(),
            spec,
        ]);
    }
    a.into_iter().map(OsString::from).collect()
}

/// The default ports passt can bind here: ports below `net.ipv4.ip_unprivileged_port_start`
/// (`unprivileged_start`; Docker sets 0, a plain namespace and Kubernetes keep 1024) need
/// CAP_NET_BIND_SERVICE. The default is narrowed to what can be bound, with a warning; a
/// list the user gave is passt's to refuse.
pub fn bindable(
    ports: &UserPorts,
    unprivileged_start: u32,
    bind_service: bool,
) -> (UserPorts, Option<String>) {
    let default = UserPorts::List(USER_PORTS_DEFAULT.into());
    if *ports != default || bind_service || unprivileged_start <= 1 {
        return (ports.clone(), None);
    }
    let fix = "set the sysctl net.ipv4.ip_unprivileged_port_start=0 (Docker does; Kubernetes: securityContext.sysctls), add CAP_NET_BIND_SERVICE, or set USER_PORTS";
    if unprivileged_start > 1023 {
        let warning = format!(
            "USER_PORTS: no port is forwarded to the guest: the default ports {USER_PORTS_DEFAULT} are below net.ipv4.ip_unprivileged_port_start={unprivileged_start} and vminit lacks CAP_NET_BIND_SERVICE; {fix}"
        );
        return (UserPorts::None, Some(warning));
    }
    let warning = format!(
        "USER_PORTS: ports below {unprivileged_start} are not forwarded (net.ipv4.ip_unprivileged_port_start={unprivileged_start}, no CAP_NET_BIND_SERVICE); {fix}"
    );
    (
        UserPorts::List(format!("{unprivileged_start}-1023")),
        Some(warning),
    )
}

/// The router a guest NIC is given where the container NIC holds no default route: passt
/// relays through the container's routing table whichever guest NIC a packet leaves by, but
/// it serves a NIC only with a router. The network's first address, or its second where the
/// first is the guest's own; on a /31 or /32, the other or the same address.
pub fn router(net: Ipv4Net) -> Ipv4Addr {
    if net.prefix >= 31 {
        return Ipv4Addr::from(u32::from(net.addr) ^ 1);
    }
    let first = u32::from(net.network()) + 1;
    Ipv4Addr::from(if first == u32::from(net.addr) {
        first + 1
    } else {
        first
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic<'a>(ports: &'a UserPorts) -> PasstNic<'a> {
        PasstNic {
            passt: Path::new("/usr/bin/passt"),
            socket: Path::new("/run/vminit/passt0.sock"),
            lower: "eth0",
            addr: Some("172.19.0.2/24".parse().unwrap()),
            gateway: Some("172.19.0.1".parse().unwrap()),
            addr6: None,
            mtu: 1500,
            mac: Mac([2, 0, 0, 0, 0, 1]),
            ports,
            dhcp: true,
            map_gateway: false,
            runas: (0, 0),
        }
    }

    fn words(a: &[OsString]) -> String {
        a.iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn passt_gives_the_guest_the_nics_address_router_and_mtu_and_forwards_its_ports_there() {
        let ports = UserPorts::List("1-1023".into());
        let a = words(&argv(&nic(&ports)));
        assert_eq!(
            a,
            "/usr/bin/passt --foreground --quiet --runas 0:0 \
             --socket /run/vminit/passt0.sock --interface eth0 --mac-addr 02:00:00:00:00:01 \
             --mtu 1500 --address 172.19.0.2 --netmask 24 --gateway 172.19.0.1 --no-map-gw \
             --tcp-ports 172.19.0.2/1-1023 --udp-ports 172.19.0.2/1-1023"
        );
    }

    #[test]
    fn no_ports_no_dhcp_and_the_gateway_mapping_for_a_loopback_resolver_are_said() {
        let ports = UserPorts::None;
        let mut p = nic(&ports);
        p.dhcp = false;
        p.map_gateway = true;
        let a = words(&argv(&p));
        assert!(
            !a.contains("--tcp-ports") && !a.contains("--no-map-gw"),
            "{a}"
        );
        assert!(a.contains("--no-dhcp --no-dhcpv6 --no-ra"), "{a}");
        let all = UserPorts::All;
        let a = words(&argv(&nic(&all)));
        assert!(a.ends_with("--tcp-ports all --udp-ports all"), "{a}");
    }

    #[test]
    fn the_default_ports_shrink_to_what_an_unprivileged_passt_may_bind() {
        let default = UserPorts::List("1-1023".into());
        assert_eq!(bindable(&default, 0, false), (default.clone(), None));
        assert_eq!(bindable(&default, 1024, true), (default.clone(), None));
        let (ports, warning) = bindable(&default, 1024, false);
        assert_eq!(ports, UserPorts::None);
        assert!(warning.unwrap().contains("ip_unprivileged_port_start=0"));
        let (ports, _) = bindable(&default, 80, false);
        assert_eq!(ports, UserPorts::List("80-1023".into()));
        let mine = UserPorts::List("22".into());
        assert_eq!(bindable(&mine, 1024, false), (mine.clone(), None));
    }

    #[test]
    fn a_nic_without_the_default_route_gets_a_router_on_its_own_network() {
        let r = |net: &str| router(net.parse().unwrap()).to_string();
        assert_eq!(r("10.2.0.5/24"), "10.2.0.1");
        assert_eq!(r("10.2.0.1/24"), "10.2.0.2");
        assert_eq!(r("10.2.0.4/31"), "10.2.0.5");
        assert_eq!(r("10.244.1.7/32"), "10.244.1.6");
        let ports = UserPorts::None;
        let mut p = nic(&ports);
        p.gateway = None;
        assert!(words(&argv(&p)).contains("--gateway 172.19.0.1"));
    }
}
