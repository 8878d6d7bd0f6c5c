//! The IPv6 half of the plan (pure): which IPv6 address each NIC's guest gets, the changes
//! that hand it over (next to the IPv4 ones in `plan`), and what the guest must be told.
//!
//! Per NIC: the guest gets one global (or unique local) address, chosen as for IPv4 (the one
//! inside `SELECTED_NETWORK`'s IPv6 network, else the first). The container's copy goes before
//! the guest starts, and so does the container's link-local address derived from the guest's
//! MAC (the guest derives the same one: duplicate address detection would fail it). The NIC's
//! configured IPv6 routes move to the door, as its IPv4 routes do. What the guest is then told
//! (router advertisements from the real gateways, DHCPv6) is `announce`'s business; this module
//! only says which gateways hold which routes.

use std::net::Ipv6Addr;

use crate::error::{Error, Result};
use crate::net::netstate::{IfAddr6, KernelRoute6, Link, Neigh6, NetState, RT_TABLE_MAIN};
use crate::net::step::Step;
use crate::net::types::{Ipv6Net, Mac, Route6, is_link_local6};

/// What one container NIC holds in IPv6, and what of it goes to the guest.
#[derive(Clone, Debug, PartialEq)]
pub struct Nic6 {
    /// Every IPv6 address, in the kernel's order (global first, newest first in a scope).
    pub addrs: Vec<IfAddr6>,
    /// The configured IPv6 routes in every table.
    pub routes: Vec<KernelRoute6>,
    /// Permanent IPv6 neighbours (a MAC change flushes them).
    pub neighbours: Vec<Neigh6>,
    /// The address the guest gets, if the NIC has one to give.
    pub guest: Option<IfAddr6>,
    /// The container's link-local address derived from the guest's MAC, if it has one.
    pub link_local: Option<IfAddr6>,
    /// Whether the door gets IPv6, and so the NIC's IPv6 routes (see
    /// `NetState::ipv6_on_new_links`). Without, they stay on the NIC.
    pub door_ipv6: bool,
}

impl Nic6 {
    /// What `link` (whose MAC the guest takes) holds, and the address its guest gets.
    pub fn of(state: &NetState, link: &Link, mac: Mac, selected: Option<Ipv6Net>) -> Nic6 {
        let reported: Vec<_> = state
            .addrs6
            .iter()
            .filter(|a| a.index == link.index)
            .collect();
        let handable: Vec<&IfAddr6> = reported
            .iter()
            .filter(|a| IfAddr6::is_handable(a.reported_flags, a.addr.scope))
            .map(|a| &a.addr)
            .collect();
        let guest = selected
            .and_then(|net| handable.iter().find(|a| net.contains(a.net.addr)))
            .or(handable.first())
            .map(|a| (*a).clone());
        let eui64 = mac.link_local();
        Nic6 {
            addrs: reported.iter().map(|a| a.addr.clone()).collect(),
            routes: state.routes6_of(link.index),
            neighbours: state.neighbours6_of(link.index),
            guest,
            link_local: reported
                .iter()
                .find(|a| a.addr.net.addr == eui64)
                .map(|a| a.addr.clone()),
            door_ipv6: state.ipv6_on_new_links,
        }
    }

    /// The NIC's IPv6 routes in the main table: what the guest can be told.
    pub fn main_routes(&self) -> impl Iterator<Item = &Route6> {
        self.routes
            .iter()
            .filter(|r| r.table == RT_TABLE_MAIN)
            .map(|r| &r.route)
    }

    /// The metric of the NIC's best IPv6 default route through a gateway.
    pub fn default_metric(&self) -> Option<u32> {
        self.main_routes()
            .filter(|r| r.is_default() && r.gateway.is_some())
            .map(|r| r.metric.unwrap_or(1024))
            .min()
    }
}

/// `SELECTED_NETWORK`'s IPv6 network must match an IPv6 address of some attached NIC.
pub fn check_selected(selected: Option<Ipv6Net>, nics: &[(&str, &Nic6)]) -> Result<()> {
    let Some(net) = selected else {
        return Ok(());
    };
    let matched = nics.iter().any(|(_, nic)| {
        nic.addrs
            .iter()
            .any(|a| a.scope == 0 && net.contains(a.net.addr))
    });
    if matched {
        return Ok(());
    }
    let names: Vec<&str> = nics.iter().map(|(name, _)| *name).collect();
    Err(Error::config(
        "SELECTED_NETWORK",
        format!(
            "{net} matches no IPv6 address of {}; use the network of the address the VM should get",
            names.join(", ")
        ),
    ))
}

/// Takes the guest's IPv6 address and the container's copy of the guest's link-local address
/// off the NIC, with its configured IPv6 routes and permanent neighbours (the MAC change would
/// flush those). The kernel puts a new address first among those of its scope: the addresses
/// before a removed one are taken off too and put back, last first, so that the order the
/// container keeps is the original one, and undoing it restores that order too.
pub fn release6(dev: &str, nic: &Nic6) -> Vec<Step> {
    let moved: &[KernelRoute6] = if nic.door_ipv6 { &nic.routes } else { &[] };
    let mut steps: Vec<Step> = moved
        .iter()
        .rev()
        .map(|route| Step::del_route(dev.to_string(), route.clone()))
        .collect();
    for neigh in &nic.neighbours {
        steps.push(Step::del_neigh(dev.to_string(), *neigh));
    }
    let removed = |a: &IfAddr6| Some(a) == nic.guest.as_ref() || Some(a) == nic.link_local.as_ref();
    let mut start = 0;
    while start < nic.addrs.len() {
        let scope = nic.addrs[start].scope;
        let end = start
            + nic.addrs[start..]
                .iter()
                .take_while(|a| a.scope == scope)
                .count();
        let group = &nic.addrs[start..end];
        if let Some(last) = group.iter().rposition(removed) {
            for addr in &group[..=last] {
                steps.push(Step::del_addr(dev.to_string(), addr.clone()));
            }
            for addr in group[..last].iter().rev().filter(|a| !removed(a)) {
                steps.push(Step::add_addr(dev.to_string(), addr.clone()));
            }
        }
        start = end;
    }
    steps
}

/// The container's IPv6 side of the door: a route to the guest's address (on `to_guest`,
/// the door or, with the tap datapath, the tap), the prefix the guest's address routed
/// (on the door, unless the container keeps an address in it, or routes it itself), so that
/// the network's gateway stays on-link for the container (Docker routes the container
/// through it when another network's NIC leaves, as for IPv4), and the NIC's configured
/// IPv6 routes (a gateway the door has no prefix for is `onlink`). A route's source stays
/// only if the container keeps that address. Nothing when the door has no IPv6 (Docker): the
/// container then reaches the guest over IPv4 only.
pub fn open_door6(door: &str, to_guest: &str, nic: &Nic6) -> Vec<Step> {
    let mut steps = Vec::new();
    if !nic.door_ipv6 {
        return steps;
    }
    if let Some(guest) = &nic.guest {
        steps.push(Step::add_route(
            to_guest.to_string(),
            KernelRoute6::main(Route6::host(guest.net.addr)),
        ));
        let prefix = Ipv6Net::new(guest.net.network(), guest.net.prefix);
        let kept = nic
            .addrs
            .iter()
            .any(|a| a.net != guest.net && !a.net.is_link_local() && prefix.contains(a.net.addr));
        let routed = nic.routes.iter().any(|r| r.route.dst == prefix);
        if guest.net.prefix < 128 && !kept && !routed {
            steps.push(Step::add_route(
                door.to_string(),
                KernelRoute6::main(Route6 {
                    dst: prefix,
                    gateway: None,
                    metric: None,
                }),
            ));
        }
    }
    for route in &nic.routes {
        let mut moved = route.clone();
        moved.onlink = route.onlink || route.route.gateway.is_some_and(|g| !is_link_local6(g));
        if moved
            .src
            .is_some_and(|src| nic.guest.as_ref().is_some_and(|g| g.net.addr == src))
        {
            moved.src = None;
        }
        steps.push(Step::add_route(door.to_string(), moved));
    }
    steps
}

/// The guest's IPv6 side of one NIC: what vminit announces to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Guest6 {
    /// The container NIC (`eth0`).
    pub lower: String,
    /// The door the announcements leave from.
    pub door: String,
    /// The guest's MAC: the only destination of every announcement.
    pub mac: Mac,
    pub mtu: u32,
    /// The guest's address, with the container's prefix length.
    pub addr: Ipv6Net,
    /// Prefixes on the link: the address's own (not for a /128) and the NIC's on-link routes.
    pub onlink: Vec<Ipv6Net>,
    /// The NIC's gateways, each with the routes through it.
    pub gateways: Vec<GatewayRoutes>,
    /// Whether the door has IPv6 of its own (`Nic6::door_ipv6`): a link-local address the
    /// container can serve the guest on (the door resolver, `ipv6::announce`).
    pub door_ipv6: bool,
}

/// One gateway of a NIC and what the guest routes through it.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayRoutes {
    pub gateway: Ipv6Addr,
    /// It holds the guest's default route (only on the NIC with the container's IPv6 default
    /// route).
    pub default: bool,
    /// Other destinations through it (announced as route information options).
    pub routes: Vec<Ipv6Net>,
}

/// What the guest of `nic` is told, when it has an IPv6 address to get; `router` says
/// whether this NIC holds the container's IPv6 default route.
pub fn guest6(
    lower: &str,
    door: &str,
    mac: Mac,
    mtu: u32,
    nic: &Nic6,
    router: bool,
) -> Option<Guest6> {
    let addr = nic.guest.as_ref()?.net;
    let mut onlink = Vec::new();
    if addr.prefix < 128 {
        onlink.push(Ipv6Net::new(addr.network(), addr.prefix));
    }
    let mut gateways: Vec<GatewayRoutes> = Vec::new();
    let default_gateway = router
        .then(|| {
            nic.main_routes()
                .filter(|r| r.is_default())
                .filter_map(|r| r.gateway.map(|g| (r.metric.unwrap_or(1024), g)))
                .min()
                .map(|(_, g)| g)
        })
        .flatten();
    if let Some(gateway) = default_gateway {
        gateways.push(GatewayRoutes {
            gateway,
            default: true,
            routes: Vec::new(),
        });
    }
    for route in nic.main_routes().filter(|r| !r.is_default()) {
        let dst = Ipv6Net::new(route.dst.network(), route.dst.prefix);
        match route.gateway {
            None => {
                if !onlink.contains(&dst) && !dst.is_link_local() {
                    onlink.push(dst);
                }
            }
            Some(gateway) => match gateways.iter_mut().find(|g| g.gateway == gateway) {
                Some(g) => g.routes.push(dst),
                None => gateways.push(GatewayRoutes {
                    gateway,
                    default: false,
                    routes: vec![dst],
                }),
            },
        }
    }
    Some(Guest6 {
        lower: lower.to_string(),
        door: door.to_string(),
        mac,
        mtu,
        addr,
        onlink,
        gateways,
        door_ipv6: nic.door_ipv6,
    })
}

/// Where the container's IPv6 default route went when the guest NIC that gave the guest its
/// IPv6 default route left: Docker routes the container through another network's gateway,
/// on the link its route to that gateway takes (that NIC, or its door where the door holds
/// the NIC's IPv6 routes). `stay` holds each remaining guest NIC's container NIC and door.
/// Returns that NIC (`lower`), the gateway, and the link the route is on.
pub fn router6_moved_to(
    state: &NetState,
    stay: &[(&str, &str)],
) -> Option<(String, Ipv6Addr, String)> {
    let (_, index, gateway) = state
        .routes6
        .iter()
        .filter(|r| r.route.table == RT_TABLE_MAIN && r.route.route.dst.prefix == 0)
        .filter_map(|r| {
            let gateway = r.route.route.gateway?;
            Some((r.route.route.metric.unwrap_or(0), r.index, gateway))
        })
        .min()?;
    let link = state.links.iter().find(|l| l.index == index)?;
    stay.iter()
        .find(|(lower, door)| *door == link.name || *lower == link.name)
        .map(|(lower, _)| (lower.to_string(), gateway, link.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::netstate::{Addr6, IpIfAddr, IpRoute, Route6Entry};
    use crate::testing::{MAC0, Ns};

    fn net6(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    /// eth0 (index 3) with `addrs` (kernel order) and `routes`; new links get IPv6.
    fn nic_state(addrs: &[(&str, u32)], routes: &[(&str, Option<&str>)]) -> NetState {
        let mut state = Ns::new().nic(3, "eth0", MAC0, &["172.19.0.2/24"], &[]).0;
        state.ipv6_on_new_links = true;
        for (a, flags) in addrs {
            let mut addr = IfAddr6::plain(net6(a));
            addr.flags = IfAddr6::settable_flags(*flags);
            state.addrs6.push(Addr6 {
                index: 3,
                addr,
                reported_flags: *flags,
            });
        }
        for (dst, gw) in routes {
            state.routes6.push(Route6Entry {
                index: 3,
                route: KernelRoute6::main(Route6 {
                    dst: net6(dst),
                    gateway: gw.map(|g| g.parse().unwrap()),
                    metric: Some(1024),
                }),
            });
        }
        state
    }

    fn nic6(state: &NetState, selected: Option<&str>) -> Nic6 {
        let link = state.link("eth0").unwrap();
        Nic6::of(state, link, MAC0, selected.map(net6))
    }

    fn commands(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_docker_nic_gives_its_address_and_its_link_local_goes_with_its_default_route() {
        let state = nic_state(
            &[("fd00:1::2/64", 0x82), ("fe80::42:acff:fe13:2/64", 0x80)],
            &[("::/0", Some("fd00:1::1"))],
        );
        let nic = nic6(&state, None);
        assert_eq!(
            nic.guest.as_ref().map(|a| a.net),
            Some(net6("fd00:1::2/64"))
        );
        assert_eq!(
            nic.link_local.as_ref().map(|a| a.net),
            Some(net6("fe80::42:acff:fe13:2/64")),
            "MAC0's EUI-64 link-local"
        );
        assert_eq!(
            commands(&release6("eth0", &nic)),
            [
                "ip -6 route del default via fd00:1::1 metric 1024 dev eth0",
                "ip -6 addr del fd00:1::2/64 dev eth0",
                "ip -6 addr del fe80::42:acff:fe13:2/64 dev eth0",
            ]
        );
        assert_eq!(
            commands(&open_door6("vmlink0", "vmlink0", &nic)),
            [
                "ip -6 route add fd00:1::2/128 dev vmlink0",
                // The prefix stays on-link for the container: its gateway too.
                "ip -6 route add fd00:1::/64 dev vmlink0",
                "ip -6 route add default via fd00:1::1 metric 1024 dev vmlink0 onlink",
            ]
        );
        let g = guest6("eth0", "vmlink0", MAC0, 1500, &nic, true).unwrap();
        assert_eq!(g.addr, net6("fd00:1::2/64"));
        assert_eq!(g.onlink, [net6("fd00:1::/64")]);
        assert_eq!(
            g.gateways,
            [GatewayRoutes {
                gateway: "fd00:1::1".parse().unwrap(),
                default: true,
                routes: vec![]
            }]
        );
    }

    #[test]
    fn a_calico_pod_gives_its_slash_128_and_routes_through_the_link_local_gateway() {
        let state = nic_state(
            &[("fd00:10::7/128", 0x80), ("fe80::42:acff:fe13:2/64", 0x80)],
            &[("::/0", Some("fe80::ecee:eeff:feee:eeee"))],
        );
        let nic = nic6(&state, None);
        let g = guest6("eth0", "vmlink0", MAC0, 1500, &nic, true).unwrap();
        assert_eq!(g.addr, net6("fd00:10::7/128"));
        assert!(g.onlink.is_empty(), "nothing is on-link for a /128");
        assert_eq!(
            g.gateways[0].gateway,
            "fe80::ecee:eeff:feee:eeee".parse::<Ipv6Addr>().unwrap()
        );
        let door = commands(&open_door6("vmlink0", "vmlink0", &nic));
        assert_eq!(
            door[1],
            "ip -6 route add default via fe80::ecee:eeff:feee:eeee metric 1024 dev vmlink0",
            "a link-local gateway needs no onlink"
        );
    }

    #[test]
    fn only_the_default_route_nic_gives_a_default_gateway_and_other_routes_keep_theirs() {
        let state = nic_state(
            &[("fd00:2::5/64", 0x80)],
            &[
                ("::/0", Some("fd00:2::1")),
                ("fd00:99::/64", Some("fd00:2::254")),
                ("fd00:98::/64", None),
            ],
        );
        let nic = nic6(&state, None);
        let g = guest6("eth1", "vmlink1", MAC0, 1500, &nic, false).unwrap();
        assert_eq!(g.onlink, [net6("fd00:2::/64"), net6("fd00:98::/64")]);
        assert_eq!(
            g.gateways,
            [GatewayRoutes {
                gateway: "fd00:2::254".parse().unwrap(),
                default: false,
                routes: vec![net6("fd00:99::/64")]
            }]
        );
    }

    #[test]
    fn temporary_deprecated_and_tentative_addresses_never_go_to_the_guest() {
        let state = nic_state(
            &[
                ("2001:db8::aaaa/64", 0x01), // temporary
                ("2001:db8::bbbb/64", 0x20), // deprecated
                ("2001:db8::cccc/64", 0x40), // tentative
                ("2001:db8::2/64", 0x80),
            ],
            &[],
        );
        let nic = nic6(&state, None);
        assert_eq!(nic.guest.map(|a| a.net), Some(net6("2001:db8::2/64")));
    }

    #[test]
    fn selected_network_picks_the_ipv6_address_and_the_container_keeps_the_others_in_order() {
        // Kernel order: newest first. The guest's address is the second.
        let state = nic_state(
            &[
                ("fd00:7::9/64", 0x80),
                ("fd00:1::2/64", 0x80),
                ("fd00:8::9/64", 0x80),
            ],
            &[],
        );
        let nic = nic6(&state, Some("fd00:1::/64"));
        assert_eq!(
            nic.guest.as_ref().map(|a| a.net),
            Some(net6("fd00:1::2/64"))
        );
        let steps = release6("eth0", &nic);
        assert_eq!(
            commands(&steps),
            [
                "ip -6 addr del fd00:7::9/64 dev eth0",
                "ip -6 addr del fd00:1::2/64 dev eth0",
                "ip -6 addr add fd00:7::9/64 dev eth0",
            ]
        );
        // Undone newest first, the guest's comes back, then the one before it: on top.
        let undo: Vec<String> = steps
            .iter()
            .rev()
            .filter_map(Step::inverse)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            undo,
            [
                "ip -6 addr del fd00:7::9/64 dev eth0",
                "ip -6 addr add fd00:1::2/64 dev eth0",
                "ip -6 addr add fd00:7::9/64 dev eth0",
            ]
        );
    }

    #[test]
    fn selected_network_matching_no_ipv6_address_is_an_error() {
        let state = nic_state(&[("fd00:1::2/64", 0x80)], &[]);
        let nic = nic6(&state, None);
        assert!(check_selected(Some(net6("fd00:1::/64")), &[("eth0", &nic)]).is_ok());
        let e = check_selected(Some(net6("fd00:9::/64")), &[("eth0", &nic)]).unwrap_err();
        assert!(
            e.to_string().contains("matches no IPv6 address of eth0"),
            "{e}"
        );
    }

    #[test]
    fn the_ipv6_takeover_is_recorded_first_released_before_the_mac_changes_and_opened_after() {
        let state = nic_state(
            &[("fd00:1::2/64", 0x82), ("fe80::42:acff:fe13:2/64", 0x80)],
            &[("::/0", Some("fd00:1::1"))],
        );
        let p = crate::takeover::plan::plan(&crate::takeover::plan::PlanInput {
            attach: &crate::config::Attach::All,
            selected_network: None,
            selected_network6: None,
            state: &state,
            random_macs: &[[0xaa; 6]],
            datapath: crate::config::Datapath::Macvtap,
        })
        .unwrap();
        let at = |pred: &dyn Fn(&Step) -> bool| p.steps.iter().position(pred).unwrap();
        let record = at(
            &|s| matches!(s, Step::SetAlias { alias, .. } if alias.contains(";a6 fd00:1::2/64 f=2")),
        );
        let release = at(
            &|s| matches!(s, Step::DelAddr { addr: IpIfAddr::V6(addr), .. } if addr.net.addr == "fd00:1::2".parse::<Ipv6Addr>().unwrap()),
        );
        let link_local = at(
            &|s| matches!(s, Step::DelAddr { addr: IpIfAddr::V6(addr), .. } if addr.net.is_link_local()),
        );
        let new_mac = at(&|s| matches!(s, Step::SetMac { .. }));
        let door_route =
            at(&|s| matches!(s, Step::AddRoute { dev, route: IpRoute::V6(_) } if dev == "vmlink0"));
        assert!(
            record < release && release < new_mac && link_local < new_mac && new_mac < door_route
        );
        assert_eq!(p.v6.len(), 1);
        assert_eq!((p.v6[0].door.as_str(), p.v6[0].mac), ("vmlink0", MAC0));
    }

    #[test]
    fn where_doors_get_no_ipv6_as_under_docker_the_routes_stay_on_the_nic() {
        let mut state = nic_state(
            &[("fd00:1::2/64", 0x82), ("fe80::42:acff:fe13:2/64", 0x80)],
            &[("::/0", Some("fd00:1::1"))],
        );
        state.ipv6_on_new_links = false;
        let nic = nic6(&state, None);
        assert_eq!(
            commands(&release6("eth0", &nic)),
            [
                "ip -6 addr del fd00:1::2/64 dev eth0",
                "ip -6 addr del fe80::42:acff:fe13:2/64 dev eth0",
            ]
        );
        assert!(open_door6("vmlink0", "vmlink0", &nic).is_empty());
        let g = guest6("eth0", "vmlink0", MAC0, 1500, &nic, true).unwrap();
        assert!(
            g.gateways[0].default,
            "the guest still gets its default route"
        );
    }

    #[test]
    fn a_nic_without_ipv6_only_loses_the_link_local_the_guest_would_claim() {
        let state = nic_state(
            &[("fe80::42:acff:fe13:2/64", 0x80), ("fe80::1/64", 0x80)],
            &[],
        );
        let nic = nic6(&state, None);
        assert!(nic.guest.is_none());
        assert!(guest6("eth0", "vmlink0", MAC0, 1500, &nic, true).is_none());
        assert_eq!(
            commands(&release6("eth0", &nic)),
            ["ip -6 addr del fe80::42:acff:fe13:2/64 dev eth0"]
        );
        assert!(open_door6("vmlink0", "vmlink0", &nic).is_empty());
    }

    #[test]
    fn the_ipv6_default_route_moved_to_a_staying_nic_is_found_on_its_door_or_on_it() {
        let gw: Ipv6Addr = "fd00:2::1".parse().unwrap();
        for on in ["vmlink1", "eth1"] {
            let mut state = crate::testing::Ns::new()
                .nic(8, "eth1", crate::testing::MAC1, &[], &[])
                .0;
            let mut door = state.links[1].clone();
            door.index = 9;
            door.name = "vmlink1".into();
            state.links.push(door);
            let index = state.link(on).unwrap().index;
            let state = crate::testing::Ns(state)
                .route6(index, "::/0", Some("fd00:2::1"))
                .0;
            assert_eq!(
                router6_moved_to(&state, &[("eth1", "vmlink1")]),
                Some(("eth1".to_string(), gw, on.to_string()))
            );
            assert_eq!(router6_moved_to(&state, &[("eth2", "vmlink2")]), None);
        }
    }
}
