//! Reads the network namespace (links, IPv4 addresses, routes) into plain data.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteProtocol, RouteType,
};

use crate::netlink::Netlink;
use crate::types::{Ipv4Net, Mac, Route};

/// One network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<Mac>,
    pub mtu: u32,
    /// `IFLA_INFO_KIND`: "veth", "bridge", "macvtap", "ipip", ... (`None` for physical NICs).
    pub kind: Option<String>,
    /// The lower device of a macvlan/macvtap/vlan.
    pub lower: Option<u32>,
    pub alias: Option<String>,
    pub up: bool,
    /// Whether the link layer is Ethernet (tunnels such as `tunl0` or `sit0` are not).
    pub ethernet: bool,
}

/// One IPv4 address on one interface.
#[derive(Clone, Debug, PartialEq)]
pub struct Addr {
    pub index: u32,
    pub net: Ipv4Net,
    /// Whether it has a broadcast address (`ip addr add ... brd +`).
    pub broadcast: bool,
}

/// One IPv4 route of the main table, through one interface.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteEntry {
    pub index: u32,
    pub route: Route,
    /// Installed by the kernel for an address's subnet (`proto kernel`).
    pub kernel: bool,
    pub prefsrc: Option<Ipv4Addr>,
}

/// The state of the network namespace, as far as vminit cares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetState {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<RouteEntry>,
}

impl NetState {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The IPv4 addresses of one interface, in the kernel's order (primary first).
    pub fn addrs_of(&self, index: u32) -> Vec<Ipv4Net> {
        self.addrs
            .iter()
            .filter(|a| a.index == index)
            .map(|a| a.net)
            .collect()
    }

    /// Whether `net` on interface `index` has a broadcast address.
    pub fn has_broadcast(&self, index: u32, net: Ipv4Net) -> bool {
        self.addrs
            .iter()
            .any(|a| a.index == index && a.net == net && a.broadcast)
    }

    /// The routes through one interface, the kernel's subnet routes excluded.
    pub fn routes_of(&self, index: u32) -> Vec<Route> {
        self.routes
            .iter()
            .filter(|r| r.index == index && !r.kernel)
            .map(|r| r.route.clone())
            .collect()
    }
}

/// Dumps links, addresses and routes.
pub fn read(nl: &mut Netlink) -> io::Result<NetState> {
    let links = nl.links()?.into_iter().map(link_of).collect();
    let addrs = nl.addresses()?.into_iter().filter_map(addr_of).collect();
    let routes = nl.routes()?.into_iter().filter_map(route_of).collect();
    Ok(NetState {
        links,
        addrs,
        routes,
    })
}

fn link_of(msg: netlink_packet_route::link::LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 1500,
        kind: None,
        lower: None,
        alias: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        ethernet: msg.header.link_layer_type == LinkLayerType::Ether,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(&a);
                link.mac = Some(Mac(m));
            }
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::Link(l) => link.lower = Some(l),
            LinkAttribute::IfAlias(a) => link.alias = Some(a),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        link.kind = Some(kind_name(&k));
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::MacVtap => "macvtap".into(),
        InfoKind::MacVlan => "macvlan".into(),
        InfoKind::Bridge => "bridge".into(),
        InfoKind::Veth => "veth".into(),
        other => other.to_string(),
    }
}

fn addr_of(msg: netlink_packet_route::address::AddressMessage) -> Option<Addr> {
    let mut local = None;
    let mut address = None;
    let mut broadcast = false;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Broadcast(_) => broadcast = true,
            AddressAttribute::Local(IpAddr::V4(a)) => local = Some(*a),
            AddressAttribute::Address(IpAddr::V4(a)) => address = Some(*a),
            _ => {}
        }
    }
    Some(Addr {
        index: msg.header.index,
        net: Ipv4Net::new(local.or(address)?, msg.header.prefix_len),
        broadcast,
    })
}

fn route_of(msg: netlink_packet_route::route::RouteMessage) -> Option<RouteEntry> {
    let h = &msg.header;
    if h.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = None;
    let mut prefsrc = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = Some(*p),
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => prefsrc = Some(*a),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    Some(RouteEntry {
        index: oif?,
        route: Route {
            dst: Ipv4Net::new(dst, h.destination_prefix_length),
            gateway,
            metric: metric.filter(|m| *m != 0),
        },
        kernel: h.protocol == RouteProtocol::Kernel,
        prefsrc,
    })
}

/// Kinds that are never a container's NIC: bridges, kernel fallback tunnels and
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
        || link
            .alias
            .as_deref()
            .is_some_and(|a| a.starts_with(crate::plan::ALIAS_PREFIX))
}

/// Orders interface names naturally: eth2 before eth10.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(s: &str) -> (&str, u64, &str) {
        let start = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
        let end = s[start..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(s.len(), |e| start + e);
        (&s[..start], s[start..end].parse().unwrap_or(0), &s[end..])
    }
    let (pa, na, ra) = split(a);
    let (pb, nb, rb) = split(b);
    pa.cmp(pb).then(na.cmp(&nb)).then(ra.cmp(rb)).then(a.cmp(b))
}

/// The `nameserver`, `search` and `domain` lines of a resolv.conf.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolv {
    pub nameservers: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub domain: Option<String>,
}

/// Parses resolv.conf text; IPv6 nameservers are skipped (the guest gets IPv4 DHCP).
pub fn parse_resolv(text: &str) -> Resolv {
    let mut out = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(Ok(ip)) = words.next().map(str::parse::<Ipv4Addr>) {
                    out.nameservers.push(ip);
                }
            }
            Some("search") => out.search = words.map(str::to_string).collect(),
            Some("domain") => out.domain = words.next().map(str::to_string),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_puts_eth2_before_eth10() {
        let mut names = vec!["eth10", "eth2", "eth0", "eth1", "ens3"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["ens3", "eth0", "eth1", "eth2", "eth10"]);
    }

    #[test]
    fn resolv_conf_of_a_docker_user_network_is_understood() {
        let r = parse_resolv(
            "# Generated by Docker Engine.\nnameserver 127.0.0.11\nnameserver ::1\nsearch corp.example lab\noptions ndots:0\n# ExtServers: [8.8.8.8]\n",
        );
        assert_eq!(r.nameservers, vec![Ipv4Addr::new(127, 0, 0, 11)]);
        assert_eq!(r.search, vec!["corp.example", "lab"]);
    }

    fn link(name: &str, kind: Option<&str>, ethernet: bool) -> Link {
        Link {
            index: 1,
            name: name.into(),
            mac: None,
            mtu: 1500,
            kind: kind.map(str::to_string),
            lower: None,
            alias: None,
            up: true,
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
