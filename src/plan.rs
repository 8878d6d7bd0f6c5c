//! Decides, without touching anything, what happens to each attached NIC (pure).
//!
//! A plan is data: the guest's view of every NIC (`NicPlan`) and the ordered list of
//! changes to the namespace (`Step`) that give the guest the container's identity.

use std::fmt;
use std::net::Ipv4Addr;

use crate::config::Attach;
use crate::discover::{NetState, is_infrastructure, natural_cmp};
use crate::error::{Error, Result};
use crate::netlink::MacLinkKind;
use crate::types::{Ipv4Net, Mac, Route};

/// Every link vminit creates carries an alias starting with this, so a later run
/// (a container restart in the same pod) can recognise and undo it.
pub const ALIAS_PREFIX: &str = "vminit:";

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

/// One change to the network namespace. `Display` prints the equivalent `ip` command.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    DelRoute {
        dev: String,
        route: Route,
    },
    /// `onlink` tells the kernel not to check that the gateway is on a connected subnet
    /// (the container's side of a NIC no longer has the subnet's address).
    AddRoute {
        dev: String,
        route: Route,
        src: Option<Ipv4Addr>,
        onlink: bool,
    },
    /// `broadcast`: the address has (or gets back) its subnet's broadcast address.
    DelAddr {
        dev: String,
        addr: Ipv4Net,
        broadcast: bool,
    },
    AddAddr {
        dev: String,
        addr: Ipv4Net,
        broadcast: bool,
    },
    SetMac {
        dev: String,
        mac: Mac,
        old: Mac,
    },
    AddLink {
        kind: MacLinkKind,
        name: String,
        lower: String,
        mac: Option<Mac>,
        mtu: u32,
    },
    DelLink {
        name: String,
    },
    SetAlias {
        dev: String,
        alias: String,
    },
    /// TX checksum offload off on dnsmasq's side (old DHCP clients drop partial checksums).
    TxChecksumOff {
        dev: String,
    },
}

impl Step {
    /// The step that undoes this one, for rollback. `None` when nothing needs undoing.
    pub fn inverse(&self) -> Option<Step> {
        Some(match self.clone() {
            Step::DelRoute { dev, route } => Step::AddRoute {
                dev,
                route,
                src: None,
                onlink: false,
            },
            Step::AddRoute { dev, route, .. } => Step::DelRoute { dev, route },
            Step::DelAddr {
                dev,
                addr,
                broadcast,
            } => Step::AddAddr {
                dev,
                addr,
                broadcast,
            },
            Step::AddAddr {
                dev,
                addr,
                broadcast,
            } => Step::DelAddr {
                dev,
                addr,
                broadcast,
            },
            Step::SetMac { dev, mac, old } => Step::SetMac {
                dev,
                mac: old,
                old: mac,
            },
            Step::AddLink { name, .. } => Step::DelLink { name },
            // Deleting a link cannot be undone; only recovery deletes links.
            Step::DelLink { .. } | Step::SetAlias { .. } | Step::TxChecksumOff { .. } => {
                return None;
            }
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::DelRoute { dev, route } => write!(f, "ip route del {route} dev {dev}"),
            Step::AddRoute {
                dev,
                route,
                src,
                onlink,
            } => {
                write!(f, "ip route add {route} dev {dev}")?;
                if *onlink {
                    write!(f, " onlink")?;
                }
                match src {
                    Some(s) => write!(f, " src {s}"),
                    None => Ok(()),
                }
            }
            Step::DelAddr { dev, addr, .. } => write!(f, "ip addr del {addr} dev {dev}"),
            Step::AddAddr {
                dev,
                addr,
                broadcast,
            } => {
                let brd = if *broadcast { " brd +" } else { "" };
                write!(f, "ip addr add {addr}{brd} dev {dev}")
            }
            Step::SetMac { dev, mac, .. } => write!(f, "ip link set {dev} address {mac}"),
            Step::AddLink {
                kind,
                name,
                lower,
                mac,
                mtu,
            } => {
                let kind = match kind {
                    MacLinkKind::Macvtap => "macvtap",
                    MacLinkKind::Macvlan => "macvlan",
                };
                write!(f, "ip link add link {lower} name {name}")?;
                if let Some(mac) = mac {
                    write!(f, " address {mac}")?;
                }
                write!(f, " mtu {mtu} up type {kind} mode bridge")
            }
            Step::DelLink { name } => write!(f, "ip link del {name}"),
            Step::SetAlias { dev, alias } => write!(f, "ip link set {dev} alias '{alias}'"),
            Step::TxChecksumOff { dev } => write!(f, "ethtool -K {dev} tx off"),
        }
    }
}

/// What vminit will do to the namespace and hand to the guest.
#[derive(Clone, Debug, PartialEq)]
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

/// The NICs to attach, in guest order, or why that is impossible.
pub fn attached_names(attach: &Attach, state: &NetState) -> Result<Vec<String>> {
    let names = match attach {
        Attach::All => {
            let mut names: Vec<String> = state
                .links
                .iter()
                .filter(|l| !is_infrastructure(l) && !is_door(&l.name))
                .map(|l| l.name.clone())
                .collect();
            names.sort_by(|a, b| natural_cmp(a, b));
            names
        }
        Attach::Only(names) => {
            for name in names {
                let Some(link) = state.link(name) else {
                    return Err(Error::Network(format!(
                        "ATTACH_IFACES: interface {name} does not exist in this container; attach the network first (docker network connect) or fix the name"
                    )));
                };
                if is_infrastructure(link) {
                    return Err(Error::Network(format!(
                        "ATTACH_IFACES: {name} is not an Ethernet NIC that can be given to the VM; remove it from ATTACH_IFACES"
                    )));
                }
            }
            names.clone()
        }
    };
    if names.is_empty() {
        return Err(Error::Network(
            "no network interface to give to the VM; run the container with a network (not --network none)".into(),
        ));
    }
    Ok(names)
}

fn is_door(name: &str) -> bool {
    name.starts_with("vmlink") && name[6..].bytes().all(|b| b.is_ascii_digit())
}

/// Plans the takeover of every attached NIC.
pub fn plan(input: &PlanInput) -> Result<Plan> {
    let state = input.state;
    let names = attached_names(input.attach, state)?;

    // The VM's address for each NIC.
    let mut chosen = Vec::new();
    let mut any_selected = false;
    for name in &names {
        let link = state
            .link(name)
            .expect("attached_names checked the link exists");
        let addrs = state.addrs_of(link.index);
        let Some(first) = addrs.first().copied() else {
            return Err(Error::Network(format!(
                "{name} has no IPv4 address to give to the VM; give the network an IPv4 subnet or leave {name} out with AUTO_ATTACH=no and ATTACH_IFACES"
            )));
        };
        let selected = input
            .selected_network
            .and_then(|net| addrs.iter().copied().find(|a| net.contains(a.addr)));
        any_selected |= selected.is_some();
        chosen.push((link, selected.unwrap_or(first), addrs));
    }
    if let (Some(net), false) = (input.selected_network, any_selected) {
        return Err(Error::Config(
            "SELECTED_NETWORK".into(),
            format!(
                "{net} matches no IPv4 address of {}; use the network of the address the VM should get",
                names.join(", ")
            ),
        ));
    }

    // The NIC with the container's default route (lowest metric) gives the guest its router.
    let default_nic = chosen
        .iter()
        .filter_map(|(link, _, _)| {
            state
                .routes_of(link.index)
                .into_iter()
                .filter(|r| r.is_default() && r.gateway.is_some())
                .map(|r| (r.metric.unwrap_or(0), link.index))
                .min()
        })
        .min()
        .map(|(_, index)| index);

    // Addresses the container's door addresses must avoid.
    let mut taken: Vec<Ipv4Addr> = state.addrs.iter().map(|a| a.net.addr).collect();
    taken.extend(state.routes.iter().filter_map(|r| r.route.gateway));

    let mut nics = Vec::new();
    let mut steps = Vec::new();
    for (i, (link, addr, addrs)) in chosen.into_iter().enumerate() {
        let mac = link.mac.ok_or_else(|| {
            Error::Network(format!(
                "{} has no MAC address; it cannot become a guest NIC",
                link.name
            ))
        })?;
        let new_mac = Mac::local_from(input.random_macs.get(i).copied().unwrap_or([i as u8; 6]));
        let door_addr = door_address(addr.addr, &taken);
        taken.push(door_addr);
        let tap = format!("vmtap{i}");
        let door = format!("vmlink{i}");
        let moved = ordered_for_adding(state.routes_of(link.index));
        let gateway = if Some(link.index) == default_nic {
            moved
                .iter()
                .filter(|r| r.is_default())
                .min_by_key(|r| r.metric.unwrap_or(0))
                .and_then(|r| r.gateway)
        } else {
            None
        };
        let guest_routes = guest_routes(addr, door_addr, &moved, gateway);
        // The container keeps its other addresses, and uses one as the source of its
        // own traffic when it has one (Kubernetes gives two); else the door address.
        let kept = addrs.iter().find(|a| **a != addr).map(|a| a.addr);
        let identity = Identity {
            lower: link.name.clone(),
            mac,
            addr,
            routes: moved.clone(),
        };

        let lower = link.name.clone();
        for route in moved.iter().rev() {
            steps.push(Step::DelRoute {
                dev: lower.clone(),
                route: route.clone(),
            });
        }
        steps.push(Step::DelAddr {
            dev: lower.clone(),
            addr,
            broadcast: state.has_broadcast(link.index, addr),
        });
        steps.push(Step::SetMac {
            dev: lower.clone(),
            mac: new_mac,
            old: mac,
        });
        steps.push(Step::AddLink {
            kind: MacLinkKind::Macvtap,
            name: tap.clone(),
            lower: lower.clone(),
            mac: Some(mac),
            mtu: link.mtu,
        });
        steps.push(Step::SetAlias {
            dev: tap.clone(),
            alias: identity.encode(),
        });
        steps.push(Step::AddLink {
            kind: MacLinkKind::Macvlan,
            name: door.clone(),
            lower: lower.clone(),
            mac: None,
            mtu: link.mtu,
        });
        steps.push(Step::SetAlias {
            dev: door.clone(),
            alias: format!("{ALIAS_PREFIX}door {lower}"),
        });
        steps.push(Step::TxChecksumOff { dev: door.clone() });
        steps.push(Step::AddAddr {
            dev: door.clone(),
            addr: Ipv4Net::new(door_addr, 32),
            broadcast: false,
        });
        steps.push(Step::AddRoute {
            dev: door.clone(),
            route: Route {
                dst: Ipv4Net::new(addr.addr, 32),
                gateway: None,
                metric: None,
            },
            src: Some(door_addr),
            onlink: false,
        });
        for route in &moved {
            steps.push(Step::AddRoute {
                dev: door.clone(),
                route: route.clone(),
                src: Some(kept.unwrap_or(door_addr)),
                onlink: route.gateway.is_some(),
            });
        }
        nics.push(NicPlan {
            lower,
            tap,
            door,
            mac,
            mtu: link.mtu,
            addr,
            gateway,
            guest_routes,
            door_addr,
        });
    }
    Ok(Plan { nics, steps })
}

/// On-link routes first: a gateway route needs the route to its gateway in place.
fn ordered_for_adding(mut routes: Vec<Route>) -> Vec<Route> {
    routes.sort_by_key(|r| r.gateway.is_some());
    routes
}

/// The guest's classless static routes: its way to the container (the door), the
/// container NIC's own routes, and the default route on the default-route NIC only.
fn guest_routes(
    addr: Ipv4Net,
    door: Ipv4Addr,
    moved: &[Route],
    gateway: Option<Ipv4Addr>,
) -> Vec<Route> {
    let on_link = |ip: Ipv4Addr| Route {
        dst: Ipv4Net::new(ip, 32),
        gateway: None,
        metric: None,
    };
    let mut routes = vec![on_link(door)];
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
            routes.push(on_link(gw));
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

/// What a macvtap's alias records about the NIC it took over, so that a second run
/// in the same namespace can put the NIC back before starting again.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub lower: String,
    pub mac: Mac,
    pub addr: Ipv4Net,
    pub routes: Vec<Route>,
}

impl Identity {
    /// `vminit:nic eth0 02:42:ac:13:00:02 172.19.0.2/24 0.0.0.0/0>172.19.0.1@100,169.254.1.1/32`
    pub fn encode(&self) -> String {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let mut s = format!("{}/{}", r.dst.network(), r.dst.prefix);
                if let Some(gw) = r.gateway {
                    s.push_str(&format!(">{gw}"));
                }
                if let Some(m) = r.metric {
                    s.push_str(&format!("@{m}"));
                }
                s
            })
            .collect();
        format!(
            "{ALIAS_PREFIX}nic {} {} {} {}",
            self.lower,
            self.mac,
            self.addr,
            if routes.is_empty() {
                "-".into()
            } else {
                routes.join(",")
            }
        )
    }

    pub fn decode(alias: &str) -> Option<Identity> {
        let rest = alias.strip_prefix(ALIAS_PREFIX)?.strip_prefix("nic ")?;
        let mut words = rest.split(' ');
        let lower = words.next()?.to_string();
        let mac = words.next()?.parse().ok()?;
        let addr = words.next()?.parse().ok()?;
        let mut routes = Vec::new();
        match words.next()? {
            "-" => {}
            list => {
                for item in list.split(',') {
                    let (item, metric) = match item.split_once('@') {
                        Some((i, m)) => (i, Some(m.parse().ok()?)),
                        None => (item, None),
                    };
                    let (dst, gateway) = match item.split_once('>') {
                        Some((d, g)) => (d, Some(g.parse().ok()?)),
                        None => (item, None),
                    };
                    routes.push(Route {
                        dst: dst.parse().ok()?,
                        gateway,
                        metric,
                    });
                }
            }
        }
        Some(Identity {
            lower,
            mac,
            addr,
            routes,
        })
    }
}

/// The steps that undo what an earlier vminit left in this namespace (it was killed
/// before it could clean up): delete its links, give each NIC back its MAC, address
/// and routes. Empty when there is nothing to recover.
pub fn recovery(state: &NetState) -> Vec<Step> {
    let mut steps = Vec::new();
    for link in &state.links {
        let Some(alias) = link.alias.as_deref() else {
            continue;
        };
        if alias.starts_with(&format!("{ALIAS_PREFIX}door")) {
            steps.push(Step::DelLink {
                name: link.name.clone(),
            });
        }
    }
    for link in &state.links {
        let Some(id) = link.alias.as_deref().and_then(Identity::decode) else {
            continue;
        };
        steps.push(Step::DelLink {
            name: link.name.clone(),
        });
        let Some(lower) = state.link(&id.lower) else {
            continue;
        };
        if let Some(current) = lower.mac.filter(|m| *m != id.mac) {
            steps.push(Step::SetMac {
                dev: id.lower.clone(),
                mac: id.mac,
                old: current,
            });
        }
        if !state.addrs_of(lower.index).contains(&id.addr) {
            // What Docker and Kubernetes give an address; the alias does not record it.
            steps.push(Step::AddAddr {
                dev: id.lower.clone(),
                addr: id.addr,
                broadcast: id.addr.prefix < 31,
            });
        }
        let present = state.routes_of(lower.index);
        for route in ordered_for_adding(id.routes)
            .into_iter()
            .filter(|r| !present.contains(r))
        {
            steps.push(Step::AddRoute {
                dev: id.lower.clone(),
                route,
                src: None,
                onlink: false,
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{Addr, Link, RouteEntry};

    const MAC0: Mac = Mac([0x02, 0x42, 0xac, 0x13, 0x00, 0x02]);
    const MAC1: Mac = Mac([0x02, 0x42, 0xac, 0x14, 0x00, 0x05]);

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }
    fn route(dst: &str, gw: Option<&str>) -> Route {
        Route {
            dst: net(dst),
            gateway: gw.map(ip),
            metric: None,
        }
    }

    struct Ns(NetState);

    impl Ns {
        fn new() -> Ns {
            let lo = Link {
                index: 1,
                name: "lo".into(),
                mac: None,
                mtu: 65536,
                kind: None,
                lower: None,
                alias: None,
                up: true,
                ethernet: false,
            };
            Ns(NetState {
                links: vec![lo],
                ..Default::default()
            })
        }
        fn nic(mut self, index: u32, name: &str, mac: Mac, addrs: &[&str], routes: &[Route]) -> Ns {
            self.0.links.push(Link {
                index,
                name: name.into(),
                mac: Some(mac),
                mtu: 1450,
                kind: Some("veth".into()),
                lower: None,
                alias: None,
                up: true,
                ethernet: true,
            });
            for a in addrs {
                self.0.addrs.push(Addr {
                    index,
                    net: net(a),
                    broadcast: false,
                });
                let n = net(a);
                self.0.routes.push(RouteEntry {
                    index,
                    route: Route {
                        dst: Ipv4Net::new(n.network(), n.prefix),
                        gateway: None,
                        metric: None,
                    },
                    kernel: true,
                    prefsrc: Some(n.addr),
                });
            }
            for r in routes {
                self.0.routes.push(RouteEntry {
                    index,
                    route: r.clone(),
                    kernel: false,
                    prefsrc: None,
                });
            }
            self
        }
    }

    fn docker_two_networks() -> NetState {
        // Docker names NICs by connection order, not ifindex order.
        Ns::new()
            .nic(9, "eth1", MAC1, &["172.20.0.5/16"], &[])
            .nic(
                7,
                "eth0",
                MAC0,
                &["172.19.0.2/24"],
                &[route("0.0.0.0/0", Some("172.19.0.1"))],
            )
            .0
    }

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
        assert!(e.to_string().contains("eth7"), "{e}");
    }

    #[test]
    fn a_nic_without_ipv4_is_an_error_naming_it() {
        let state = Ns::new().nic(3, "eth0", MAC0, &[], &[]).0;
        let e = plan_for(&state, Attach::All, None).unwrap_err();
        assert!(e.to_string().contains("eth0 has no IPv4"), "{e}");
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
            matches!(e, Error::Config(ref v, _) if v == "SELECTED_NETWORK"),
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

    #[test]
    fn identity_survives_the_alias_round_trip() {
        let id = Identity {
            lower: "eth0".into(),
            mac: MAC0,
            addr: net("10.244.1.7/32"),
            routes: vec![
                route("169.254.1.1/32", None),
                Route {
                    dst: net("0.0.0.0/0"),
                    gateway: Some(ip("169.254.1.1")),
                    metric: Some(100),
                },
            ],
        };
        let alias = id.encode();
        assert!(alias.len() < 256, "fits IFALIASZ");
        assert_eq!(Identity::decode(&alias), Some(id));
        assert_eq!(Identity::decode("vminit:door eth0"), None);
        assert_eq!(Identity::decode("something else"), None);
    }

    #[test]
    fn recovery_puts_back_what_a_killed_run_left() {
        // What the namespace looks like after a run was SIGKILLed.
        let mut state = Ns::new().nic(7, "eth0", Mac([0xaa; 6]), &[], &[]).0;
        let id = Identity {
            lower: "eth0".into(),
            mac: MAC0,
            addr: net("172.19.0.2/24"),
            routes: vec![route("0.0.0.0/0", Some("172.19.0.1"))],
        };
        for (index, name, kind, alias) in [
            (20, "vmtap0", "macvtap", id.encode()),
            (21, "vmlink0", "macvlan", "vminit:door eth0".to_string()),
        ] {
            state.links.push(Link {
                index,
                name: name.into(),
                mac: Some(MAC0),
                mtu: 1500,
                kind: Some(kind.into()),
                lower: Some(7),
                alias: Some(alias),
                up: true,
                ethernet: true,
            });
        }
        let cmds: Vec<String> = recovery(&state).iter().map(|s| s.to_string()).collect();
        assert_eq!(
            cmds,
            [
                "ip link del vmlink0",
                "ip link del vmtap0",
                "ip link set eth0 address 02:42:ac:13:00:02",
                "ip addr add 172.19.0.2/24 brd + dev eth0",
                "ip route add default via 172.19.0.1 dev eth0",
            ]
        );
        // Our own links are never candidates for attachment.
        assert_eq!(
            attached_names(&Attach::All, &state).unwrap(),
            vec!["eth0".to_string()]
        );
    }

    #[test]
    fn a_clean_namespace_needs_no_recovery() {
        assert!(recovery(&docker_two_networks()).is_empty());
    }
}
