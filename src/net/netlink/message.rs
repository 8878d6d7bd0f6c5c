//! The rtnetlink requests vminit sends, built as plain messages (pure).
//!
//! Each builder carries the `ip` command its request equals. The client in `netlink`
//! sends them; the tests below check their headers and attributes without a socket.

use std::net::IpAddr;

use netlink_packet_core::{
    DecodeError, DefaultNla, NLA_F_NESTED, NlaBuffer, NlasIterator, Parseable,
    ParseableParametrized,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeader, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, InfoData, InfoKind, InfoMacVlan, InfoMacVtap, LinkAttribute,
    LinkFlags, LinkHeader, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourHeader, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteLwEnCapType, RouteMessage,
    RouteMetric, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::net::netstate::{IfAddr, KernelRoute, Neigh};
use crate::net::step::MacLinkKind;
use crate::net::types::{Ipv4Net, Mac};

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
    /// Created up; a record carrier stays down.
    pub up: bool,
}

/// `ip link add link LOWER name NAME [address MAC] mtu MTU [up] type macvtap|macvlan mode bridge`
///
/// The mode is always set explicitly: the kernel default (VEPA) cannot reach siblings.
pub fn add_mac_link(link: &MacLink) -> LinkMessage {
    let mut msg = LinkMessage::default();
    if link.up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
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

/// `ip link set dev INDEX mtu MTU up`
pub fn set_mtu_up(index: u32, mtu: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    msg
}

/// `ip link set dev INDEX down`
pub fn set_down(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.change_mask = LinkFlags::Up;
    msg
}

/// `IFLA_INET_CONF`: the part of a link's `IFLA_AF_SPEC` `AF_INET` that holds its IPv4
/// settings (`net.ipv4.conf.LINK.*`).
const IFLA_INET_CONF: u16 = 1;
/// `IPV4_DEVCONF_ARP_IGNORE` (linux/ip.h): `arp_ignore`'s number among those settings.
const IPV4_DEVCONF_ARP_IGNORE: u16 = 19;

/// `sysctl -w net.ipv4.conf.DEV.arp_ignore=VALUE`, as `IFLA_AF_SPEC` → `AF_INET` →
/// `IFLA_INET_CONF` (nested) → one setting. netlink-packet-route's `DevConfRequest` leaves
/// out every setting whose value is 0, so it could not put a 0 back: the setting is written
/// here, as the kernel reads it (`struct nlattr` then a `u32`, in host order).
pub fn set_arp_ignore(index: u32, value: u32) -> LinkMessage {
    let mut setting = Vec::with_capacity(8);
    setting.extend_from_slice(&8u16.to_ne_bytes());
    setting.extend_from_slice(&IPV4_DEVCONF_ARP_IGNORE.to_ne_bytes());
    setting.extend_from_slice(&value.to_ne_bytes());
    let conf = DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, setting);
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::Other(conf),
        ])]));
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

/// `ip addr add ADDR/PREFIX [brd B] [label L] [scope S] [FLAGS] [valid_lft V preferred_lft P]
/// dev INDEX`
pub fn add_addr(index: u32, addr: &IfAddr) -> AddressMessage {
    let mut msg = addr_message(index, IpAddr::V4(addr.net.addr), addr.net.prefix);
    msg.header.scope = AddressScope::from(addr.scope);
    if let Some(brd) = addr.broadcast {
        msg.attributes.push(AddressAttribute::Broadcast(brd));
    }
    if let Some(label) = &addr.label {
        msg.attributes.push(AddressAttribute::Label(label.clone()));
    }
    let flags = addr.settable_flags();
    if flags != 0 {
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
                flags,
            )));
    }
    push_lifetime(&mut msg, addr.lifetime);
    msg
}

/// `ip addr del ADDR/PREFIX dev INDEX`
pub fn del_addr(index: u32, net: Ipv4Net) -> AddressMessage {
    addr_message(index, IpAddr::V4(net.addr), net.prefix)
}

/// The address request of either family: `ADDR/PREFIX dev INDEX`. (IPv4 names the address
/// twice, as local and peer address, as `ip addr` sends it.)
pub(super) fn addr_message(index: u32, addr: IpAddr, prefix: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = prefix;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(addr));
    if addr.is_ipv4() {
        msg.attributes.push(AddressAttribute::Address(addr));
    }
    msg
}

/// `valid_lft V preferred_lft P`, when the address has lifetimes.
pub(super) fn push_lifetime(msg: &mut AddressMessage, lifetime: Option<(u32, u32)>) {
    if let Some((valid, preferred)) = lifetime {
        let mut cache = CacheInfo::default();
        cache.ifa_preferred = preferred;
        cache.ifa_valid = valid;
        msg.attributes.push(AddressAttribute::CacheInfo(cache));
    }
}

/// `ip route add DST [via GW] [table T] [tos X] dev INDEX [onlink] [src SRC] [metric M]
/// [proto P] [scope S] [mtu ...]`
pub fn add_route(index: u32, route: &KernelRoute) -> RouteMessage {
    let mut msg = route_message(index, &key(route));
    msg.header.scope = RouteScope::from(route.scope);
    let src = route.src.map(RouteAddress::Inet);
    push_route_options(&mut msg, route.kind, route.protocol, route.onlink, src);
    push_metrics(&mut msg, &route.metrics);
    msg
}

/// `ip route del DST [via GW] [table T] [tos X] dev INDEX [metric M]`, matching any type,
/// protocol and scope as `ip route del` does.
pub fn del_route(index: u32, route: &KernelRoute) -> RouteMessage {
    let mut msg = route_message(index, &key(route));
    msg.header.scope = RouteScope::NoWhere;
    msg
}

fn key(route: &KernelRoute) -> RouteKey {
    RouteKey {
        family: AddressFamily::Inet,
        prefix: route.route.dst.prefix,
        dst: RouteAddress::Inet(route.route.dst.network()),
        gateway: route.route.gateway.map(RouteAddress::Inet),
        table: route.table,
        tos: route.tos,
        metric: route.route.metric,
    }
}

/// What picks one route out of a table, in either family: what `ip route del` matches on.
pub(super) struct RouteKey {
    pub family: AddressFamily,
    pub prefix: u8,
    /// The destination network (left out for a default route).
    pub dst: RouteAddress,
    pub gateway: Option<RouteAddress>,
    pub table: u32,
    pub tos: u8,
    pub metric: Option<u32>,
}

/// The route request of either family: `DST [via GW] [table T] [tos X] dev INDEX [metric M]`.
pub(super) fn route_message(index: u32, key: &RouteKey) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = key.family;
    msg.header.destination_prefix_length = key.prefix;
    msg.header.tos = key.tos;
    // Tables above 255 travel in RTA_TABLE only, as iproute2 sends them.
    match u8::try_from(key.table) {
        Ok(table) => msg.header.table = table,
        Err(_) => {
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
            msg.attributes.push(RouteAttribute::Table(key.table));
        }
    }
    if key.prefix > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(key.dst.clone()));
    }
    if let Some(gw) = &key.gateway {
        msg.attributes.push(RouteAttribute::Gateway(gw.clone()));
    }
    msg.attributes.push(RouteAttribute::Oif(index));
    if let Some(m) = key.metric {
        msg.attributes.push(RouteAttribute::Priority(m));
    }
    msg
}

/// `type T proto P [onlink] [src SRC]` of a route to add, in either family.
pub(super) fn push_route_options(
    msg: &mut RouteMessage,
    kind: u8,
    protocol: u8,
    onlink: bool,
    src: Option<RouteAddress>,
) {
    msg.header.kind = RouteType::from(kind);
    msg.header.protocol = RouteProtocol::from(protocol);
    if onlink {
        msg.header.flags = RouteFlags::Onlink;
    }
    if let Some(src) = src {
        msg.attributes.push(RouteAttribute::PrefSource(src));
    }
}

/// `mtu M advmss A ...`: the route's metrics, those with a number value.
pub(super) fn push_metrics(msg: &mut RouteMessage, metrics: &[(u16, u32)]) {
    let metrics: Vec<RouteMetric> = metrics
        .iter()
        .filter_map(|(kind, value)| route_metric(*kind, *value))
        .collect();
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
}

/// An `RTAX_*` route metric with a number value (the congestion-control name is not kept).
pub fn route_metric(kind: u16, value: u32) -> Option<RouteMetric> {
    Some(match kind {
        1 => RouteMetric::Lock(value),
        2 => RouteMetric::Mtu(value),
        3 => RouteMetric::Window(value),
        4 => RouteMetric::Rtt(value),
        5 => RouteMetric::RttVar(value),
        6 => RouteMetric::SsThresh(value),
        7 => RouteMetric::Cwnd(value),
        8 => RouteMetric::Advmss(value),
        9 => RouteMetric::Reordering(value),
        10 => RouteMetric::Hoplimit(value),
        11 => RouteMetric::InitCwnd(value),
        12 => RouteMetric::Features(value),
        13 => RouteMetric::RtoMin(value),
        14 => RouteMetric::InitRwnd(value),
        15 => RouteMetric::QuickAck(value),
        17 => RouteMetric::FastopenNoCookie(value),
        _ => return None,
    })
}

/// The `RTAX_*` number and value of a route metric the kernel reported.
pub fn metric_value(metric: &RouteMetric) -> Option<(u16, u32)> {
    Some(match *metric {
        RouteMetric::Lock(v) => (1, v),
        RouteMetric::Mtu(v) => (2, v),
        RouteMetric::Window(v) => (3, v),
        RouteMetric::Rtt(v) => (4, v),
        RouteMetric::RttVar(v) => (5, v),
        RouteMetric::SsThresh(v) => (6, v),
        RouteMetric::Cwnd(v) => (7, v),
        RouteMetric::Advmss(v) => (8, v),
        RouteMetric::Reordering(v) => (9, v),
        RouteMetric::Hoplimit(v) => (10, v),
        RouteMetric::InitCwnd(v) => (11, v),
        RouteMetric::Features(v) => (12, v),
        RouteMetric::RtoMin(v) => (13, v),
        RouteMetric::InitRwnd(v) => (14, v),
        RouteMetric::QuickAck(v) => (15, v),
        RouteMetric::FastopenNoCookie(v) => (17, v),
        _ => return None,
    })
}

/// `ip neigh add ADDR lladdr MAC nud permanent dev INDEX`
pub fn add_neigh(index: u32, neigh: &Neigh) -> NeighbourMessage {
    let mut msg = neigh_message(index, NeighbourAddress::Inet(neigh.addr));
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(neigh.mac.0.to_vec()));
    msg
}

/// `ip neigh del ADDR dev INDEX`
pub fn del_neigh(index: u32, neigh: &Neigh) -> NeighbourMessage {
    neigh_message(index, NeighbourAddress::Inet(neigh.addr))
}

/// The permanent neighbour request of either family: `ADDR nud permanent dev INDEX`.
pub(super) fn neigh_message(index: u32, addr: NeighbourAddress) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match addr {
        NeighbourAddress::Inet6(_) => AddressFamily::Inet6,
        _ => AddressFamily::Inet,
    };
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.kind = RouteType::Unicast;
    msg.attributes.push(NeighbourAttribute::Destination(addr));
    msg
}

/// `RTM_NEWLINK`, `RTM_NEWADDR`, `RTM_NEWROUTE`, `RTM_NEWNEIGH`: the dump answers vminit reads.
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_NEWNEIGH: u16 = 28;
/// The fixed headers before their attributes: `ifinfomsg`, `ifaddrmsg`, `rtmsg`, `ndmsg`.
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;
const NDMSG_LEN: usize = 12;

/// Reads a dump answer that the library could not parse whole (one attribute it cannot
/// read, such as a non-UTF-8 alias, fails the message), attribute by attribute: what can
/// be read is kept, the rest is skipped and named in `skipped`. `None` for other message
/// types or a broken header.
pub fn parse_lenient(
    message_type: u16,
    payload: &[u8],
    skipped: &mut Vec<String>,
) -> Option<RouteNetlinkMessage> {
    let mut keep = |what: &str,
                    nla: Result<NlaBuffer<&[u8]>, DecodeError>,
                    parse: &mut dyn FnMut(&NlaBuffer<&[u8]>) -> bool| {
        match nla {
            Ok(nla) => {
                if !parse(&nla) {
                    skipped.push(format!("{what} attribute {}", nla.kind()));
                }
            }
            Err(e) => skipped.push(format!("{what} attribute: {e}")),
        }
    };
    match message_type {
        RTM_NEWLINK => {
            let header = LinkHeader::parse(payload).ok()?;
            let family = header.interface_family;
            let mut msg = LinkMessage::default();
            msg.header = header;
            for nla in NlasIterator::new(payload.get(IFINFOMSG_LEN..)?) {
                keep("link", nla, &mut |nla| {
                    LinkAttribute::parse_with_param(nla, family)
                        .map(|a| msg.attributes.push(a))
                        .is_ok()
                });
            }
            Some(RouteNetlinkMessage::NewLink(msg))
        }
        RTM_NEWADDR => {
            let mut msg = AddressMessage::default();
            msg.header = AddressHeader::parse(payload).ok()?;
            for nla in NlasIterator::new(payload.get(IFADDRMSG_LEN..)?) {
                keep("address", nla, &mut |nla| {
                    AddressAttribute::parse(nla)
                        .map(|a| msg.attributes.push(a))
                        .is_ok()
                });
            }
            Some(RouteNetlinkMessage::NewAddress(msg))
        }
        RTM_NEWROUTE => {
            let mut msg = RouteMessage::default();
            msg.header = RouteHeader::parse(payload).ok()?;
            let param = (
                msg.header.address_family,
                msg.header.kind,
                RouteLwEnCapType::None,
            );
            for nla in NlasIterator::new(payload.get(RTMSG_LEN..)?) {
                keep("route", nla, &mut |nla| {
                    RouteAttribute::parse_with_param(nla, param)
                        .map(|a| msg.attributes.push(a))
                        .is_ok()
                });
            }
            Some(RouteNetlinkMessage::NewRoute(msg))
        }
        RTM_NEWNEIGH => {
            let mut msg = NeighbourMessage::default();
            msg.header = NeighbourHeader::parse(payload).ok()?;
            let family = msg.header.family;
            for nla in NlasIterator::new(payload.get(NDMSG_LEN..)?) {
                keep("neighbour", nla, &mut |nla| {
                    NeighbourAttribute::parse_with_param(nla, family)
                        .map(|a| msg.attributes.push(a))
                        .is_ok()
                });
            }
            Some(RouteNetlinkMessage::NewNeighbour(msg))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::types::Route;

    fn route(dst: &str, gw: Option<&str>, metric: Option<u32>) -> KernelRoute {
        KernelRoute::main(Route {
            dst: dst.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            metric,
        })
    }

    #[test]
    fn a_macvtap_is_created_up_in_bridge_mode_with_the_mac_and_mtu_asked() {
        let msg = add_mac_link(&MacLink {
            kind: MacLinkKind::Macvtap,
            name: "vmtap0",
            lower: 7,
            mac: Some(Mac([2, 0x42, 10, 1, 0, 2])),
            mtu: 1450,
            up: true,
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
            up: true,
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
    fn a_record_carrier_stays_down() {
        let msg = add_mac_link(&MacLink {
            kind: MacLinkKind::Macvlan,
            name: "vmrec0.2",
            lower: 7,
            mac: None,
            mtu: 1500,
            up: false,
        });
        assert_eq!(msg.header.change_mask, LinkFlags::empty());
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
    fn arp_ignore_is_one_nested_ipv4_setting_and_a_zero_is_sent_too() {
        use netlink_packet_core::Emitable;
        for value in [0u32, 1] {
            let msg = set_arp_ignore(9, value);
            assert_eq!(msg.header.index, 9);
            let mut bytes = vec![0; msg.buffer_len()];
            msg.emit(&mut bytes);
            // After the 16-byte link header: IFLA_AF_SPEC (26) → AF_INET (2) →
            // IFLA_INET_CONF (1, nested) → IPV4_DEVCONF_ARP_IGNORE (19) = value.
            let mut expected = vec![20, 0, 26, 0, 16, 0, 2, 0, 12, 0, 1, 0x80, 8, 0, 19, 0];
            expected.extend_from_slice(&value.to_ne_bytes());
            assert_eq!(&bytes[16..], expected.as_slice(), "arp_ignore={value}");
        }
    }

    #[test]
    fn an_address_comes_back_with_its_broadcast_label_flags_scope_and_lifetimes() {
        let addr = IfAddr {
            net: "172.19.0.9/24".parse().unwrap(),
            broadcast: Some("172.19.0.255".parse().unwrap()),
            label: Some("eth0:vip".into()),
            // SECONDARY and PERMANENT are the kernel's to set; NOPREFIXROUTE is ours.
            flags: 0x01 | 0x80 | 0x200,
            scope: 253,
            lifetime: Some((600, 300)),
            peer: None,
        };
        let msg = add_addr(3, &addr);
        assert_eq!((msg.header.index, msg.header.prefix_len), (3, 24));
        assert_eq!(msg.header.scope, AddressScope::Link);
        let a = &msg.attributes;
        assert!(a.contains(&AddressAttribute::Broadcast(
            "172.19.0.255".parse().unwrap()
        )));
        assert!(a.contains(&AddressAttribute::Local("172.19.0.9".parse().unwrap())));
        assert!(a.contains(&AddressAttribute::Label("eth0:vip".into())));
        assert!(a.contains(&AddressAttribute::Flags(AddressFlags::Noprefixroute)));
        let mut cache = CacheInfo::default();
        cache.ifa_preferred = 300;
        cache.ifa_valid = 600;
        assert!(a.contains(&AddressAttribute::CacheInfo(cache)));
    }

    #[test]
    fn a_plain_address_has_no_broadcast_label_flags_or_lifetime() {
        let msg = add_addr(3, &IfAddr::plain("10.0.0.1/32".parse().unwrap()));
        assert_eq!(msg.attributes.len(), 2, "local and address only");
        assert_eq!(msg.header.scope, AddressScope::Universe);
    }

    #[test]
    fn a_gateway_route_is_universe_scope_with_onlink_source_and_metric() {
        let mut r = route("0.0.0.0/0", Some("172.19.0.1"), Some(100));
        r.src = Some("169.254.1.2".parse().unwrap());
        r.onlink = true;
        let msg = add_route(5, &r);
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
    fn a_route_keeps_its_table_protocol_tos_and_metrics() {
        let mut r = route("10.9.0.0/16", Some("10.1.0.1"), None);
        r.table = 1000;
        r.protocol = 186;
        r.tos = 0x10;
        r.metrics = vec![(2, 1400), (11, 10), (16, 0)];
        let msg = add_route(5, &r);
        assert_eq!(msg.header.table, RouteHeader::RT_TABLE_UNSPEC);
        assert_eq!(msg.header.tos, 0x10);
        assert_eq!(msg.header.protocol, RouteProtocol::from(186));
        assert!(msg.attributes.contains(&RouteAttribute::Table(1000)));
        assert!(msg.attributes.contains(&RouteAttribute::Metrics(vec![
            RouteMetric::Mtu(1400),
            RouteMetric::InitCwnd(10)
        ])));
        r.table = 100;
        assert_eq!(add_route(5, &r).header.table, 100);
        assert!(
            !add_route(5, &r)
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Table(_)))
        );
    }

    #[test]
    fn an_on_link_route_is_link_scope_and_a_deletion_matches_any_scope() {
        let r = route("10.1.0.7/32", None, None);
        let add = add_route(5, &r);
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

    #[test]
    fn metrics_survive_the_round_trip_through_their_numbers() {
        for kind in (1..=17).filter(|k| *k != 16) {
            let metric = route_metric(kind, 77).unwrap();
            assert_eq!(metric_value(&metric), Some((kind, 77)));
        }
        assert_eq!(route_metric(16, 1), None);
    }

    #[test]
    fn a_permanent_neighbour_is_added_with_its_mac() {
        let neigh = Neigh {
            addr: "10.1.0.1".parse().unwrap(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
        };
        let msg = add_neigh(4, &neigh);
        assert_eq!(msg.header.ifindex, 4);
        assert_eq!(msg.header.state, NeighbourState::Permanent);
        assert!(
            msg.attributes
                .contains(&NeighbourAttribute::LinkLayerAddress(vec![
                    2, 0, 0, 0, 0, 1
                ]))
        );
        assert_eq!(del_neigh(4, &neigh).attributes.len(), 1);
    }
}
