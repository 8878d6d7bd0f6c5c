//! Reads the network namespace (links, IPv4 addresses, routes of every table, permanent
//! neighbours) into plain data.
//!
//! The conversions from netlink messages are pure functions; only `read` talks to the
//! kernel. What vminit does not need, or cannot read, is skipped (and named at debug
//! level), never fatal.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType,
    LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage};

use crate::net::discover6;
use crate::net::netlink::Netlink;
use crate::net::netlink::message::metric_value;
use crate::net::netstate::{
    Addr, IfAddr, KernelRoute, Link, Neigh, NeighEntry, NetState, RTN_UNICAST, RouteEntry,
};
use crate::net::types::{Ipv4Net, Mac, Route};

/// Whether links made from now on get IPv6.
const DEFAULT_DISABLE_IPV6: &str = "/proc/sys/net/ipv6/conf/default/disable_ipv6";

/// `RT_TABLE_LOCAL`: the kernel's own table of local and broadcast addresses.
const RT_TABLE_LOCAL: u32 = 255;

/// Dumps links, addresses, routes and neighbours: `ip -d link show; ip -4 addr show;
/// ip -4 route show table all; ip -4 neigh show nud permanent`.
pub fn read(nl: &mut Netlink) -> io::Result<NetState> {
    let links: Vec<Link> = nl.links()?.into_iter().filter_map(link_of).collect();
    let mut addrs: Vec<Addr> = nl.addresses()?.into_iter().filter_map(addr_of).collect();
    // The kernel reports every address's label, the interface's name when it has no other.
    for addr in &mut addrs {
        let own = links
            .iter()
            .find(|l| l.index == addr.index)
            .map(|l| &l.name);
        if addr.addr.label.as_ref() == own {
            addr.addr.label = None;
        }
    }
    let routes = nl.routes()?.into_iter().filter_map(route_of).collect();
    let neighbours = nl.neighbours()?.into_iter().filter_map(neigh_of).collect();
    let mut state = NetState {
        links,
        addrs,
        routes,
        neighbours,
        ..NetState::default()
    };
    read_ipv6(nl, &mut state)?;
    Ok(state)
}

/// Adds the IPv6 part: `ip -6 addr show; ip -6 route show table all; ip -6 neigh show nud
/// permanent`. A kernel without IPv6 has none.
fn read_ipv6(nl: &mut Netlink, state: &mut NetState) -> io::Result<()> {
    // cat /proc/sys/net/ipv6/conf/default/disable_ipv6 (readable even where it is read-only)
    state.ipv6_on_new_links =
        std::fs::read_to_string(DEFAULT_DISABLE_IPV6).is_ok_and(|v| v.trim() == "0");
    let without_ipv6 = |e: &io::Error| e.raw_os_error() == Some(libc::EAFNOSUPPORT);
    match nl.addresses6() {
        Ok(addrs) => state.addrs6 = addrs.into_iter().filter_map(discover6::addr6_of).collect(),
        Err(e) if without_ipv6(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    state.routes6 = nl
        .routes6()?
        .into_iter()
        .filter_map(discover6::route6_of)
        .collect();
    state.neighbours6 = nl
        .neighbours6()?
        .into_iter()
        .filter_map(discover6::neigh6_of)
        .collect();
    Ok(())
}

/// The container's hostname (Docker's default: the container id), `vm` if it has none.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "vm".into())
}

/// A link, or `None` (named at debug level) when its name could not be read.
fn link_of(msg: LinkMessage) -> Option<Link> {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 1500,
        kind: None,
        alias: None,
        lower: None,
        lower_netns: None,
        ethernet: msg.header.link_layer_type == LinkLayerType::Ether,
        arp_ignore: None,
        up: msg.header.flags.contains(LinkFlags::Up),
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
            LinkAttribute::IfAlias(a) => link.alias = Some(a),
            LinkAttribute::Link(i) => link.lower = Some(i),
            LinkAttribute::LinkNetNsId(id) => link.lower_netns = Some(id),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        link.kind = Some(kind_name(&k));
                    }
                }
            }
            LinkAttribute::AfSpecUnspec(families) => {
                for family in families {
                    if let AfSpecUnspec::Inet(inet) = family {
                        for conf in inet {
                            if let AfSpecInet::DevConf(c) = conf {
                                link.arp_ignore = u32::try_from(c.arp_ignore).ok();
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if link.name.is_empty() {
        log::debug!("skipping link {}: its name is not readable", link.index);
        return None;
    }
    Some(link)
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

fn addr_of(msg: AddressMessage) -> Option<Addr> {
    let mut local = None;
    let mut address = None;
    let mut addr = IfAddr::plain(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, msg.header.prefix_len));
    addr.flags = u32::from(msg.header.flags.bits());
    addr.scope = u8::from(msg.header.scope);
    for attr in msg.attributes {
        match attr {
            AddressAttribute::Broadcast(b) => addr.broadcast = Some(b),
            AddressAttribute::Local(IpAddr::V4(a)) => local = Some(a),
            AddressAttribute::Address(IpAddr::V4(a)) => address = Some(a),
            AddressAttribute::Label(l) => addr.label = Some(l),
            AddressAttribute::Flags(f) => addr.flags = f.bits(),
            AddressAttribute::CacheInfo(c) if c.ifa_valid != u32::MAX => {
                addr.lifetime = Some((c.ifa_valid, c.ifa_preferred));
            }
            _ => {}
        }
    }
    addr.net.addr = local.or(address)?;
    // `ip addr add A peer P`: the local address and the peer differ.
    addr.peer = local.zip(address).filter(|(l, a)| l != a).map(|(_, a)| a);
    addr.flags = addr.kept_flags();
    Some(Addr {
        index: msg.header.index,
        addr,
    })
}

/// A unicast route through one interface, in any table but the kernel's local one.
fn route_of(msg: RouteMessage) -> Option<RouteEntry> {
    let h = &msg.header;
    if u8::from(h.kind) != RTN_UNICAST {
        return None;
    }
    let mut route = KernelRoute::main(Route {
        dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, h.destination_prefix_length),
        gateway: None,
        metric: None,
    });
    route.table = u32::from(h.table);
    route.protocol = u8::from(h.protocol);
    route.scope = u8::from(h.scope);
    route.tos = h.tos;
    route.onlink = h.flags.contains(RouteFlags::Onlink);
    let mut oif = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => route.table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => route.route.dst.addr = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => route.route.gateway = Some(*a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) if *p != 0 => route.route.metric = Some(*p),
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => route.src = Some(*a),
            RouteAttribute::Metrics(metrics) => {
                route.metrics = metrics.iter().filter_map(metric_value).collect();
            }
            RouteAttribute::MultiPath(_) => {
                log::debug!("skipping a multipath route: vminit does not move them");
                return None;
            }
            _ => {}
        }
    }
    if route.table == RT_TABLE_LOCAL {
        return None;
    }
    Some(RouteEntry { index: oif?, route })
}

/// A permanent neighbour entry (the others come and go by themselves).
fn neigh_of(msg: NeighbourMessage) -> Option<NeighEntry> {
    if msg.header.state != NeighbourState::Permanent {
        return None;
    }
    let mut addr = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => addr = Some(*a),
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                mac = Some(Mac(l.as_slice().try_into().ok()?));
            }
            _ => {}
        }
    }
    Some(NeighEntry {
        index: msg.header.ifindex,
        neigh: Neigh {
            addr: addr?,
            mac: mac?,
        },
    })
}
