//! The IPv6 half of discovery: netlink answers about IPv6 addresses, routes and permanent
//! neighbours turned into plain data (pure; `discover::read` makes the dumps).
//!
//! As for IPv4, what cannot be read is skipped, never fatal.

use std::net::{IpAddr, Ipv6Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage};

use crate::net::netlink::message::metric_value;
use crate::net::netstate::{
    Addr6, IfAddr6, KernelRoute6, Neigh6, Neigh6Entry, RTN_UNICAST, Route6Entry,
};
use crate::net::types::{Ipv6Net, Mac, Route6};

/// `RT_TABLE_LOCAL`: the kernel's own table of local addresses.
const RT_TABLE_LOCAL: u32 = 255;

/// An IPv6 address (`ip -6 addr show`), or `None` for another family or an unreadable one.
pub fn addr6_of(msg: AddressMessage) -> Option<Addr6> {
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(msg.header.flags.bits());
    let mut addr = IfAddr6::plain(Ipv6Net::new(Ipv6Addr::UNSPECIFIED, msg.header.prefix_len));
    addr.scope = u8::from(msg.header.scope);
    for attr in msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V6(a)) => local = Some(a),
            AddressAttribute::Address(IpAddr::V6(a)) => address = Some(a),
            AddressAttribute::Flags(f) => flags = f.bits(),
            AddressAttribute::CacheInfo(c) if c.ifa_valid != u32::MAX => {
                addr.lifetime = Some((c.ifa_valid, c.ifa_preferred));
            }
            AddressAttribute::Protocol(p) => addr.protocol = Some(u8::from(p)),
            AddressAttribute::RoutePriority(m) => addr.metric = Some(m),
            _ => {}
        }
    }
    addr.net.addr = local.or(address)?;
    addr.flags = IfAddr6::settable_flags(flags);
    Some(Addr6 {
        index: msg.header.index,
        addr,
        reported_flags: flags,
    })
}

/// A unicast IPv6 route through one interface, in any table but the kernel's local one.
pub fn route6_of(msg: RouteMessage) -> Option<Route6Entry> {
    let h = &msg.header;
    if u8::from(h.kind) != RTN_UNICAST {
        return None;
    }
    let mut route = KernelRoute6::main(Route6 {
        dst: Ipv6Net::new(Ipv6Addr::UNSPECIFIED, h.destination_prefix_length),
        gateway: None,
        metric: None,
    });
    route.table = u32::from(h.table);
    route.protocol = u8::from(h.protocol);
    route.onlink = h.flags.contains(RouteFlags::Onlink);
    let mut oif = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => route.table = *t,
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => route.route.dst.addr = *a,
            RouteAttribute::Gateway(RouteAddress::Inet6(a)) => route.route.gateway = Some(*a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => route.route.metric = Some(*p),
            RouteAttribute::PrefSource(RouteAddress::Inet6(a)) => route.src = Some(*a),
            RouteAttribute::Preference(p) => route.pref = u8::from(*p),
            RouteAttribute::Metrics(metrics) => {
                route.metrics = metrics.iter().filter_map(metric_value).collect();
            }
            RouteAttribute::MultiPath(_) => {
                log::debug!("skipping a multipath IPv6 route: vminit does not move them");
                return None;
            }
            _ => {}
        }
    }
    if route.table == RT_TABLE_LOCAL {
        return None;
    }
    Some(Route6Entry { index: oif?, route })
}

/// A permanent IPv6 neighbour entry.
pub fn neigh6_of(msg: NeighbourMessage) -> Option<Neigh6Entry> {
    if msg.header.state != NeighbourState::Permanent {
        return None;
    }
    let (addr, mac) = neigh6_addr_mac(&msg)?;
    Some(Neigh6Entry {
        index: msg.header.ifindex,
        neigh: Neigh6 {
            addr,
            mac,
            router: msg.header.flags.contains(NeighbourFlags::Router),
        },
    })
}

/// A neighbour message's IPv6 address and MAC, when it has both.
fn neigh6_addr_mac(msg: &NeighbourMessage) -> Option<(Ipv6Addr, Mac)> {
    let mut addr = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => addr = Some(*a),
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                mac = Some(Mac(l.as_slice().try_into().ok()?));
            }
            _ => {}
        }
    }
    Some((addr?, mac?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::address::{AddressFlags, AddressScope, CacheInfo};

    #[test]
    fn a_kernel_link_local_address_is_read_with_its_protocol_and_only_settable_flags() {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet6;
        msg.header.prefix_len = 64;
        msg.header.index = 2;
        msg.header.scope = AddressScope::Link;
        msg.attributes.push(AddressAttribute::Address(
            "fe80::42:aff:fe3d:2".parse().unwrap(),
        ));
        // permanent (derived) | nodad
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
                0x80 | 0x02,
            )));
        msg.attributes.push(AddressAttribute::Protocol(3.into()));
        let mut forever = CacheInfo::default();
        forever.ifa_valid = u32::MAX;
        forever.ifa_preferred = u32::MAX;
        msg.attributes.push(AddressAttribute::CacheInfo(forever));
        let a = addr6_of(msg).unwrap();
        assert_eq!(a.index, 2);
        assert_eq!(a.addr.net, "fe80::42:aff:fe3d:2/64".parse().unwrap());
        assert_eq!(
            (a.addr.scope, a.addr.flags, a.addr.protocol),
            (253, 0x02, Some(3))
        );
        assert_eq!(a.addr.lifetime, None);
        assert_eq!(a.reported_flags, 0x82);
    }

    #[test]
    fn routes_of_the_local_table_and_other_types_are_not_read() {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet6;
        msg.header.kind = 2u8.into(); // local
        msg.attributes.push(RouteAttribute::Oif(2));
        assert!(route6_of(msg.clone()).is_none());
        msg.header.kind = 1u8.into();
        msg.header.table = 255;
        assert!(route6_of(msg.clone()).is_none());
        msg.header.table = 254;
        msg.attributes.push(RouteAttribute::Priority(1024));
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(
                "fd00:1::1".parse().unwrap(),
            )));
        let r = route6_of(msg).unwrap();
        assert!(r.route.route.is_default());
        assert_eq!(r.route.route.metric, Some(1024));
        assert_eq!(r.index, 2);
    }
}
