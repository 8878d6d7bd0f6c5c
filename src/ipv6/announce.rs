//! What vminit tells the guest about IPv6 on each door, and when (pure): router
//! advertisements that speak for the network's real gateways, and DHCPv6 answers.
//!
//! Every frame goes to the guest's MAC only, from the door: a bridge-mode macvlan delivers a
//! frame for a sibling's MAC to that sibling and to nothing else, so no other host on the
//! network receives it. A router advertisement carries the real gateway's link-local address
//! (the IPv6 source) and MAC (the source link-layer option): the guest's default route goes
//! to the gateway itself, never through the container. The Ethernet source is the door's own
//! MAC, so that no switch could learn the gateway's MAC at the container's port.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use crate::ipv6::dhcp6::{self, Lease};
use crate::ipv6::ndp::{self, PROTO_UDP, Packet, RouterAdvert};
use crate::net::types::{Ipv6Net, Mac};
use crate::takeover::plan6::Guest6;
use crate::vm::seed::{SeedNic, SeedNic6, SeedRoute6};

/// A gateway's link-local address and MAC, learned on its container NIC (`gateway6`).
#[derive(Clone, Debug, PartialEq)]
pub struct Learned {
    /// The container NIC it was learned on.
    pub lower: String,
    /// The gateway as the container's routes name it (global or link-local).
    pub gateway: Ipv6Addr,
    pub link_local: Ipv6Addr,
    pub mac: Mac,
}

/// Router lifetime of the default router (RFC 4861's default: 3 x the longest interval).
const ROUTER_LIFETIME: u16 = 1800;
/// Unsolicited advertisements: a few soon after the start, then every 200 to 600 s.
const FIRST_INTERVALS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
const MIN_INTERVAL: u64 = 200;
const MAX_INTERVAL: u64 = 600;
/// Answers to router solicitations are at least this far apart (a guest in a loop must not
/// make vminit flood it).
const MIN_ANSWER_GAP: Duration = Duration::from_millis(500);

/// The resolvers and search list announced on a NIC.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dns6 {
    pub servers: Vec<Ipv6Addr>,
    pub search: Vec<String>,
}

impl Dns6 {
    /// The IPv6 resolvers of a resolv.conf text, loopback ones left out (the guest cannot
    /// reach the container's loopback), and its search list.
    pub fn from_resolv_conf(text: &str) -> Dns6 {
        let mut dns = Dns6::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(Ok(ip)) = words.next().map(str::parse::<Ipv6Addr>)
                        && !ip.is_loopback()
                        && !ip.is_unspecified()
                        && !dns.servers.contains(&ip)
                    {
                        dns.servers.push(ip);
                    }
                }
                Some("search") => dns.search = words.map(str::to_string).collect(),
                _ => {}
            }
        }
        dns
    }

    /// What `guest`'s NIC announces of these, by each means: its advertisements (RDNSS,
    /// DNSSL) carry what `for_nic` gives it; its DHCPv6 answers carry the same, or nothing
    /// when DHCPv4 already gives the guest a resolver (`dns4.gives_resolvers`). A client
    /// that writes `/etc/resolv.conf` from its last lease alone (isc-dhcp-client's
    /// dhclient-script under Debian's ifupdown) would otherwise replace DHCPv4's resolvers,
    /// the door among them, with DHCPv6's; a DHCPv6 lease without resolvers or search list
    /// leaves the file as it is. Clients that read advertisements (systemd-networkd,
    /// NetworkManager, Windows) still get the IPv6 resolvers by RDNSS. Without a DHCPv4
    /// resolver (an IPv6-only guest, a container with only IPv6 resolvers), DHCPv6 carries
    /// them too, for clients that read no RDNSS.
    ///
    /// `door`: the door's own link-local address, where the door has IPv6 (dnsmasq answers
    /// DNS there) and this NIC is the one that announces the door (`door_nic`). When the guest
    /// cannot ask the door over IPv4 (`dns4.door_over_ipv6`), it comes first, by both means,
    /// with the search list: it is the guest's only way to the container's loopback
    /// resolvers (Docker's, which knows the container names).
    pub fn announced(
        &self,
        guest: &Guest6,
        router: bool,
        dns4: Dns4,
        door: Option<Ipv6Addr>,
    ) -> NicDns6 {
        let mut advert = self.for_nic(guest, router);
        if let Some(door) = door.filter(|_| dns4.door_over_ipv6) {
            advert.servers.insert(0, door);
            advert.search.clone_from(&self.search);
        }
        let dhcp6 = if dns4.gives_resolvers {
            Dns6::default()
        } else {
            advert.clone()
        };
        NicDns6 { advert, dhcp6 }
    }

    /// The resolvers `guest` reaches on its own link or through its routes; the default-route
    /// NIC (`router`) also gets those no NIC's prefix holds, and the search list.
    pub fn for_nic(&self, guest: &Guest6, router: bool) -> Dns6 {
        let reaches = |ip: &Ipv6Addr| {
            guest.onlink.iter().any(|p| p.contains(*ip))
                || guest
                    .gateways
                    .iter()
                    .flat_map(|g| &g.routes)
                    .any(|p| p.contains(*ip))
        };
        let servers: Vec<Ipv6Addr> = self
            .servers
            .iter()
            .filter(|ip| reaches(ip) || router)
            .copied()
            .collect();
        // As for IPv4 (see `dns`): the search list only on the primary NIC.
        Dns6 {
            search: if router && !servers.is_empty() {
                self.search.clone()
            } else {
                Vec::new()
            },
            servers,
        }
    }
}

/// What DNS over IPv4 leaves to the IPv6 announcements (`dhcp::dns::Dns::left_to_ipv6`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dns4 {
    /// DHCPv4 gives the guest a resolver, on some NIC.
    pub gives_resolvers: bool,
    /// The door forwards to the container's loopback resolvers, but no guest NIC has IPv4 to
    /// ask it by: the door is announced over IPv6 instead, at its link-local address.
    pub door_over_ipv6: bool,
}

/// The guest NIC (by its container NIC's name) whose announcements carry the door resolver
/// when the guest asks it over IPv6: the one with the IPv6 default route (which also gets the
/// search list), else the first.
pub fn door_nic(guests: &[Guest6]) -> Option<&str> {
    router_nic(guests).or_else(|| guests.first().map(|g| g.lower.as_str()))
}

/// The resolvers and search list one NIC announces, by each means (`Dns6::announced`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NicDns6 {
    /// In router advertisements (RDNSS, DNSSL).
    pub advert: Dns6,
    /// In DHCPv6 answers (options 23, 24).
    pub dhcp6: Dns6,
}

/// The guest NIC (by its container NIC's name) whose advertisements give the guest its IPv6
/// default route; it also announces the resolvers no NIC's prefix holds, and the search list.
pub fn router_nic(guests: &[Guest6]) -> Option<&str> {
    guests
        .iter()
        .find(|g| g.gateways.iter().any(|gw| gw.default))
        .map(|g| g.lower.as_str())
}

/// Every resolver the advertisements announce to the guest, on any NIC.
pub fn announced_servers(guests: &[Guest6], dns: &Dns6) -> Vec<Ipv6Addr> {
    let router = router_nic(guests);
    guests
        .iter()
        .flat_map(|g| dns.for_nic(g, router == Some(g.lower.as_str())).servers)
        .collect()
}

/// Adds to the cloud-init seed's NICs (matched by their container NIC's name) what the
/// announcements give each in IPv6: its address and prefix, the default route on the router
/// NIC only, its other on-link prefixes and routes, its resolvers and search list.
pub fn add_seed6(nics: &mut [SeedNic], guests: &[Guest6], dns: &Dns6) {
    let router = router_nic(guests);
    for guest in guests {
        let Some(nic) = nics.iter_mut().find(|n| n.name == guest.lower) else {
            continue;
        };
        let own = Ipv6Net::new(guest.addr.network(), guest.addr.prefix);
        let mut routes: Vec<SeedRoute6> = guest
            .onlink
            .iter()
            .filter(|p| **p != own)
            .map(|p| SeedRoute6 {
                network: p.network(),
                prefix: p.prefix,
                gateway: None,
            })
            .collect();
        for g in &guest.gateways {
            routes.extend(g.routes.iter().map(|p| SeedRoute6 {
                network: p.network(),
                prefix: p.prefix,
                gateway: Some(g.gateway),
            }));
        }
        let dns = dns.for_nic(guest, router == Some(guest.lower.as_str()));
        nic.v6 = Some(SeedNic6 {
            addr: guest.addr.addr,
            prefix: guest.addr.prefix,
            gateway: guest.gateways.iter().find(|g| g.default).map(|g| g.gateway),
            routes,
            dns: dns.servers,
            search: dns.search,
        });
    }
}

/// The door's own link-layer and link-local addresses, read after the takeover.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Door {
    pub mac: Mac,
    pub link_local: Ipv6Addr,
}

/// Everything vminit says on one door, and when it last said it.
#[derive(Clone, Debug)]
pub struct Announcer {
    /// The container NIC, for the log.
    pub lower: String,
    pub door_name: String,
    pub guest: Mac,
    /// The guest NIC's MTU: no frame to it is larger.
    mtu: u32,
    door: Door,
    adverts: Vec<RouterAdvert>,
    lease: Lease,
    /// When the next unsolicited advertisement is due.
    next: Instant,
    sent: usize,
    last_answer: Option<Instant>,
    /// A solicitation arrived too soon after the last answer: answer at `last + gap`.
    pending_answer: bool,
    /// The guest asked for a router at least once (the first answer is logged).
    solicited: bool,
    /// vminit answers for the door's link-local address itself (the door has no IPv6 of its
    /// own, as under Docker): its neighbour solicitations, and DNS queries to it, which
    /// `announcer` relays to the door resolver.
    relays_dns: bool,
}

/// The DNS port.
const DNS_PORT: u16 = 53;

/// A DNS query the guest sent to the door's link-local address (UDP), to be relayed.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsQuery {
    /// The guest's address and port it came from, where the answer goes.
    pub src: Ipv6Addr,
    pub port: u16,
    pub message: Vec<u8>,
}

/// A frame to send, and what to log about it (at info; `None`: nothing worth it).
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub frame: Vec<u8>,
    pub note: Option<String>,
}

impl Announcer {
    /// What the guest of `guest` is told on its door. `learned` holds the gateways found
    /// on the container NICs; one that is missing was not found, and the guest gets no route
    /// through it (`setup` said so). With no gateway at all, the door itself advertises the
    /// prefix, as a router that is nobody's default.
    pub fn new(
        guest: &Guest6,
        learned: &[Learned],
        door: Door,
        dns: &NicDns6,
        now: Instant,
    ) -> Announcer {
        let mut adverts = Vec::new();
        for g in &guest.gateways {
            let Some(found) = learned
                .iter()
                .find(|l| l.lower == guest.lower && l.gateway == g.gateway)
            else {
                continue;
            };
            adverts.push(RouterAdvert {
                from: door.mac,
                to: guest.mac,
                router: found.link_local,
                router_mac: found.mac,
                lifetime: if g.default { ROUTER_LIFETIME } else { 0 },
                managed: true,
                mtu: Some(guest.mtu),
                onlink: Vec::new(),
                routes: g.routes.clone(),
                option_lifetime: u32::from(ROUTER_LIFETIME),
                dns: Vec::new(),
                search: Vec::new(),
            });
        }
        if adverts.is_empty() {
            adverts.push(RouterAdvert {
                from: door.mac,
                to: guest.mac,
                router: door.link_local,
                router_mac: door.mac,
                lifetime: 0,
                managed: true,
                mtu: Some(guest.mtu),
                onlink: Vec::new(),
                routes: Vec::new(),
                option_lifetime: u32::from(ROUTER_LIFETIME),
                dns: Vec::new(),
                search: Vec::new(),
            });
        }
        // The prefixes and resolvers go once, with the first router.
        adverts[0].onlink = guest.onlink.clone();
        adverts[0].dns = dns.advert.servers.clone();
        adverts[0].search = dns.advert.search.clone();
        Announcer {
            lower: guest.lower.clone(),
            door_name: guest.door.clone(),
            guest: guest.mac,
            mtu: guest.mtu,
            door,
            adverts,
            lease: Lease {
                server_id: Lease::duid_ll(door.mac),
                addr: guest.addr.addr,
                dns: dns.dhcp6.servers.clone(),
                search: dns.dhcp6.search.clone(),
            },
            next: now,
            sent: 0,
            last_answer: None,
            pending_answer: false,
            solicited: false,
            relays_dns: false,
        }
    }

    /// Makes vminit answer for the door's link-local address (see `relays_dns`).
    pub fn relay_dns(&mut self) {
        self.relays_dns = true;
    }

    /// The DNS query in `frame`, if it is one from the guest to the door's link-local
    /// address that vminit relays.
    pub fn dns_query(&self, frame: &[u8]) -> Option<DnsQuery> {
        let p = Packet::parse(frame)?;
        if !self.relays_dns
            || p.from != self.guest
            || p.dst != self.door.link_local
            || p.next_header != PROTO_UDP
        {
            return None;
        }
        let (port, message) = ndp::udp_to(p.payload, DNS_PORT)?;
        Some(DnsQuery {
            src: p.src,
            port,
            message: message.to_vec(),
        })
    }

    /// The frame that gives the guest `message`, the answer to a query from `src`:`port`;
    /// `None` when it would not fit the guest's MTU (the query goes unanswered).
    pub fn dns_answer(&self, src: Ipv6Addr, port: u16, message: &[u8]) -> Option<Vec<u8>> {
        (ndp::IP6_LEN + 8 + message.len() <= self.mtu as usize).then(|| {
            ndp::ipv6_frame(
                self.guest,
                self.door.mac,
                64,
                self.door.link_local,
                src,
                PROTO_UDP,
                ndp::udp(DNS_PORT, port, message),
            )
        })
    }

    /// The router advertisements as they are sent.
    #[cfg(test)]
    pub fn adverts(&self) -> &[RouterAdvert] {
        &self.adverts
    }

    /// When `due` has something to send at the latest.
    pub fn next_wakeup(&self) -> Instant {
        match (self.pending_answer, self.last_answer) {
            (true, Some(last)) => self.next.min(last + MIN_ANSWER_GAP),
            _ => self.next,
        }
    }

    /// The advertisements due at `now` (unsolicited, or a deferred answer); `random` spreads
    /// the long intervals as RFC 4861 asks.
    pub fn due(&mut self, now: Instant, random: u32) -> Vec<Outgoing> {
        let answer_due = self.pending_answer
            && self
                .last_answer
                .is_none_or(|last| now >= last + MIN_ANSWER_GAP);
        if now < self.next && !answer_due {
            return Vec::new();
        }
        if answer_due {
            self.pending_answer = false;
            self.last_answer = Some(now);
        }
        if now >= self.next {
            let interval = match FIRST_INTERVALS.get(self.sent) {
                Some(first) => *first,
                None => Duration::from_secs(
                    MIN_INTERVAL + u64::from(random) % (MAX_INTERVAL - MIN_INTERVAL),
                ),
            };
            self.sent += 1;
            self.next = now + interval;
        }
        self.frames(None)
    }

    /// What to send in answer to `frame`, received on the door at `now`: advertisements for
    /// a router solicitation, a DHCPv6 answer for a DHCPv6 message. Nothing for anything
    /// else, and nothing for anyone but the guest.
    pub fn on_frame(&mut self, frame: &[u8], now: Instant) -> Vec<Outgoing> {
        let Some(p) = Packet::parse(frame) else {
            return Vec::new();
        };
        if p.from != self.guest {
            return Vec::new();
        }
        if self.relays_dns && ndp::solicited_target(&p) == Some(self.door.link_local) {
            let frame = ndp::advertisement(self.door.mac, self.door.link_local, p.from, p.src);
            return vec![Outgoing { frame, note: None }];
        }
        if p.is_router_solicitation() {
            if self
                .last_answer
                .is_some_and(|last| now < last + MIN_ANSWER_GAP)
            {
                self.pending_answer = true;
                return Vec::new();
            }
            self.last_answer = Some(now);
            let first = !std::mem::replace(&mut self.solicited, true);
            return self.frames(first.then(|| self.describe()));
        }
        if p.next_header == PROTO_UDP
            && let Some(message) = dhcp6::from_client(p.payload)
            && let Some(answer) = dhcp6::answer(&self.lease, message)
        {
            let frame = ndp::ipv6_frame(
                self.guest,
                self.door.mac,
                255,
                self.door.link_local,
                p.src,
                PROTO_UDP,
                dhcp6::udp_to_client(&answer.message),
            );
            return vec![Outgoing {
                frame,
                note: Some(format!("{}: DHCPv6: {}", self.lower, answer.note)),
            }];
        }
        Vec::new()
    }

    /// Every advertisement as a frame; the first carries `note`.
    fn frames(&self, note: Option<String>) -> Vec<Outgoing> {
        let mut note = note;
        self.adverts
            .iter()
            .map(|ra| Outgoing {
                frame: ra.frame(),
                note: note.take(),
            })
            .collect()
    }

    /// One line about what the guest is told, for the log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for ra in &self.adverts {
            let mut what = format!("router {} ({})", ra.router, ra.router_mac);
            if ra.lifetime > 0 {
                what += ": default route";
            }
            if !ra.routes.is_empty() {
                let routes: Vec<String> = ra.routes.iter().map(Ipv6Net::to_string).collect();
                what += &format!(", routes {}", routes.join(" "));
            }
            if !ra.onlink.is_empty() {
                let prefixes: Vec<String> = ra.onlink.iter().map(Ipv6Net::to_string).collect();
                what += &format!(", on-link {}", prefixes.join(" "));
            }
            parts.push(what);
        }
        let door_dns = if self.adverts[0].dns.contains(&self.door.link_local) {
            format!("; DNS at the door {}", self.door.link_local)
        } else {
            String::new()
        };
        format!(
            "{}: advertising to the guest ({}): {}; DHCPv6 address {}{door_dns}",
            self.lower,
            self.guest,
            parts.join("; "),
            self.lease.addr
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::takeover::plan6::GatewayRoutes;

    const GUEST: Mac = Mac([0x02, 0x42, 0x0a, 0x3d, 0, 2]);
    const DOOR: Door = Door {
        mac: Mac([0x0e, 0x1b, 0x92, 0x9a, 0x54, 0x2d]),
        link_local: Ipv6Addr::new(0xfe80, 0, 0, 0, 0x0c1b, 0x92ff, 0xfe9a, 0x542d),
    };
    const GW_MAC: Mac = Mac([0x86, 0xa4, 0x22, 0x1a, 0xdf, 0xf7]);

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn docker_guest() -> Guest6 {
        Guest6 {
            lower: "eth0".into(),
            door: "vmlink0".into(),
            mac: GUEST,
            mtu: 1500,
            addr: "fd00:1::2/64".parse().unwrap(),
            onlink: vec!["fd00:1::/64".parse().unwrap()],
            gateways: vec![GatewayRoutes {
                gateway: ip("fd00:1::1"),
                default: true,
                routes: vec![],
            }],
            door_ipv6: true,
        }
    }

    fn learned() -> Vec<Learned> {
        vec![Learned {
            lower: "eth0".into(),
            gateway: ip("fd00:1::1"),
            link_local: ip("fe80::e865:f1ff:fe9d:409e"),
            mac: GW_MAC,
        }]
    }

    /// The guest's router solicitation (made by scapy, as in `ndp`'s tests).
    fn solicitation() -> Vec<u8> {
        let mut icmp = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        icmp.extend(GUEST.0);
        ndp::ipv6_frame(
            Mac([0x33, 0x33, 0, 0, 0, 2]),
            GUEST,
            255,
            GUEST.link_local(),
            ip("ff02::2"),
            ndp::PROTO_ICMPV6,
            icmp,
        )
    }

    #[test]
    fn the_default_router_is_the_real_gateway_with_its_mac_and_the_frame_goes_to_the_guest_only() {
        let t0 = Instant::now();
        let mut a = Announcer::new(&docker_guest(), &learned(), DOOR, &NicDns6::default(), t0);
        let out = a.on_frame(&solicitation(), t0);
        assert_eq!(out.len(), 1);
        let p = Packet::parse(&out[0].frame).unwrap();
        assert_eq!(
            (p.to, p.from),
            (GUEST, DOOR.mac),
            "to the guest, from the door"
        );
        assert_eq!(p.src, ip("fe80::e865:f1ff:fe9d:409e"), "the gateway speaks");
        assert_eq!((p.dst, p.hop_limit), (ndp::ALL_NODES, 255));
        let ra = &a.adverts()[0];
        assert_eq!(
            (ra.router_mac, ra.lifetime, ra.managed),
            (GW_MAC, 1800, true)
        );
        assert_eq!(ra.onlink, ["fd00:1::/64".parse().unwrap()]);
        assert!(out[0].note.as_deref().unwrap().contains("default route"));
    }

    #[test]
    fn frames_from_any_other_mac_get_no_answer() {
        let t0 = Instant::now();
        let mut a = Announcer::new(&docker_guest(), &learned(), DOOR, &NicDns6::default(), t0);
        let mut other = solicitation();
        other[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        assert!(a.on_frame(&other, t0).is_empty());
        assert!(a.on_frame(b"short", t0).is_empty());
    }

    #[test]
    fn a_gateway_that_was_not_found_gives_no_route_and_the_door_still_advertises_the_prefix() {
        let t0 = Instant::now();
        let a = Announcer::new(&docker_guest(), &[], DOOR, &NicDns6::default(), t0);
        let ra = &a.adverts()[0];
        assert_eq!(
            (ra.router, ra.router_mac, ra.lifetime),
            (DOOR.link_local, DOOR.mac, 0)
        );
        assert_eq!(ra.onlink, ["fd00:1::/64".parse().unwrap()]);
    }

    #[test]
    fn unsolicited_advertisements_come_soon_then_rarely_and_answers_are_spaced() {
        let t0 = Instant::now();
        let mut a = Announcer::new(&docker_guest(), &learned(), DOOR, &NicDns6::default(), t0);
        assert_eq!(a.due(t0, 0).len(), 1, "at once");
        assert!(a.due(t0 + Duration::from_secs(1), 0).is_empty());
        assert_eq!(a.next_wakeup(), t0 + Duration::from_secs(2));
        let mut t = t0;
        for _ in 0..3 {
            t = a.next_wakeup();
            assert_eq!(a.due(t, 7).len(), 1);
        }
        assert_eq!(a.next_wakeup(), t + Duration::from_secs(207));
        // Two solicitations 0.1 s apart: one answer now, the second 0.5 s after the first.
        assert_eq!(a.on_frame(&solicitation(), t).len(), 1);
        let soon = t + Duration::from_millis(100);
        assert!(a.on_frame(&solicitation(), soon).is_empty());
        assert_eq!(a.next_wakeup(), t + MIN_ANSWER_GAP);
        assert_eq!(a.due(t + MIN_ANSWER_GAP, 0).len(), 1);
        assert_eq!(a.next_wakeup(), t + Duration::from_secs(207));
    }

    /// The guest's DHCPv6 Solicit for one address (IA_NA), as a frame on the door.
    fn dhcp6_solicit() -> Vec<u8> {
        let mut solicit = vec![1, 0x12, 0x34, 0x56, 0, 1, 0, 10, 0, 3, 0, 1];
        solicit.extend(GUEST.0);
        solicit.extend([0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut udp = vec![2, 0x22, 2, 0x23];
        udp.extend(((8 + solicit.len()) as u16).to_be_bytes());
        udp.extend([0, 0]);
        udp.extend(&solicit);
        ndp::ipv6_frame(
            ndp::DHCP6_SERVERS_MAC,
            GUEST,
            1,
            GUEST.link_local(),
            ip("ff02::1:2"),
            PROTO_UDP,
            udp,
        )
    }

    /// The codes of a DHCPv6 message's top-level options (the UDP payload after its header).
    fn dhcp6_option_codes(udp: &[u8]) -> Vec<u16> {
        let mut codes = Vec::new();
        let mut rest = &udp[8 + 4..];
        while rest.len() >= 4 {
            codes.push(u16::from_be_bytes([rest[0], rest[1]]));
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            rest = &rest[4 + len..];
        }
        codes
    }

    fn resolver_and_search() -> Dns6 {
        Dns6 {
            servers: vec![ip("fd00:1::53")],
            search: vec!["example.test".into()],
        }
    }

    #[test]
    fn a_dhcpv6_solicit_is_answered_from_the_doors_link_local_address_to_the_guest() {
        let t0 = Instant::now();
        let dns = resolver_and_search().announced(&docker_guest(), true, Dns4::default(), None);
        let mut a = Announcer::new(&docker_guest(), &learned(), DOOR, &dns, t0);
        let out = a.on_frame(&dhcp6_solicit(), t0);
        assert_eq!(out.len(), 1);
        let p = Packet::parse(&out[0].frame).unwrap();
        assert_eq!(
            (p.to, p.from, p.src, p.dst),
            (GUEST, DOOR.mac, DOOR.link_local, GUEST.link_local())
        );
        assert_eq!(ndp::checksum(p.src, p.dst, PROTO_UDP, p.payload), 0xffff);
        assert_eq!(p.payload[8], 2, "an Advertise");
        assert_eq!(
            out[0].note.as_deref(),
            Some("eth0: DHCPv6: offered fd00:1::2")
        );
        assert_eq!(a.adverts()[0].dns, [ip("fd00:1::53")]);
        let codes = dhcp6_option_codes(p.payload);
        assert!(codes.contains(&23) && codes.contains(&24), "{codes:?}");
    }

    #[test]
    fn when_dhcpv4_gives_the_guest_a_resolver_ipv6_resolvers_go_by_rdnss_only() {
        // dhclient-script would replace DHCPv4's resolv.conf (the door) with DHCPv6's.
        let t0 = Instant::now();
        let dns4 = Dns4 {
            gives_resolvers: true,
            door_over_ipv6: false,
        };
        // The door's address, given by a door with IPv6, is not announced while the guest
        // asks the door over IPv4.
        let dns =
            resolver_and_search().announced(&docker_guest(), true, dns4, Some(DOOR.link_local));
        assert_eq!(dns.dhcp6, Dns6::default());
        let mut a = Announcer::new(&docker_guest(), &learned(), DOOR, &dns, t0);
        assert_eq!(a.adverts()[0].dns, [ip("fd00:1::53")]);
        assert_eq!(a.adverts()[0].search, ["example.test"]);
        let out = a.on_frame(&dhcp6_solicit(), t0);
        let p = Packet::parse(&out[0].frame).unwrap();
        let codes = dhcp6_option_codes(p.payload);
        assert!(codes.contains(&3), "the address still: {codes:?}");
        assert!(!codes.contains(&23) && !codes.contains(&24), "{codes:?}");
    }

    #[test]
    fn without_ipv4_the_door_nic_announces_the_doors_link_local_address_first_by_both_means() {
        let t0 = Instant::now();
        let dns4 = Dns4 {
            gives_resolvers: false,
            door_over_ipv6: true,
        };
        let dns =
            resolver_and_search().announced(&docker_guest(), true, dns4, Some(DOOR.link_local));
        let both = Dns6 {
            servers: vec![DOOR.link_local, ip("fd00:1::53")],
            search: vec!["example.test".into()],
        };
        assert_eq!((&dns.advert, &dns.dhcp6), (&both, &both));
        let mut a = Announcer::new(&docker_guest(), &learned(), DOOR, &dns, t0);
        assert_eq!(a.adverts()[0].dns, both.servers);
        assert!(
            a.describe()
                .ends_with(&format!("; DNS at the door {}", DOOR.link_local))
        );
        let out = a.on_frame(&dhcp6_solicit(), t0);
        let p = Packet::parse(&out[0].frame).unwrap();
        assert!(dhcp6_option_codes(p.payload).contains(&23));

        // Only the door NIC (the IPv6 default route's, else the first) has the door's address,
        // and only a door with IPv6 of its own gives one (`Announcers::add`).
        let mut second = docker_guest();
        second.lower = "eth1".into();
        second.gateways.clear();
        assert_eq!(door_nic(&[second.clone(), docker_guest()]), Some("eth0"));
        assert_eq!(door_nic(std::slice::from_ref(&second)), Some("eth1"));
        assert_eq!(door_nic(&[]), None);
        let dns = Dns6::default().announced(&second, false, dns4, None);
        assert_eq!(dns.advert, Dns6::default());
    }

    /// A frame from the guest to the door's link-local address.
    fn to_door(next_header: u8, payload: Vec<u8>) -> Vec<u8> {
        let dst = if next_header == ndp::PROTO_ICMPV6 {
            ndp::solicited_node(DOOR.link_local)
        } else {
            DOOR.link_local
        };
        ndp::ipv6_frame(
            DOOR.mac,
            GUEST,
            255,
            GUEST.link_local(),
            dst,
            next_header,
            payload,
        )
    }

    #[test]
    fn a_door_without_ipv6_is_answered_for_and_dns_to_it_is_relayed_only_when_vminit_relays() {
        let t0 = Instant::now();
        let mut a = Announcer::new(&docker_guest(), &learned(), DOOR, &NicDns6::default(), t0);
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend(DOOR.link_local.octets());
        ns.extend([1, 1]);
        ns.extend(GUEST.0);
        let ns = to_door(ndp::PROTO_ICMPV6, ns);
        let query = to_door(PROTO_UDP, ndp::udp(40000, 53, b"\x12\x34query"));
        // A door with IPv6 of its own: the kernel answers, not vminit.
        assert!(a.on_frame(&ns, t0).is_empty());
        assert_eq!(a.dns_query(&query), None);

        a.relay_dns();
        let out = a.on_frame(&ns, t0);
        assert_eq!(out.len(), 1);
        let p = Packet::parse(&out[0].frame).unwrap();
        assert_eq!((p.to, p.from, p.hop_limit), (GUEST, DOOR.mac, 255));
        assert_eq!((p.src, p.dst), (DOOR.link_local, GUEST.link_local()));
        assert_eq!(
            ndp::advertiser_of(&out[0].frame, DOOR.link_local),
            Some(DOOR.mac)
        );
        assert_eq!(p.payload[4], 0x60, "solicited, override");
        assert_eq!(
            &p.payload[24..32],
            &[2, 1, 0x0e, 0x1b, 0x92, 0x9a, 0x54, 0x2d]
        );
        let q = a.dns_query(&query).expect("a query");
        assert_eq!(
            q,
            DnsQuery {
                src: GUEST.link_local(),
                port: 40000,
                message: b"\x12\x34query".to_vec()
            }
        );
        // Not for the door, or not DNS: not relayed.
        let other = ndp::ipv6_frame(
            DOOR.mac,
            GUEST,
            64,
            GUEST.link_local(),
            ip("fe80::1"),
            PROTO_UDP,
            ndp::udp(40000, 53, b"\x12\x34query"),
        );
        assert_eq!(a.dns_query(&other), None);
        assert_eq!(
            a.dns_query(&to_door(PROTO_UDP, ndp::udp(40000, 54, b"x"))),
            None
        );

        let answer = a
            .dns_answer(q.src, q.port, b"\x12\x34answer")
            .expect("fits");
        let p = Packet::parse(&answer).unwrap();
        assert_eq!((p.to, p.from), (GUEST, DOOR.mac));
        assert_eq!((p.src, p.dst), (DOOR.link_local, GUEST.link_local()));
        assert_eq!(
            ndp::udp_to(p.payload, 40000),
            Some((53, &b"\x12\x34answer"[..]))
        );
        assert_eq!(
            ndp::checksum(p.src, p.dst, PROTO_UDP, p.payload),
            0xffff,
            "a correct UDP checksum"
        );
        // Larger than the guest's MTU: not sent.
        assert_eq!(a.dns_answer(q.src, q.port, &[0; 1500 - 48 + 1]), None);
        assert!(a.dns_answer(q.src, q.port, &[0; 1500 - 48]).is_some());
    }

    #[test]
    fn the_seed_states_what_the_announcements_give_each_nic() {
        let mut far = docker_guest();
        far.lower = "eth1".into();
        far.addr = "fd00:2::5/64".parse().unwrap();
        far.onlink = vec![
            "fd00:2::/64".parse().unwrap(),
            "fd00:98::/64".parse().unwrap(),
        ];
        far.gateways = vec![GatewayRoutes {
            gateway: ip("fd00:2::254"),
            default: false,
            routes: vec!["fd00:99::/64".parse().unwrap()],
        }];
        let seed_nic = |name: &str| SeedNic {
            name: name.into(),
            mac: String::new(),
            addr: None,
            mtu: 1500,
            routes: vec![],
            dns: vec![],
            search: vec![],
            v6: None,
        };
        let mut nics = [seed_nic("eth0"), seed_nic("eth1"), seed_nic("eth2")];
        let dns = Dns6::from_resolv_conf("nameserver fd00:9::53\nsearch a.test\n");
        add_seed6(&mut nics, &[docker_guest(), far], &dns);
        let eth0 = nics[0].v6.as_ref().unwrap();
        assert_eq!(
            (eth0.addr, eth0.prefix, eth0.gateway),
            (ip("fd00:1::2"), 64, Some(ip("fd00:1::1")))
        );
        assert!(eth0.routes.is_empty(), "its own prefix is the address's");
        assert_eq!(eth0.dns, [ip("fd00:9::53")], "the default-route NIC's");
        assert_eq!(eth0.search, ["a.test"]);
        let eth1 = nics[1].v6.as_ref().unwrap();
        assert_eq!(eth1.gateway, None, "one default route, on eth0");
        assert_eq!(
            eth1.routes,
            [
                SeedRoute6 {
                    network: ip("fd00:98::"),
                    prefix: 64,
                    gateway: None
                },
                SeedRoute6 {
                    network: ip("fd00:99::"),
                    prefix: 64,
                    gateway: Some(ip("fd00:2::254"))
                },
            ]
        );
        assert!(eth1.dns.is_empty() && eth1.search.is_empty());
        assert_eq!(nics[2].v6, None, "no IPv6 to give");
    }

    #[test]
    fn only_reachable_non_loopback_ipv6_resolvers_are_announced() {
        let dns = Dns6::from_resolv_conf(
            "nameserver 127.0.0.11\nnameserver ::1\nnameserver fd00:1::53\nnameserver fd00:9::53\nsearch a.test\n",
        );
        assert_eq!(dns.servers, [ip("fd00:1::53"), ip("fd00:9::53")]);
        let guest = docker_guest();
        assert_eq!(dns.for_nic(&guest, false).servers, [ip("fd00:1::53")]);
        assert!(
            dns.for_nic(&guest, false).search.is_empty(),
            "names on the primary NIC only"
        );
        assert_eq!(dns.for_nic(&guest, true).servers.len(), 2);
        assert_eq!(dns.for_nic(&guest, true).search, ["a.test"]);
        let mut far = guest.clone();
        far.onlink = vec!["fd00:7::/64".parse().unwrap()];
        assert_eq!(dns.for_nic(&far, false), Dns6::default());
    }
}
