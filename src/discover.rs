//! Reads the network namespace (links, IPv4 addresses, routes) into plain data.
//!
//! The conversions from netlink messages are pure functions; only `read` talks to the
//! kernel.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};

use crate::netlink::Netlink;
use crate::netstate::{Addr, Link, NetState, RouteEntry};
use crate::types::{Ipv4Net, Mac, Route};

/// Dumps links, addresses and routes: `ip -d link show; ip -4 addr show; ip -4 route show`.
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

fn link_of(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 1500,
        kind: None,
        alias: None,
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

fn addr_of(msg: AddressMessage) -> Option<Addr> {
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

fn route_of(msg: RouteMessage) -> Option<RouteEntry> {
    let h = &msg.header;
    if h.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = Some(*p),
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
    })
}
