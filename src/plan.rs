//! Decides, without touching anything, what happens to each attached NIC (pure).
//!
//! A plan is data: the guest's view of every NIC (`NicPlan`) and the ordered list of
//! changes to the namespace (`Step`) that give the guest the container's identity. The
//! steps for one NIC follow the README's "What happens to one NIC".

use std::net::Ipv4Addr;

use crate::config::Attach;
use crate::error::{Error, NetworkError, Result};
use crate::identity::{self, Identity};
use crate::netstate::{Link, NetState, natural_cmp};
use crate::step::{MacLinkKind, Step};
use crate::types::{Ipv4Net, Mac, Route, on_link_first};

/// The guest's side of one container NIC.
#[derive(Clone, Debug, PartialEq)]
pub struct NicPlan {
    /// The container NIC whose identity the guest takes (`eth0`).
    pub lower: String,
    /// The macvtap that carries the guest's traffic (`vmtap0`).
    pub tap: String,
    /// The container's bridge-mode macvlan to reach the guest (`vmlink0`).
    pub door: String,
    /// The guest's MAC: the container NIC's original one.
    pub mac: Mac,
    pub mtu: u32,
    /// The guest's address: the container NIC's original one.
    pub addr: Ipv4Net,
    /// The router, only on the NIC that holds the container's default route.
    pub gateway: Option<Ipv4Addr>,
    /// Classless static routes for the guest (DHCP option 121); on-link when no gateway.
    pub guest_routes: Vec<Route>,
    /// The container's own (link-local) address on `door`; also the guest's DHCP/DNS server.
    pub door_addr: Ipv4Addr,
}

/// What vminit will do to the namespace and hand to the guest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub nics: Vec<NicPlan>,
    pub steps: Vec<Step>,
}

/// The inputs of `plan` that come from outside the namespace.
pub struct PlanInput<'a> {
    pub attach: &'a Attach,
    pub selected_network: Option<Ipv4Net>,
    pub state: &'a NetState,
    /// Random bytes for the container NICs' new MACs, one per NIC (extra ones unused).
    pub random_macs: &'a [[u8; 6]],
}

/// One container NIC chosen for the guest, with what it holds now.
struct Candidate<'a> {
    link: &'a Link,
    mac: Mac,
    /// The address the guest gets.
    addr: Ipv4Net,
    /// Every IPv4 address of the NIC, the guest's included, primary first.
    addrs: Vec<Ipv4Net>,
    /// The NIC's routes (not the kernel's subnet routes), on-link ones first.
    routes: Vec<Route>,
}

/// Plans the takeover of every attached NIC.
pub fn plan(input: &PlanInput) -> Result<Plan> {
    let state = input.state;
    let names = attached_names(input.attach, state)?;
    let candidates = candidates(&names, input)?;
    let router_nic = router_nic(&candidates);
    let mut taken = state.addresses_in_use();
    let mut plan = Plan::default();
    for (i, nic) in candidates.iter().enumerate() {
        let door_addr = door_address(nic.addr.addr, &taken);
        taken.push(door_addr);
        let new_mac = Mac::local_from(input.random_macs.get(i).copied().unwrap_or([i as u8; 6]));
        let gateway = (Some(nic.link.index) == router_nic)
            .then(|| default_gateway(&nic.routes))
            .flatten();
        let guest = NicPlan {
            lower: nic.link.name.clone(),
            tap: format!("vmtap{i}"),
            door: format!("vmlink{i}"),
            mac: nic.mac,
            mtu: nic.link.mtu,
            addr: nic.addr,
            gateway,
            guest_routes: guest_routes(nic.addr, door_addr, &nic.routes, gateway),
            door_addr,
        };
        plan.steps.extend(takeover(nic, &guest, new_mac, state));
        plan.nics.push(guest);
    }
    Ok(plan)
}

/// The NICs to attach, in guest order, or why that is impossible.
pub fn attached_names(attach: &Attach, state: &NetState) -> Result<Vec<String>> {
    let names = match attach {
        Attach::All => {
            let mut names: Vec<String> = state
                .links
                .iter()
                .filter(|l| !is_infrastructure(l) && !is_door_name(&l.name))
                .map(|l| l.name.clone())
                .collect();
            names.sort_by(|a, b| natural_cmp(a, b));
            names
        }
        Attach::Only(names) => {
            for name in names {
                let Some(link) = state.link(name) else {
                    return Err(Error::Network(NetworkError::NoSuchInterface(name.clone())));
                };
                if is_infrastructure(link) {
                    return Err(Error::Network(NetworkError::NotAttachable(name.clone())));
                }
            }
            names.clone()
        }
    };
    if names.is_empty() {
        return Err(Error::Network(NetworkError::NoInterfaces));
    }
    Ok(names)
}

/// Kinds that are never a container's NIC: loopback, bridges, kernel fallback tunnels and
/// vminit's own links.
pub fn is_infrastructure(link: &Link) -> bool {
    const SKIP: &[&str] = &[
        "bridge",
        "openvswitch",
        "macvtap",
        "ipip",
        "gre",
        "gretap",
        "erspan",
        "ip6gre",
        "ip6gretap",
        "ip6erspan",
        "sit",
        "ip6tnl",
        "vti",
        "vti6",
        "ip_vti",
        "ip6_vti",
        "dummy",
    ];
    link.name == "lo"
        || !link.ethernet
        || link.kind.as_deref().is_some_and(|k| SKIP.contains(&k))
        || identity::is_ours(link)
}

/// `vmlinkN`: the name vminit gives its doors (an unmarked one is never a user's NIC).
fn is_door_name(name: &str) -> bool {
    name.strip_prefix("vmlink")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Each attached NIC with the address its guest gets: the one inside `SELECTED_NETWORK`,
/// else its first.
fn candidates<'a>(names: &[String], input: &'a PlanInput) -> Result<Vec<Candidate<'a>>> {
    let state = input.state;
    let mut out = Vec::new();
    for name in names {
        let link = state
            .link(name)
            .expect("attached_names checked the link exists");
        let addrs = state.addrs_of(link.index);
        let Some(first) = addrs.first().copied() else {
            return Err(Error::Network(NetworkError::NoIpv4(name.clone())));
        };
        let mac = link
            .mac
            .ok_or_else(|| Error::Network(NetworkError::NoMac(name.clone())))?;
        let selected = input
            .selected_network
            .and_then(|net| addrs.iter().copied().find(|a| net.contains(a.addr)));
        out.push(Candidate {
            link,
            mac,
            addr: selected.unwrap_or(first),
            addrs,
            routes: on_link_first(state.routes_of(link.index)),
        });
    }
    if let Some(net) = input.selected_network
        && !out
            .iter()
            .any(|c| c.addrs.iter().any(|a| net.contains(a.addr)))
    {
        return Err(Error::config(
            "SELECTED_NETWORK",
            format!(
                "{net} matches no IPv4 address of {}; use the network of the address the VM should get",
                names.join(", ")
            ),
        ));
    }
    Ok(out)
}

/// The NIC that holds the container's default route (lowest metric): the only one that
/// gives the guest a router.
fn router_nic(candidates: &[Candidate]) -> Option<u32> {
    candidates
        .iter()
        .filter_map(|c| {
            c.routes
                .iter()
                .filter(|r| r.is_default() && r.gateway.is_some())
                .map(|r| (r.metric.unwrap_or(0), c.link.index))
                .min()
        })
        .min()
        .map(|(_, index)| index)
}

/// The gateway of a NIC's best default route.
fn default_gateway(routes: &[Route]) -> Option<Ipv4Addr> {
    routes
        .iter()
        .filter(|r| r.is_default())
        .min_by_key(|r| r.metric.unwrap_or(0))
        .and_then(|r| r.gateway)
}

/// The changes that hand one NIC to the guest, in order.
fn takeover(nic: &Candidate, guest: &NicPlan, new_mac: Mac, state: &NetState) -> Vec<Step> {
    let mut steps = Vec::new();
    steps.extend(release_address(nic, state));
    steps.push(Step::SetMac {
        dev: guest.lower.clone(),
        mac: new_mac,
        old: nic.mac,
    });
    steps.extend(create_guest_nic(nic, guest));
    steps.extend(open_door(nic, guest));
    steps
}

/// Takes the guest's address off the container NIC, and with it the NIC's routes (the
/// kernel drops them when the NIC loses its address; the door gets them back).
fn release_address(nic: &Candidate, state: &NetState) -> Vec<Step> {
    let dev = &nic.link.name;
    let mut steps: Vec<Step> = nic
        .routes
        .iter()
        .rev()
        .map(|route| Step::DelRoute {
            dev: dev.clone(),
            route: route.clone(),
        })
        .collect();
    steps.push(Step::DelAddr {
        dev: dev.clone(),
        addr: nic.addr,
        broadcast: state.has_broadcast(nic.link.index, nic.addr),
    });
    steps
}

/// The macvtap that becomes the guest's NIC, with the container NIC's MAC and MTU, and the
/// identity record in its alias.
fn create_guest_nic(nic: &Candidate, guest: &NicPlan) -> [Step; 2] {
    let identity = Identity {
        lower: guest.lower.clone(),
        mac: nic.mac,
        addr: nic.addr,
        routes: nic.routes.clone(),
    };
    [
        Step::AddLink {
            kind: MacLinkKind::Macvtap,
            name: guest.tap.clone(),
            lower: guest.lower.clone(),
            mac: Some(nic.mac),
            mtu: guest.mtu,
        },
        Step::SetAlias {
            dev: guest.tap.clone(),
            alias: identity.encode(),
        },
    ]
}

/// The container's door to the guest: a bridge-mode macvlan on the same NIC (a macvtap
/// cannot talk to its own lower device), with the link-local door address, a route to the
/// guest, and the NIC's routes, whose source is the address the container kept (Kubernetes
/// can give a NIC two), else the door address.
fn open_door(nic: &Candidate, guest: &NicPlan) -> Vec<Step> {
    let door = &guest.door;
    let kept = nic.addrs.iter().find(|a| **a != nic.addr).map(|a| a.addr);
    let mut steps = vec![
        Step::AddLink {
            kind: MacLinkKind::Macvlan,
            name: door.clone(),
            lower: guest.lower.clone(),
            mac: None,
            mtu: guest.mtu,
        },
        Step::SetAlias {
            dev: door.clone(),
            alias: identity::door_alias(&guest.lower),
        },
        Step::TxChecksumOff { dev: door.clone() },
        Step::AddAddr {
            dev: door.clone(),
            addr: Ipv4Net::new(guest.door_addr, 32),
            broadcast: false,
        },
        Step::AddRoute {
            dev: door.clone(),
            route: Route::host(guest.addr.addr),
            src: Some(guest.door_addr),
            onlink: false,
        },
    ];
    for route in &nic.routes {
        steps.push(Step::AddRoute {
            dev: door.clone(),
            route: route.clone(),
            src: Some(kept.unwrap_or(guest.door_addr)),
            onlink: route.gateway.is_some(),
        });
    }
    steps
}

/// The guest's classless static routes: its way to the container (the door), the
/// container NIC's own routes, and the default route on the default-route NIC only.
fn guest_routes(
    addr: Ipv4Net,
    door: Ipv4Addr,
    moved: &[Route],
    gateway: Option<Ipv4Addr>,
) -> Vec<Route> {
    let mut routes = vec![Route::host(door)];
    for r in moved.iter().filter(|r| !r.is_default()) {
        routes.push(Route {
            metric: None,
            ..r.clone()
        });
    }
    if let Some(gw) = gateway {
        // A gateway outside the guest's subnet (a /32 pod) needs an on-link route.
        let covered = addr.contains(gw)
            || routes
                .iter()
                .any(|r| r.gateway.is_none() && r.dst.contains(gw));
        if !covered {
            routes.push(Route::host(gw));
        }
        routes.push(Route {
            dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0),
            gateway: Some(gw),
            metric: None,
        });
    }
    routes
}

/// The container's link-local address for talking to the guest behind `vm_ip`.
///
/// It is derived from the guest's address (its low 16 bits), so that vminit
/// containers on one network do not pick the same one and a restart picks the same
/// one again, and it skips the reserved first and last /24 of 169.254/16, the
/// well-known 169.254.1.1 (Calico's gateway) and 169.254.169.254 (cloud metadata),
/// and anything in `taken`.
pub fn door_address(vm_ip: Ipv4Addr, taken: &[Ipv4Addr]) -> Ipv4Addr {
    const USABLE: u32 = 254 * 256; // 169.254.1.0 ..= 169.254.254.255
    let mut n = (u32::from(vm_ip) & 0xffff) % USABLE;
    loop {
        let candidate = Ipv4Addr::from(0xa9fe_0100 + n);
        let reserved = candidate == Ipv4Addr::new(169, 254, 1, 1)
            || candidate == Ipv4Addr::new(169, 254, 169, 254)
            || candidate.octets()[3] == 0
            || candidate.octets()[3] == 255;
        if !reserved && !taken.contains(&candidate) {
            return candidate;
        }
        n = (n + 1) % USABLE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MAC0, Ns, docker_two_networks, ip, net, route};

    fn plan_for(state: &NetState, attach: Attach, selected: Option<&str>) -> Result<Plan> {
        plan(&PlanInput {
            attach: &attach,
            selected_network: selected.map(net),
            state,
            random_macs: &[[0xaa; 6], [0xbb; 6]],
        })
    }

    #[test]
    fn one_docker_nic_becomes_a_guest_nic_with_its_mac_ip_and_router() {
        let state = Ns::new()
            .nic(
                7,
                "eth0",
                MAC0,
                &["172.19.0.2/24"],
                &[route("0.0.0.0/0", Some("172.19.0.1"))],
            )
            .0;
        let p = plan_for(&state, Attach::All, None).unwrap();
        assert_eq!(p.nics.len(), 1);
        let nic = &p.nics[0];
        assert_eq!(
            (nic.lower.as_str(), nic.tap.as_str(), nic.door.as_str()),
            ("eth0", "vmtap0", "vmlink0")
        );
        assert_eq!(
            (nic.mac, nic.addr, nic.mtu),
            (MAC0, net("172.19.0.2/24"), 1450)
        );
        assert_eq!(nic.gateway, Some(ip("172.19.0.1")));
        let door = nic.door_addr;
        assert!(net("169.254.0.0/16").contains(door));
        assert_eq!(
            nic.guest_routes,
            vec![
                route(&format!("{door}/32"), None),
                route("0.0.0.0/0", Some("172.19.0.1"))
            ]
        );
        let cmds: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            cmds,
            vec![
                "ip route del default via 172.19.0.1 dev eth0".to_string(),
                "ip addr del 172.19.0.2/24 dev eth0".into(),
                "ip link set eth0 address aa:aa:aa:aa:aa:aa".into(),
                "ip link add link eth0 name vmtap0 address 02:42:ac:13:00:02 mtu 1450 up type macvtap mode bridge".into(),
                "ip link set vmtap0 alias 'vminit:nic eth0 02:42:ac:13:00:02 172.19.0.2/24 0.0.0.0/0>172.19.0.1'".into(),
                "ip link add link eth0 name vmlink0 mtu 1450 up type macvlan mode bridge".into(),
                "ip link set vmlink0 alias 'vminit:door eth0'".into(),
                "ethtool -K vmlink0 tx off".into(),
                format!("ip addr add {door}/32 dev vmlink0"),
                format!("ip route add 172.19.0.2/32 dev vmlink0 src {door}"),
                format!("ip route add default via 172.19.0.1 dev vmlink0 onlink src {door}"),
            ]
        );
    }

    #[test]
    fn the_new_container_mac_is_set_before_the_macvtap_takes_the_old_one() {
        let p = plan_for(&docker_two_networks(), Attach::All, None).unwrap();
        let set_mac = p
            .steps
            .iter()
            .position(|s| matches!(s, Step::SetMac { dev, .. } if dev == "eth0"))
            .unwrap();
        let add_tap = p
            .steps
            .iter()
            .position(|s| matches!(s, Step::AddLink { name, .. } if name == "vmtap0"))
            .unwrap();
        assert!(set_mac < add_tap);
        let Step::SetMac { mac, .. } = &p.steps[set_mac] else {
            unreachable!()
        };
        assert_eq!(mac.0[0] & 0x03, 0x02, "unicast, locally administered");
    }

    #[test]
    fn two_nics_are_ordered_by_name_and_only_the_default_route_nic_gets_a_router() {
        let p = plan_for(&docker_two_networks(), Attach::All, None).unwrap();
        let names: Vec<&str> = p.nics.iter().map(|n| n.lower.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(p.nics[0].gateway, Some(ip("172.19.0.1")));
        assert_eq!(p.nics[1].gateway, None);
        assert!(p.nics[1].guest_routes.iter().all(|r| !r.is_default()));
        assert_ne!(p.nics[0].door_addr, p.nics[1].door_addr);
        assert_eq!(p.nics[1].addr, net("172.20.0.5/16"));
    }

    #[test]
    fn attach_ifaces_picks_a_subset_in_the_given_order() {
        let p = plan_for(
            &docker_two_networks(),
            Attach::Only(vec!["eth1".into()]),
            None,
        )
        .unwrap();
        assert_eq!(p.nics.len(), 1);
        assert_eq!(p.nics[0].lower, "eth1");
        assert_eq!(p.nics[0].tap, "vmtap0");
        assert!(p.steps.iter().all(|s| !s.to_string().contains("eth0")));
    }

    #[test]
    fn an_unknown_interface_is_named_in_the_error() {
        let e = plan_for(
            &docker_two_networks(),
            Attach::Only(vec!["eth7".into()]),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Network(NetworkError::NoSuchInterface(ref n)) if n == "eth7"),
            "{e}"
        );
    }

    #[test]
    fn a_nic_without_ipv4_is_an_error_naming_it() {
        let state = Ns::new().nic(3, "eth0", MAC0, &[], &[]).0;
        let e = plan_for(&state, Attach::All, None).unwrap_err();
        assert!(
            matches!(e, Error::Network(NetworkError::NoIpv4(ref n)) if n == "eth0"),
            "{e}"
        );
    }

    #[test]
    fn selected_network_picks_the_address_per_nic_and_the_container_keeps_the_other() {
        let state = Ns::new()
            .nic(
                3,
                "eth0",
                MAC0,
                &["192.168.5.4/24", "10.1.2.3/16"],
                &[route("0.0.0.0/0", Some("10.1.0.1"))],
            )
            .0;
        let p = plan_for(&state, Attach::All, Some("10.1.0.0/16")).unwrap();
        assert_eq!(p.nics[0].addr, net("10.1.2.3/16"));
        assert!(p.steps.contains(&Step::DelAddr {
            dev: "eth0".into(),
            addr: net("10.1.2.3/16"),
            broadcast: false,
        }));
        assert!(
            !p.steps
                .iter()
                .any(|s| matches!(s, Step::DelAddr { addr, .. } if *addr == net("192.168.5.4/24")))
        );
        // The container's own traffic leaves from the address it kept.
        assert!(p.steps.contains(&Step::AddRoute {
            dev: "vmlink0".into(),
            route: route("0.0.0.0/0", Some("10.1.0.1")),
            src: Some(ip("192.168.5.4")),
            onlink: true,
        }));
        // Without SELECTED_NETWORK the first address goes to the VM.
        let p = plan_for(&state, Attach::All, None).unwrap();
        assert_eq!(p.nics[0].addr, net("192.168.5.4/24"));
    }

    #[test]
    fn selected_network_matching_nothing_is_an_error() {
        let e = plan_for(&docker_two_networks(), Attach::All, Some("10.9.0.0/16")).unwrap_err();
        assert!(
            matches!(e, Error::Config { ref var, .. } if var == "SELECTED_NETWORK"),
            "{e}"
        );
    }

    #[test]
    fn a_slash_32_pod_gives_the_guest_an_on_link_route_to_its_gateway() {
        let state = Ns::new()
            .nic(
                3,
                "eth0",
                MAC0,
                &["10.244.1.7/32"],
                &[
                    route("169.254.1.1/32", None),
                    route("0.0.0.0/0", Some("169.254.1.1")),
                ],
            )
            .0;
        let p = plan_for(&state, Attach::All, None).unwrap();
        let nic = &p.nics[0];
        assert_eq!(nic.addr, net("10.244.1.7/32"));
        assert_eq!(nic.gateway, Some(ip("169.254.1.1")));
        assert_eq!(
            nic.guest_routes,
            vec![
                route(&format!("{}/32", nic.door_addr), None),
                route("169.254.1.1/32", None),
                route("0.0.0.0/0", Some("169.254.1.1")),
            ]
        );
        assert_ne!(nic.door_addr, ip("169.254.1.1"));
    }

    #[test]
    fn an_off_subnet_gateway_without_a_route_gets_one() {
        let routes = guest_routes(
            net("10.0.0.5/32"),
            ip("169.254.9.9"),
            &[],
            Some(ip("10.0.0.1")),
        );
        assert!(routes.contains(&route("10.0.0.1/32", None)));
    }

    #[test]
    fn door_addresses_avoid_reserved_and_taken_ones() {
        assert_eq!(door_address(ip("172.19.0.2"), &[]), ip("169.254.1.2"));
        assert_eq!(
            door_address(ip("10.0.0.1"), &[]),
            ip("169.254.1.2"),
            "skips 169.254.1.1"
        );
        assert_eq!(
            door_address(ip("172.19.0.2"), &[ip("169.254.1.2")]),
            ip("169.254.1.3")
        );
        assert_eq!(
            door_address(ip("10.0.0.255"), &[]),
            ip("169.254.2.1"),
            "skips .255 and .0"
        );
        let a = door_address(ip("172.19.0.2"), &[]);
        assert_eq!(a, door_address(ip("172.19.0.2"), &[]), "deterministic");
    }

    #[test]
    fn every_change_is_undone_by_its_inverse() {
        let p = plan_for(&docker_two_networks(), Attach::All, None).unwrap();
        for step in &p.steps {
            match (step, step.inverse()) {
                (Step::SetAlias { .. } | Step::TxChecksumOff { .. }, undo) => {
                    assert!(undo.is_none())
                }
                (Step::AddRoute { dev, route, .. }, Some(undo)) => {
                    assert_eq!(
                        undo,
                        Step::DelRoute {
                            dev: dev.clone(),
                            route: route.clone()
                        }
                    )
                }
                (Step::AddLink { name, .. }, Some(undo)) => {
                    assert_eq!(undo, Step::DelLink { name: name.clone() })
                }
                (step, Some(undo)) => assert_eq!(undo.inverse().as_ref(), Some(step)),
                (step, None) => panic!("{step} has no inverse"),
            }
        }
    }

    fn link(name: &str, kind: Option<&str>, ethernet: bool) -> Link {
        Link {
            index: 1,
            name: name.into(),
            mac: None,
            mtu: 1500,
            kind: kind.map(str::to_string),
            alias: None,
            ethernet,
        }
    }

    #[test]
    fn loopback_bridges_and_fallback_tunnels_are_not_nics() {
        assert!(is_infrastructure(&link("lo", None, false)));
        assert!(is_infrastructure(&link("tunl0", Some("ipip"), false)));
        assert!(is_infrastructure(&link("gretap0", Some("gretap"), true)));
        assert!(is_infrastructure(&link("br0", Some("bridge"), true)));
        assert!(!is_infrastructure(&link("eth0", Some("veth"), true)));
        assert!(!is_infrastructure(&link("eth1", Some("macvlan"), true)));
        assert!(!is_infrastructure(&link("ens3", None, true)));
    }
}
