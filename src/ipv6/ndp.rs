//! IPv6 neighbour-discovery frames as bytes (pure): the router advertisements vminit sends
//! the guest, the guest's router solicitations, and the echo probe that finds a gateway's
//! link-local address. Whole Ethernet frames, checksums included, for a packet socket.

use std::net::Ipv6Addr;

use crate::net::types::{Ipv6Net, Mac};

/// `ETH_P_IPV6`
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IPv6 next-header numbers.
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_UDP: u8 = 17;
/// ICMPv6 types.
const ECHO_REQUEST: u8 = 128;
const ECHO_REPLY: u8 = 129;
const ROUTER_SOLICITATION: u8 = 133;
const NEIGHBOUR_SOLICITATION: u8 = 135;
const ROUTER_ADVERTISEMENT: u8 = 134;
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// The source link-layer address option (RFC 4861 4.6.1).
const OPT_SOURCE_LL: u8 = 1;
/// Target link-layer address option (RFC 4861 4.6.1).
const OPT_TARGET_LL: u8 = 2;
/// `ff02::1`, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Ethernet multicast MACs of `ff02::2` (all routers) and `ff02::1:2` (DHCPv6 servers): what
/// the guest's router solicitations and DHCPv6 requests are sent to.
pub const ALL_ROUTERS_MAC: Mac = Mac([0x33, 0x33, 0, 0, 0, 2]);
pub const DHCP6_SERVERS_MAC: Mac = Mac([0x33, 0x33, 0, 1, 0, 2]);
/// Lengths of the Ethernet and IPv6 headers.
pub const ETH_LEN: usize = 14;
pub const IP6_LEN: usize = 40;
/// Infinity, for lifetimes.
pub const INFINITE: u32 = u32::MAX;

/// One router advertisement: a router speaks to the guest, and only to it.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterAdvert {
    /// The Ethernet source: the door's own MAC (never the router's: a frame that left the
    /// door with the router's MAC would teach switches a lie).
    pub from: Mac,
    /// The Ethernet destination: the guest's MAC.
    pub to: Mac,
    /// The router's link-local address (the IPv6 source, as RFC 4861 requires).
    pub router: Ipv6Addr,
    /// The router's MAC (source link-layer address option): where the guest sends.
    pub router_mac: Mac,
    /// Router lifetime in seconds; 0: not a default router.
    pub lifetime: u16,
    /// M and O: addresses and other configuration by DHCPv6.
    pub managed: bool,
    pub mtu: Option<u32>,
    /// On-link prefixes (L=1, A=0: no autoconfiguration, the address comes by DHCPv6).
    pub onlink: Vec<Ipv6Net>,
    /// Route information options (RFC 4191): destinations through this router.
    pub routes: Vec<Ipv6Net>,
    /// Lifetime of the routes, resolvers and search list.
    pub option_lifetime: u32,
    /// Recursive DNS servers (RFC 8106) and the search list.
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
}

impl RouterAdvert {
    /// The whole Ethernet frame: to the guest's MAC, IPv6 to `ff02::1`, hop limit 255.
    pub fn frame(&self) -> Vec<u8> {
        let mut icmp = vec![ROUTER_ADVERTISEMENT, 0, 0, 0];
        // Current hop limit: unspecified (the guest keeps its own).
        icmp.push(0);
        // M, O; router preference medium.
        icmp.push(if self.managed { 0xc0 } else { 0 });
        icmp.extend(self.lifetime.to_be_bytes());
        // Reachable time and retransmission timer: unspecified.
        icmp.extend([0u8; 8]);
        // Source link-layer address.
        icmp.extend([1, 1]);
        icmp.extend(self.router_mac.0);
        if let Some(mtu) = self.mtu {
            icmp.extend([5, 1, 0, 0]);
            icmp.extend(mtu.to_be_bytes());
        }
        for prefix in &self.onlink {
            icmp.extend([3, 4, prefix.prefix, 0x80]);
            icmp.extend(INFINITE.to_be_bytes());
            icmp.extend(INFINITE.to_be_bytes());
            icmp.extend([0u8; 4]);
            icmp.extend(prefix.network().octets());
        }
        for route in &self.routes {
            // Length in units of 8 bytes: the whole prefix, or none for ::/0 (RFC 4191 2.3).
            let (len, bytes) = if route.prefix == 0 { (1, 0) } else { (3, 16) };
            icmp.extend([24, len, route.prefix, 0]);
            icmp.extend(self.option_lifetime.to_be_bytes());
            icmp.extend(&route.network().octets()[..bytes]);
        }
        if !self.dns.is_empty() {
            icmp.extend([25, 1 + 2 * self.dns.len() as u8, 0, 0]);
            icmp.extend(self.option_lifetime.to_be_bytes());
            for server in &self.dns {
                icmp.extend(server.octets());
            }
        }
        let names = dns_names(&self.search);
        if !names.is_empty() {
            let padded = (8 + names.len()).div_ceil(8) * 8;
            icmp.extend([31, (padded / 8) as u8, 0, 0]);
            icmp.extend(self.option_lifetime.to_be_bytes());
            icmp.extend(&names);
            icmp.resize(icmp.len() + padded - 8 - names.len(), 0);
        }
        ipv6_frame(
            self.to,
            self.from,
            255,
            self.router,
            ALL_NODES,
            PROTO_ICMPV6,
            icmp,
        )
    }
}

/// Names in DNS wire format, one after the other (RFC 1035 3.1); names with a label that
/// does not fit (empty, or over 63 bytes) are left out.
pub fn dns_names(names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for name in names {
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
            continue;
        }
        for label in labels {
            out.push(label.len() as u8);
            out.extend(label.as_bytes());
        }
        out.push(0);
    }
    out
}

/// An Ethernet frame carrying an IPv6 packet, with the upper-layer checksum filled in
/// (`payload` has its checksum field zeroed: bytes 2-3 for ICMPv6, 6-7 for UDP).
pub fn ipv6_frame(
    to: Mac,
    from: Mac,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    mut payload: Vec<u8>,
) -> Vec<u8> {
    let at = if next_header == PROTO_UDP { 6 } else { 2 };
    let sum = checksum(src, dst, next_header, &payload);
    payload[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut frame = Vec::with_capacity(ETH_LEN + IP6_LEN + payload.len());
    frame.extend(to.0);
    frame.extend(from.0);
    frame.extend(ETHERTYPE_IPV6.to_be_bytes());
    frame.extend([0x60, 0, 0, 0]);
    frame.extend((payload.len() as u16).to_be_bytes());
    frame.push(next_header);
    frame.push(hop_limit);
    frame.extend(src.octets());
    frame.extend(dst.octets());
    frame.extend(payload);
    frame
}

/// A UDP datagram from `src_port` to `dst_port`, its checksum left to `ipv6_frame`.
pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend(src_port.to_be_bytes());
    udp.extend(dst_port.to_be_bytes());
    udp.extend(((8 + payload.len()) as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    udp
}

/// The source port and payload of a UDP datagram to `port`, if `udp` is one.
pub fn udp_to(udp: &[u8], port: u16) -> Option<(u16, &[u8])> {
    let src = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dst = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    (dst == port && len >= 8).then(|| udp.get(8..len).map(|payload| (src, payload)))?
}

/// The upper-layer checksum over the IPv6 pseudo-header (RFC 8200 8.1) and `payload`.
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(payload.len() as u32).to_be_bytes());
    add(&[0, 0, 0, next_header]);
    add(payload);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let sum = !(sum as u16);
    // UDP sends a computed 0 as all ones (RFC 768); for ICMPv6 the two are the same value.
    if sum == 0 { 0xffff } else { sum }
}

/// A received IPv6 frame, its headers read: who sent it and what it carries. `None` for
/// anything else (another ethertype, extension headers, a short or inconsistent frame).
#[derive(Clone, Debug, PartialEq)]
pub struct Packet<'a> {
    pub from: Mac,
    pub to: Mac,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn parse(frame: &'a [u8]) -> Option<Packet<'a>> {
        if frame.len() < ETH_LEN + IP6_LEN
            || u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_IPV6
            || frame[ETH_LEN] >> 4 != 6
        {
            return None;
        }
        let ip = &frame[ETH_LEN..];
        let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let payload = ip.get(IP6_LEN..IP6_LEN + len)?;
        let addr = |at: usize| -> Ipv6Addr {
            let mut b = [0u8; 16];
            b.copy_from_slice(&ip[at..at + 16]);
            Ipv6Addr::from(b)
        };
        Some(Packet {
            to: Mac(frame[0..6].try_into().ok()?),
            from: Mac(frame[6..12].try_into().ok()?),
            next_header: ip[6],
            hop_limit: ip[7],
            src: addr(8),
            dst: addr(24),
            payload,
        })
    }

    /// Whether this is an ICMPv6 message of `kind` with a correct checksum.
    fn is_icmp(&self, kind: u8) -> bool {
        // Summed with its own checksum field, a correct message's complement is 0, which
        // `checksum` reports as 0xffff.
        self.next_header == PROTO_ICMPV6
            && self.payload.len() >= 4
            && self.payload[0] == kind
            && checksum(self.src, self.dst, PROTO_ICMPV6, self.payload) == 0xffff
    }

    /// A router solicitation (RFC 4861 6.1.1: hop limit 255, code 0).
    pub fn is_router_solicitation(&self) -> bool {
        self.is_icmp(ROUTER_SOLICITATION) && self.hop_limit == 255 && self.payload[1] == 0
    }
}

/// An echo request from `src` (a link-local address of the sender) to all nodes, in a frame
/// sent to one MAC only: the one node with that MAC answers from its own link-local address.
/// This is how vminit learns a gateway's link-local address from its MAC.
pub fn echo_probe(from: Mac, to: Mac, src: Ipv6Addr, id: u16) -> Vec<u8> {
    let mut icmp = vec![ECHO_REQUEST, 0, 0, 0];
    icmp.extend(id.to_be_bytes());
    icmp.extend(1u16.to_be_bytes());
    icmp.extend(b"vminit");
    ipv6_frame(to, from, 255, src, ALL_NODES, PROTO_ICMPV6, icmp)
}

/// The link-local address the node with `mac` answers `echo_probe(.., src, id)` from: the
/// source of its echo reply, or, when it does not know `src`'s MAC yet (a container's
/// link-local address is tentative for its first second), of the neighbour solicitation for
/// `src` it sends first.
pub fn echo_answer(frame: &[u8], mac: Mac, src: Ipv6Addr, id: u16) -> Option<Ipv6Addr> {
    let p = Packet::parse(frame)?;
    let reply =
        p.is_icmp(ECHO_REPLY) && p.payload.len() >= 8 && p.payload[4..6] == id.to_be_bytes();
    let asks_for_src = p.is_icmp(NEIGHBOUR_SOLICITATION)
        && p.hop_limit == 255
        && p.payload.len() >= 24
        && p.payload[8..24] == src.octets();
    (p.from == mac && (reply || asks_for_src) && crate::net::types::is_link_local6(p.src))
        .then_some(p.src)
}

/// A neighbour solicitation for `target` from `src`, whose MAC is `from` (the source
/// link-layer address option, left out from the unspecified address as RFC 4861 7.2.2
/// says), in a frame to `to`, to the IPv6 group `target`'s solicited-node address.
pub fn solicitation(from: Mac, to: Mac, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut payload = vec![NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    payload.extend(target.octets());
    if !src.is_unspecified() {
        payload.extend([OPT_SOURCE_LL, 1]);
        payload.extend(from.0);
    }
    ipv6_frame(
        to,
        from,
        255,
        src,
        solicited_node(target),
        PROTO_ICMPV6,
        payload,
    )
}

/// The solicited-node multicast address of `addr` (`ff02::1:ffXX:XXXX`, RFC 4291 2.7.1):
/// where a neighbour solicitation for it goes.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let t = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    )
}

/// The Ethernet multicast MAC of the IPv6 group `group` (`33:33` and its last four bytes).
pub fn multicast_mac(group: Ipv6Addr) -> Mac {
    let g = group.octets();
    Mac([0x33, 0x33, g[12], g[13], g[14], g[15]])
}

/// The neighbour advertisement that answers a solicitation for `target`, held by `from`,
/// from `asker` at `to`: solicited, overriding, with `from` as the target link-layer address
/// (RFC 4861 7.2.4).
pub fn advertisement(from: Mac, target: Ipv6Addr, to: Mac, asker: Ipv6Addr) -> Vec<u8> {
    let mut payload = vec![NEIGHBOUR_ADVERTISEMENT, 0, 0, 0, 0x60, 0, 0, 0];
    payload.extend(target.octets());
    payload.extend([OPT_TARGET_LL, 1]);
    payload.extend(from.0);
    ipv6_frame(to, from, 255, target, asker, PROTO_ICMPV6, payload)
}

/// The target of `p`, if it is a neighbour solicitation (hop limit 255, correct checksum)
/// from an address (not `::`: duplicate address detection is not a question to answer).
pub fn solicited_target(p: &Packet) -> Option<Ipv6Addr> {
    let target: [u8; 16] = p.payload.get(8..24)?.try_into().ok()?;
    (p.is_icmp(NEIGHBOUR_SOLICITATION) && p.hop_limit == 255 && !p.src.is_unspecified())
        .then_some(Ipv6Addr::from(target))
}

/// The MAC of the node that advertises `target` in `frame` (a neighbour advertisement with a
/// correct checksum and hop limit 255): the frame's Ethernet source.
pub fn advertiser_of(frame: &[u8], target: Ipv6Addr) -> Option<Mac> {
    Packet::parse(frame)
        .filter(|p| {
            p.is_icmp(NEIGHBOUR_ADVERTISEMENT)
                && p.hop_limit == 255
                && p.payload.get(8..24) == Some(&target.octets()[..])
        })
        .map(|p| p.from)
}

/// Whether `frame` is a neighbour advertisement from `mac` for `target` (with a correct
/// checksum and hop limit 255).
pub fn is_advertisement_of(frame: &[u8], mac: Mac, target: Ipv6Addr) -> bool {
    advertiser_of(frame, target) == Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::hex;

    fn docker_ra() -> RouterAdvert {
        RouterAdvert {
            from: Mac([0x0e, 0x1b, 0x92, 0x9a, 0x54, 0x2d]),
            to: Mac([0x02, 0x42, 0x0a, 0x3d, 0x00, 0x02]),
            router: "fe80::e865:f1ff:fe9d:409e".parse().unwrap(),
            router_mac: Mac([0x86, 0xa4, 0x22, 0x1a, 0xdf, 0xf7]),
            lifetime: 1800,
            managed: true,
            mtu: Some(1500),
            onlink: vec!["fd00:1::/64".parse().unwrap()],
            routes: vec![
                "fd00:99::/48".parse().unwrap(),
                "fd00:98::5/128".parse().unwrap(),
            ],
            option_lifetime: 1800,
            dns: vec!["fd00:1::53".parse().unwrap()],
            search: vec!["example.test".into(), "svc.cluster.local".into()],
        }
    }

    #[test]
    fn a_router_advertisement_is_the_frame_scapy_builds() {
        // Made by scapy 2.5 (python3-scapy): Ether(dst, src) / IPv6(src=router, dst="ff02::1",
        // hlim=255) / ICMPv6ND_RA(M=1, O=1, routerlifetime=1800) / ICMPv6NDOptSrcLLAddr /
        // ICMPv6NDOptMTU / ICMPv6NDOptPrefixInfo(L=1, A=0, lifetimes infinite) /
        // ICMPv6NDOptRouteInfo x2 / ICMPv6NDOptRDNSS / ICMPv6NDOptDNSSL, bytes(...).hex().
        let scapy = hex(SCAPY_RA);
        assert_eq!(docker_ra().frame(), scapy);
    }

    #[test]
    fn a_router_solicitation_from_the_guest_is_recognised_and_a_damaged_one_is_not() {
        // Made by scapy: Ether / IPv6(hlim=255) / ICMPv6ND_RS / ICMPv6NDOptSrcLLAddr.
        let rs = hex(
            "33330000000202420a3d000286dd6000000000103afffe8000000000000000420afffe3d0002ff02000000
             00000000000000000000028500662c00000000010102420a3d0002",
        );
        let p = Packet::parse(&rs).unwrap();
        assert_eq!(p.from, Mac([0x02, 0x42, 0x0a, 0x3d, 0, 2]));
        assert!(p.is_router_solicitation());
        let mut damaged = rs.clone();
        damaged[60] ^= 1;
        assert!(!Packet::parse(&damaged).unwrap().is_router_solicitation());
        let mut forwarded = rs;
        forwarded[21] = 64;
        assert!(!Packet::parse(&forwarded).unwrap().is_router_solicitation());
    }

    #[test]
    fn an_echo_probe_answer_gives_the_link_local_address_of_that_mac_only() {
        let gw = Mac([0x86, 0xa4, 0x22, 0x1a, 0xdf, 0xf7]);
        let me = Mac([0x02, 0x42, 0x0a, 0x3d, 0, 2]);
        let probe = echo_probe(me, gw, "fe80::42:aff:fe3d:2".parse().unwrap(), 0x1234);
        let p = Packet::parse(&probe).unwrap();
        assert_eq!((p.to, p.dst, p.hop_limit), (gw, ALL_NODES, 255));
        assert!(p.is_icmp(ECHO_REQUEST));
        // The gateway's answer: the probe, turned round.
        let gw_ll: Ipv6Addr = "fe80::e865:f1ff:fe9d:409e".parse().unwrap();
        let mut icmp = p.payload.to_vec();
        icmp[0] = ECHO_REPLY;
        icmp[2] = 0;
        icmp[3] = 0;
        let reply = ipv6_frame(me, gw, 64, gw_ll, p.src, PROTO_ICMPV6, icmp);
        assert_eq!(echo_answer(&reply, gw, p.src, 0x1234), Some(gw_ll));
        assert_eq!(
            echo_answer(&reply, gw, p.src, 0x1235),
            None,
            "another probe's"
        );
        assert_eq!(
            echo_answer(&reply, me, p.src, 0x1234),
            None,
            "another MAC's"
        );
        // Before it can answer, the gateway asks who has our (still tentative) address.
        let mut ns = vec![NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
        ns.extend(p.src.octets());
        ns.extend([1, 1]);
        ns.extend(gw.0);
        let solicited: Ipv6Addr = "ff02::1:ff3d:2".parse().unwrap();
        let ns_frame = ipv6_frame(
            Mac([0x33, 0x33, 0xff, 0x3d, 0, 2]),
            gw,
            255,
            gw_ll,
            solicited,
            PROTO_ICMPV6,
            ns,
        );
        assert_eq!(echo_answer(&ns_frame, gw, p.src, 0x1234), Some(gw_ll));
        let other: Ipv6Addr = "fe80::9".parse().unwrap();
        assert_eq!(
            echo_answer(&ns_frame, gw, other, 0x1234),
            None,
            "asks for another address"
        );
    }

    #[test]
    fn dns_names_are_in_wire_format_and_bad_ones_are_left_out() {
        assert_eq!(
            dns_names(&["a.bc".into(), "x..y".into(), "d.".into()]),
            b"\x01a\x02bc\x00\x01d\x00"
        );
    }

    /// See `a_router_advertisement_is_the_frame_scapy_builds`.
    const SCAPY_RA: &str = "
        02420a3d00020e1b929a542d86dd6000000000b83afffe80000000000000e865f1fffe9d409eff020000000000000000
        000000000001860083f000c007080000000000000000010186a4221adff705010000000005dc03044080ffffffffffff
        ffff00000000fd0000010000000000000000000000001803300000000708fd0000990000000000000000000000001803
        800000000708fd0000980000000000000000000000051903000000000708fd0000010000000000000000000000531f06
        000000000708076578616d706c650474657374000373766307636c7573746572056c6f63616c0000000000000000";

    #[test]
    fn the_health_question_names_its_asker_and_the_guests_advert_is_recognised() {
        let (door, guest) = (Mac([2, 0, 0, 0, 0, 3]), Mac([2, 0x42, 10, 1, 0, 2]));
        let target: Ipv6Addr = "fd00:1::2".parse().unwrap();
        let asker = door.link_local();
        let question = solicitation(door, guest, asker, target);
        let p = Packet::parse(&question).unwrap();
        assert_eq!((p.to, p.from, p.hop_limit), (guest, door, 255));
        // Never from `::`: a guest whose address is still tentative would take that for
        // another node's duplicate address detection and give the address up.
        assert_eq!(p.src, asker);
        assert_eq!(
            p.dst,
            "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap(),
            "solicited-node"
        );
        assert!(p.is_icmp(NEIGHBOUR_SOLICITATION));
        assert_eq!(
            &p.payload[24..32],
            &[OPT_SOURCE_LL, 1, 2, 0, 0, 0, 0, 3],
            "the asker's MAC, where the answer goes"
        );
        // What Linux answers: solicited, to the asker at its MAC.
        let mut na = vec![NEIGHBOUR_ADVERTISEMENT, 0, 0, 0, 0x60, 0, 0, 0];
        na.extend(target.octets());
        na.extend([2, 1]);
        na.extend(guest.0);
        let link_local = guest.link_local();
        let answer = ipv6_frame(
            door,
            guest,
            255,
            link_local,
            asker,
            PROTO_ICMPV6,
            na.clone(),
        );
        assert!(is_advertisement_of(&answer, guest, target));
        assert!(!is_advertisement_of(&answer, door, target), "another MAC");
        let other: Ipv6Addr = "fd00:1::3".parse().unwrap();
        assert!(
            !is_advertisement_of(&answer, guest, other),
            "another target"
        );
        let forwarded = ipv6_frame(
            Mac([0x33, 0x33, 0, 0, 0, 1]),
            guest,
            64,
            link_local,
            ALL_NODES,
            PROTO_ICMPV6,
            na,
        );
        assert!(
            !is_advertisement_of(&forwarded, guest, target),
            "hop limit 255 only"
        );
    }
    #[test]
    fn the_gateway_is_asked_from_an_address_of_our_own_and_its_advert_names_its_mac() {
        let (own, gateway_mac) = (Mac([2, 9, 8, 7, 6, 5]), Mac([2, 0x42, 0xfe, 0, 0, 1]));
        let src = own.link_local();
        let target: Ipv6Addr = "fd00:1::1".parse().unwrap();
        let probe = solicitation(own, multicast_mac(solicited_node(target)), src, target);
        let p = Packet::parse(&probe).unwrap();
        assert_eq!(p.to, Mac([0x33, 0x33, 0xff, 0, 0, 1]), "the group's MAC");
        assert_eq!(p.dst, "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap());
        // Never from the unspecified address: a tentative gateway would give its address up.
        assert_eq!((p.src, p.from, p.hop_limit), (src, own, 255));
        assert!(p.is_icmp(NEIGHBOUR_SOLICITATION));
        assert_eq!(&p.payload[8..24], &target.octets()[..]);
        // The source link-layer address option: the gateway answers to it directly.
        assert_eq!(&p.payload[24..], &[1, 1, 2, 9, 8, 7, 6, 5][..]);
        // From the unspecified address, no such option (RFC 4861 7.2.2).
        let dad = solicitation(own, gateway_mac, Ipv6Addr::UNSPECIFIED, target);
        assert_eq!(Packet::parse(&dad).unwrap().payload.len(), 24);

        // What Linux answers: a solicited advertisement from the target address, to us.
        let mut na = vec![NEIGHBOUR_ADVERTISEMENT, 0, 0, 0, 0x60, 0, 0, 0];
        na.extend(target.octets());
        na.extend([2, 1]);
        na.extend(gateway_mac.0);
        let answer = ipv6_frame(own, gateway_mac, 255, target, src, PROTO_ICMPV6, na.clone());
        assert_eq!(advertiser_of(&answer, target), Some(gateway_mac));
        let other: Ipv6Addr = "fd00:1::2".parse().unwrap();
        assert_eq!(advertiser_of(&answer, other), None, "another target");
        let mut bad = answer.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(advertiser_of(&bad, target), None, "a wrong checksum");
        assert_eq!(advertiser_of(&probe, target), None, "a solicitation");
    }
}
