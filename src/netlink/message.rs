//! The rtnetlink requests vminit sends, built as plain messages (pure).
//!
//! Each builder carries the `ip` command its request equals. The client in `netlink`
//! sends them; the tests below check their headers and attributes without a socket.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoMacVtap, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};

use crate::step::MacLinkKind;
use crate::types::{Ipv4Net, Mac, Route};

/// A macvtap or macvlan to create, always in bridge mode.
#[derive(Clone, Debug, PartialEq)]
pub struct MacLink<'a> {
    pub kind: MacLinkKind,
    pub name: &'a str,
    /// The lower device's index.
    pub lower: u32,
    /// Its MAC; `None` lets the kernel pick a random one.
    pub mac: Option<Mac>,
    pub mtu: u32,
}

/// An IPv4 address to add to an interface.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NewAddr {
    pub net: Ipv4Net,
    /// Give it its subnet's broadcast address (`brd +`).
    pub broadcast: bool,
}

/// A route to add through an interface.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRoute<'a> {
    pub route: &'a Route,
    /// The preferred source address (`src`).
    pub src: Option<Ipv4Addr>,
    /// Do not check that the gateway is on a connected subnet (`onlink`).
    pub onlink: bool,
}

/// `ip link add link LOWER name NAME [address MAC] mtu MTU up type macvtap|macvlan mode bridge`
///
/// The mode is always set explicitly: the kernel default (VEPA) cannot reach siblings.
pub fn add_mac_link(link: &MacLink) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes
        .push(LinkAttribute::IfName(link.name.to_string()));
    msg.attributes.push(LinkAttribute::Link(link.lower));
    msg.attributes.push(LinkAttribute::Mtu(link.mtu));
    if let Some(mac) = link.mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    let (info_kind, data) = match link.kind {
        MacLinkKind::Macvtap => (
            InfoKind::MacVtap,
            InfoData::MacVtap(vec![InfoMacVtap::Mode(MacVlanMode::Bridge)]),
        ),
        MacLinkKind::Macvlan => (
            InfoKind::MacVlan,
            InfoData::MacVlan(vec![InfoMacVlan::Mode(MacVlanMode::Bridge)]),
        ),
    };
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(info_kind),
        LinkInfo::Data(data),
    ]));
    msg
}

/// `ip link del dev INDEX`
pub fn del_link(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

/// `ip link set dev INDEX address MAC`
pub fn set_mac(index: u32, mac: Mac) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    msg
}

/// `ip link set dev INDEX alias TEXT`
pub fn set_alias(index: u32, alias: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::IfAlias(alias.to_string()));
    msg
}

/// `ip addr add ADDR/PREFIX [brd +] dev INDEX`
pub fn add_addr(index: u32, addr: &NewAddr) -> AddressMessage {
    let mut msg = addr_message(index, addr.net);
    if addr.broadcast && addr.net.prefix < 31 {
        let bcast = u32::from(addr.net.network()) | !u32::from(addr.net.netmask());
        msg.attributes
            .push(AddressAttribute::Broadcast(Ipv4Addr::from(bcast)));
    }
    msg
}

/// `ip addr del ADDR/PREFIX dev INDEX`
pub fn del_addr(index: u32, net: Ipv4Net) -> AddressMessage {
    addr_message(index, net)
}

fn addr_message(index: u32, net: Ipv4Net) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = net.prefix;
    msg.header.index = index;
    msg.header.scope = AddressScope::Universe;
    msg.attributes
        .push(AddressAttribute::Local(IpAddr::V4(net.addr)));
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V4(net.addr)));
    msg
}

/// `ip route add DST [via GW] dev INDEX [onlink] [src SRC] [metric M] proto boot`
pub fn add_route(index: u32, new: &NewRoute) -> RouteMessage {
    let mut msg = route_message(index, new.route);
    msg.header.kind = RouteType::Unicast;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = if new.route.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    if new.onlink {
        msg.header.flags = RouteFlags::Onlink;
    }
    if let Some(src) = new.src {
        msg.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
    }
    msg
}

/// `ip route del DST [via GW] dev INDEX [metric M]`, matching any type, protocol and scope
/// as `ip route del` does.
pub fn del_route(index: u32, route: &Route) -> RouteMessage {
    let mut msg = route_message(index, route);
    msg.header.scope = RouteScope::NoWhere;
    msg
}

fn route_message(index: u32, route: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = route.dst.prefix;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    if route.dst.prefix > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                route.dst.network(),
            )));
    }
    if let Some(gw) = route.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
    }
    msg.attributes.push(RouteAttribute::Oif(index));
    if let Some(m) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(m));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, gw: Option<&str>, metric: Option<u32>) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            metric,
        }
    }

    #[test]
    fn a_macvtap_is_created_up_in_bridge_mode_with_the_mac_and_mtu_asked() {
        let msg = add_mac_link(&MacLink {
            kind: MacLinkKind::Macvtap,
            name: "vmtap0",
            lower: 7,
            mac: Some(Mac([2, 0x42, 10, 1, 0, 2])),
            mtu: 1450,
        });
        assert_eq!(msg.header.flags, LinkFlags::Up);
        assert_eq!(msg.header.change_mask, LinkFlags::Up);
        let a = &msg.attributes;
        assert!(a.contains(&LinkAttribute::IfName("vmtap0".into())));
        assert!(a.contains(&LinkAttribute::Link(7)));
        assert!(a.contains(&LinkAttribute::Mtu(1450)));
        assert!(a.contains(&LinkAttribute::Address(vec![2, 0x42, 10, 1, 0, 2])));
        assert!(a.contains(&LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVtap),
            LinkInfo::Data(InfoData::MacVtap(vec![InfoMacVtap::Mode(
                MacVlanMode::Bridge
            )])),
        ])));
    }

    #[test]
    fn a_door_macvlan_is_in_bridge_mode_and_leaves_its_mac_to_the_kernel() {
        let msg = add_mac_link(&MacLink {
            kind: MacLinkKind::Macvlan,
            name: "vmlink0",
            lower: 7,
            mac: None,
            mtu: 1500,
        });
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Address(_)))
        );
        assert!(msg.attributes.contains(&LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge
            )])),
        ])));
    }

    #[test]
    fn link_changes_address_the_link_by_index() {
        let mac = set_mac(9, Mac([2, 0, 0, 0, 0, 1]));
        assert_eq!(mac.header.index, 9);
        assert_eq!(
            mac.attributes,
            vec![LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1])]
        );
        let alias = set_alias(9, "vminit:door eth0");
        assert_eq!(
            alias.attributes,
            vec![LinkAttribute::IfAlias("vminit:door eth0".into())]
        );
        let del = del_link(9);
        assert_eq!((del.header.index, del.attributes.len()), (9, 0));
    }

    #[test]
    fn an_address_gets_its_broadcast_only_when_asked_and_below_slash_31() {
        let with = add_addr(
            3,
            &NewAddr {
                net: "172.19.0.2/24".parse().unwrap(),
                broadcast: true,
            },
        );
        assert_eq!((with.header.index, with.header.prefix_len), (3, 24));
        assert!(with.attributes.contains(&AddressAttribute::Broadcast(
            "172.19.0.255".parse().unwrap()
        )));
        assert!(
            with.attributes
                .contains(&AddressAttribute::Local("172.19.0.2".parse().unwrap()))
        );
        for (net, broadcast) in [("172.19.0.2/24", false), ("10.0.0.1/32", true)] {
            let msg = add_addr(
                3,
                &NewAddr {
                    net: net.parse().unwrap(),
                    broadcast,
                },
            );
            assert!(
                !msg.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Broadcast(_))),
                "{net}"
            );
        }
    }

    #[test]
    fn a_gateway_route_is_universe_scope_with_onlink_source_and_metric() {
        let r = route("0.0.0.0/0", Some("172.19.0.1"), Some(100));
        let msg = add_route(
            5,
            &NewRoute {
                route: &r,
                src: Some("169.254.1.2".parse().unwrap()),
                onlink: true,
            },
        );
        let h = &msg.header;
        assert_eq!(
            (h.kind, h.protocol, h.scope, h.flags, h.table),
            (
                RouteType::Unicast,
                RouteProtocol::Boot,
                RouteScope::Universe,
                RouteFlags::Onlink,
                RouteHeader::RT_TABLE_MAIN
            )
        );
        assert_eq!(h.destination_prefix_length, 0);
        let a = &msg.attributes;
        assert!(
            !a.iter()
                .any(|a| matches!(a, RouteAttribute::Destination(_))),
            "a default route has no destination attribute"
        );
        assert!(a.contains(&RouteAttribute::Gateway(RouteAddress::Inet(
            "172.19.0.1".parse().unwrap()
        ))));
        assert!(a.contains(&RouteAttribute::Oif(5)));
        assert!(a.contains(&RouteAttribute::Priority(100)));
        assert!(a.contains(&RouteAttribute::PrefSource(RouteAddress::Inet(
            "169.254.1.2".parse().unwrap()
        ))));
    }

    #[test]
    fn an_on_link_route_is_link_scope_and_a_deletion_matches_any_scope() {
        let r = route("10.1.0.7/32", None, None);
        let add = add_route(
            5,
            &NewRoute {
                route: &r,
                src: None,
                onlink: false,
            },
        );
        assert_eq!(add.header.scope, RouteScope::Link);
        assert_eq!(add.header.flags, RouteFlags::empty());
        assert!(
            add.attributes
                .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                    "10.1.0.7".parse().unwrap()
                )))
        );
        let del = del_route(5, &r);
        assert_eq!(del.header.scope, RouteScope::NoWhere);
        assert!(
            !del.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::PrefSource(_)))
        );
    }
}
