//! The IPv6 rtnetlink requests vminit sends, built as plain messages (pure).
//!
//! The IPv6 half of `message`: each builder carries the `ip -6` command its request equals.

use std::net::IpAddr;

use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope,
};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RoutePreference, RouteScope,
};

use super::message::{
    RouteKey, addr_message, neigh_message, push_lifetime, push_metrics, push_route_options,
    route_message,
};
use crate::net::netstate::{ICMPV6_ROUTER_PREF_MEDIUM, IfAddr6, KernelRoute6, Neigh6};
use crate::net::types::Ipv6Net;

/// `ip -6 addr add ADDR/PREFIX dev INDEX [scope S] [FLAGS] [metric M] [proto P]
/// [valid_lft V preferred_lft P]`
pub fn add_addr6(index: u32, addr: &IfAddr6) -> AddressMessage {
    let mut msg = addr_message(index, IpAddr::V6(addr.net.addr), addr.net.prefix);
    msg.header.scope = AddressScope::from(addr.scope);
    let flags = IfAddr6::settable_flags(addr.flags);
    if flags != 0 {
        // The header holds the low 8 bits; IFA_FLAGS all of them (nodad, noprefixroute, ...).
        msg.header.flags = AddressHeaderFlags::from_bits_retain((flags & 0xff) as u8);
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
                flags,
            )));
    }
    push_lifetime(&mut msg, addr.lifetime);
    if let Some(metric) = addr.metric {
        msg.attributes.push(AddressAttribute::RoutePriority(metric));
    }
    if let Some(proto) = addr.protocol {
        msg.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(proto)));
    }
    msg
}

/// `ip -6 addr del ADDR/PREFIX dev INDEX`
pub fn del_addr6(index: u32, net: Ipv6Net) -> AddressMessage {
    addr_message(index, IpAddr::V6(net.addr), net.prefix)
}

/// `ip -6 route add DST [via GW] [table T] dev INDEX [onlink] [src SRC] [metric M] [proto P]
/// [pref P] [mtu ...]`
pub fn add_route6(index: u32, route: &KernelRoute6) -> RouteMessage {
    let mut msg = route_message(index, &key6(route));
    msg.header.scope = RouteScope::Universe;
    let src = route.src.map(RouteAddress::Inet6);
    push_route_options(&mut msg, route.kind, route.protocol, route.onlink, src);
    if route.pref != ICMPV6_ROUTER_PREF_MEDIUM {
        msg.attributes
            .push(RouteAttribute::Preference(RoutePreference::from(
                route.pref,
            )));
    }
    push_metrics(&mut msg, &route.metrics);
    msg
}

/// `ip -6 route del DST [via GW] [table T] dev INDEX [metric M]`
pub fn del_route6(index: u32, route: &KernelRoute6) -> RouteMessage {
    let mut msg = route_message(index, &key6(route));
    msg.header.scope = RouteScope::NoWhere;
    msg
}

fn key6(route: &KernelRoute6) -> RouteKey {
    RouteKey {
        family: AddressFamily::Inet6,
        prefix: route.route.dst.prefix,
        dst: RouteAddress::Inet6(route.route.dst.network()),
        gateway: route.route.gateway.map(RouteAddress::Inet6),
        table: route.table,
        tos: 0,
        metric: route.route.metric,
    }
}

/// `ip -6 neigh add ADDR lladdr MAC nud permanent [router] dev INDEX`
pub fn add_neigh6(index: u32, neigh: &Neigh6) -> NeighbourMessage {
    let mut msg = neigh_message(index, NeighbourAddress::Inet6(neigh.addr));
    if neigh.router {
        msg.header.flags = NeighbourFlags::Router;
    }
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(neigh.mac.0.to_vec()));
    msg
}

/// `ip -6 neigh del ADDR dev INDEX`
pub fn del_neigh6(index: u32, neigh: &Neigh6) -> NeighbourMessage {
    neigh_message(index, NeighbourAddress::Inet6(neigh.addr))
}

/// `ip link set dev INDEX addrgenmode none`: the link makes no IPv6 address for itself.
pub fn no_addr_gen(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    msg
}

/// `ip link set dev INDEX allmulticast on up`
pub fn set_up_allmulticast(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up | LinkFlags::Allmulti;
    msg.header.change_mask = LinkFlags::Up | LinkFlags::Allmulti;
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::netstate::{ICMPV6_ROUTER_PREF_HIGH, IFA_F_NODAD, IFA_F_PERMANENT};
    use crate::net::types::{Mac, Route6};
    use netlink_packet_route::neighbour::NeighbourState;
    use netlink_packet_route::route::{RouteFlags, RouteHeader};

    #[test]
    fn a_docker_address_comes_back_with_nodad_and_a_kernel_link_local_with_its_protocol() {
        let mut addr = IfAddr6::plain("fd00:1::2/64".parse().unwrap());
        addr.flags = IFA_F_NODAD | IFA_F_PERMANENT; // permanent is the kernel's to set
        let msg = add_addr6(4, &addr);
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert_eq!((msg.header.index, msg.header.prefix_len), (4, 64));
        assert_eq!(msg.header.scope, AddressScope::Universe);
        let a = &msg.attributes;
        assert!(a.contains(&AddressAttribute::Local("fd00:1::2".parse().unwrap())));
        assert!(a.contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        let mut ll = IfAddr6::plain("fe80::42:aff:fe3d:2/64".parse().unwrap());
        ll.protocol = Some(3);
        let msg = add_addr6(4, &ll);
        assert_eq!(msg.header.scope, AddressScope::Link);
        assert!(
            msg.attributes
                .contains(&AddressAttribute::Protocol(AddressProtocol::LinkLocal))
        );
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Flags(_)))
        );
    }

    #[test]
    fn an_ipv6_route_keeps_gateway_metric_table_preference_and_onlink() {
        let mut r = KernelRoute6::main(Route6 {
            dst: "::/0".parse().unwrap(),
            gateway: Some("fd00:1::1".parse().unwrap()),
            metric: Some(1024),
        });
        r.onlink = true;
        r.pref = ICMPV6_ROUTER_PREF_HIGH;
        r.table = 1000;
        let msg = add_route6(7, &r);
        let h = &msg.header;
        assert_eq!(h.address_family, AddressFamily::Inet6);
        assert_eq!(
            (h.destination_prefix_length, h.flags),
            (0, RouteFlags::Onlink)
        );
        assert_eq!(h.table, RouteHeader::RT_TABLE_UNSPEC);
        let a = &msg.attributes;
        assert!(a.contains(&RouteAttribute::Table(1000)));
        assert!(a.contains(&RouteAttribute::Gateway(RouteAddress::Inet6(
            "fd00:1::1".parse().unwrap()
        ))));
        assert!(a.contains(&RouteAttribute::Priority(1024)));
        assert!(a.contains(&RouteAttribute::Oif(7)));
        assert!(a.contains(&RouteAttribute::Preference(RoutePreference::High)));
        assert!(
            !a.iter()
                .any(|a| matches!(a, RouteAttribute::Destination(_))),
            "a default route has no destination"
        );
        let del = del_route6(7, &r);
        assert_eq!(del.header.scope, RouteScope::NoWhere);
    }

    #[test]
    fn a_permanent_ipv6_neighbour_keeps_its_router_flag() {
        let n = Neigh6 {
            addr: "fe80::1".parse().unwrap(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            router: true,
        };
        let msg = add_neigh6(3, &n);
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert_eq!(msg.header.flags, NeighbourFlags::Router);
        assert_eq!(msg.header.state, NeighbourState::Permanent);
        assert_eq!(del_neigh6(3, &n).attributes.len(), 1);
    }
}
