//! The network namespace as plain data: links, IPv4 and IPv6 addresses and routes (pure).
//!
//! `discover` fills it from netlink dumps; `plan` and `identity` read it. Nothing here
//! touches the system.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::net::types::{Ipv4Net, Ipv6Net, Mac, Route, Route6};

/// One network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<Mac>,
    pub mtu: u32,
    /// `IFLA_INFO_KIND`: "veth", "bridge", "macvtap", "ipip", ... (`None` for physical NICs).
    pub kind: Option<String>,
    pub alias: Option<String>,
    /// `IFLA_LINK`: the link this one sits on (a macvlan's or macvtap's NIC). A veth's is
    /// its peer's index, which may be in another namespace.
    pub lower: Option<u32>,
    /// `IFLA_LINK_NETNSID`: set when `lower` is an index in another namespace (a veth's
    /// peer; the host's NIC under a macvlan NIC and under everything stacked on it).
    pub lower_netns: Option<i32>,
    /// Whether the link layer is Ethernet (tunnels such as `tunl0` or `sit0` are not).
    pub ethernet: bool,
    /// `net.ipv4.conf.LINK.arp_ignore` (from `IFLA_AF_SPEC`); `None` for a link without
    /// IPv4.
    pub arp_ignore: Option<u32>,
    /// Whether it is up (`IFF_UP`): Docker and CNI plugins bring a new NIC up after its
    /// addresses, so a NIC that joins is taken over once it is up.
    pub up: bool,
}

/// An IPv4 address as the kernel holds it on an interface, with everything needed to put
/// it back exactly: `ip addr add NET [brd B] [label L] [scope S] [flags] [valid_lft V
/// preferred_lft P]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub net: Ipv4Net,
    /// The broadcast address, if it has one.
    pub broadcast: Option<Ipv4Addr>,
    /// The label (`eth0:1`), when it is not just the interface's name.
    pub label: Option<String>,
    /// `IFA_F_*` flags, as the kernel reports them (`SECONDARY` included).
    pub flags: u32,
    /// `RT_SCOPE_*`: 0 global, 253 link, 254 host.
    pub scope: u8,
    /// Remaining (valid, preferred) lifetimes in seconds; `None` for forever.
    pub lifetime: Option<(u32, u32)>,
    /// The peer of a point-to-point address (`ip addr add A peer P`), which vminit refuses
    /// to take over.
    pub peer: Option<Ipv4Addr>,
}

/// `IFA_F_SECONDARY` (IPv4; `IFA_F_TEMPORARY` for IPv6): a second address in the subnet of
/// another one, which the kernel deletes with its primary (unless promote_secondaries is set).
pub const IFA_F_SECONDARY: u32 = 0x01;
/// `IFA_F_NODAD`: no duplicate address detection (`nodad`).
pub const IFA_F_NODAD: u32 = 0x02;
/// `IFA_F_DADFAILED`: duplicate address detection found the address in use.
pub const IFA_F_DADFAILED: u32 = 0x08;
/// `IFA_F_DEPRECATED`: its preferred lifetime is over.
pub const IFA_F_DEPRECATED: u32 = 0x20;
/// `IFA_F_TENTATIVE`: duplicate address detection still runs.
pub const IFA_F_TENTATIVE: u32 = 0x40;
/// `IFA_F_PERMANENT`: configured, not learned (the kernel sets it).
pub const IFA_F_PERMANENT: u32 = 0x80;
/// `IFA_F_NOPREFIXROUTE`: no route for the address's prefix (`noprefixroute`).
pub const IFA_F_NOPREFIXROUTE: u32 = 0x200;
/// `IFA_F_STABLE_PRIVACY`: a stable-privacy address the kernel generated.
pub const IFA_F_STABLE_PRIVACY: u32 = 0x800;
/// Flags the kernel derives itself and refuses or ignores on `ip addr add`.
const IFA_F_DERIVED: u32 =
    IFA_F_SECONDARY | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE | IFA_F_PERMANENT;

impl IfAddr {
    /// An address as Docker adds it: `ip addr add NET brd + dev DEV`.
    pub fn plain(net: Ipv4Net) -> IfAddr {
        IfAddr {
            net,
            broadcast: None,
            label: None,
            flags: 0,
            scope: 0,
            lifetime: None,
            peer: None,
        }
    }

    /// The flags `ip addr add` can set (the kernel derives the others).
    pub fn settable_flags(&self) -> u32 {
        self.flags & !IFA_F_DERIVED
    }

    /// The flags worth keeping: the settable ones, and whether it is a secondary.
    pub fn kept_flags(&self) -> u32 {
        self.flags & (!IFA_F_DERIVED | IFA_F_SECONDARY)
    }
}

/// One IPv4 address on one interface.
#[derive(Clone, Debug, PartialEq)]
pub struct Addr {
    pub index: u32,
    pub addr: IfAddr,
}

/// `RTPROT_KERNEL`: a route the kernel made for an address's subnet.
pub const RTPROT_KERNEL: u8 = 2;
/// `RTPROT_BOOT`: what `ip route add` uses by default.
pub const RTPROT_BOOT: u8 = 3;
/// `RT_TABLE_MAIN`
pub const RT_TABLE_MAIN: u32 = 254;
/// `RT_SCOPE_LINK`
pub const RT_SCOPE_LINK: u8 = 253;
/// `RTN_UNICAST`
pub const RTN_UNICAST: u8 = 1;

/// A route as the kernel holds it, with everything needed to put it back exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    /// Destination, gateway and metric.
    pub route: Route,
    pub table: u32,
    /// `RTPROT_*`: who made it (`proto`).
    pub protocol: u8,
    /// `RT_SCOPE_*`.
    pub scope: u8,
    /// `RTN_*`: unicast (1) for every route vminit reads.
    pub kind: u8,
    pub tos: u8,
    /// The preferred source address (`src`).
    pub src: Option<Ipv4Addr>,
    /// The gateway is not checked against connected subnets (`onlink`).
    pub onlink: bool,
    /// `RTA_METRICS` (`RTAX_*` number, value): mtu, advmss, initcwnd, ...
    pub metrics: Vec<(u16, u32)>,
}

impl KernelRoute {
    /// A route in the main table as `ip route add` makes it: proto boot, scope link when
    /// it has no gateway.
    pub fn main(route: Route) -> KernelRoute {
        let scope = if route.gateway.is_some() {
            0
        } else {
            RT_SCOPE_LINK
        };
        KernelRoute {
            route,
            table: RT_TABLE_MAIN,
            protocol: RTPROT_BOOT,
            scope,
            kind: RTN_UNICAST,
            tos: 0,
            src: None,
            onlink: false,
            metrics: Vec::new(),
        }
    }

    /// Whether `other` is the same route as far as `ip route del` matches one.
    pub fn same_key(&self, other: &KernelRoute) -> bool {
        self.table == other.table
            && self.tos == other.tos
            && self.route.dst == other.route.dst
            && self.route.gateway == other.route.gateway
            && self.route.metric == other.route.metric
    }
}

/// One IPv4 route through one interface.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteEntry {
    pub index: u32,
    pub route: KernelRoute,
}

impl RouteEntry {
    /// Installed by the kernel for an address's subnet (`proto kernel`).
    pub fn is_kernel(&self) -> bool {
        self.route.protocol == RTPROT_KERNEL
    }
}

/// A permanent neighbour entry: `ip neigh add ADDR lladdr MAC nud permanent dev DEV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neigh {
    pub addr: Ipv4Addr,
    pub mac: Mac,
}

/// A permanent neighbour entry on one interface.
#[derive(Clone, Debug, PartialEq)]
pub struct NeighEntry {
    pub index: u32,
    pub neigh: Neigh,
}

/// The state of the network namespace, as far as vminit cares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetState {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<RouteEntry>,
    /// Permanent neighbour entries (the kernel flushes them when a MAC changes).
    pub neighbours: Vec<NeighEntry>,
    /// IPv6 addresses, in the kernel's order (by scope: global first, newest first).
    pub addrs6: Vec<Addr6>,
    /// IPv6 routes through one interface, in every table but the kernel's local one.
    pub routes6: Vec<Route6Entry>,
    /// Permanent IPv6 neighbour entries.
    pub neighbours6: Vec<Neigh6Entry>,
    /// Whether links made now get IPv6 (`net.ipv6.conf.default.disable_ipv6` is 0). Docker
    /// turns it off in a container, even on an `--ipv6` network (only its own NICs have
    /// IPv6), and mounts `/proc/sys` read-only: vminit's doors then have no IPv6.
    pub ipv6_on_new_links: bool,
}

impl NetState {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The IPv4 addresses of one interface, in the kernel's order.
    pub fn addrs_of(&self, index: u32) -> Vec<IfAddr> {
        self.addrs
            .iter()
            .filter(|a| a.index == index)
            .map(|a| a.addr.clone())
            .collect()
    }

    /// The routes through one interface in every table, the kernel's subnet routes excluded.
    pub fn routes_of(&self, index: u32) -> Vec<KernelRoute> {
        self.routes
            .iter()
            .filter(|r| r.index == index && !r.is_kernel())
            .map(|r| r.route.clone())
            .collect()
    }

    /// The permanent neighbour entries of one interface.
    pub fn neighbours_of(&self, index: u32) -> Vec<Neigh> {
        self.neighbours
            .iter()
            .filter(|n| n.index == index)
            .map(|n| n.neigh)
            .collect()
    }

    /// The IPv6 addresses of one interface, in the kernel's order.
    pub fn addrs6_of(&self, index: u32) -> Vec<IfAddr6> {
        self.addrs6
            .iter()
            .filter(|a| a.index == index)
            .map(|a| a.addr.clone())
            .collect()
    }

    /// The IPv6 routes through one interface in every table that vminit moves and puts back:
    /// not the ones the kernel makes for addresses, router advertisements or redirects.
    pub fn routes6_of(&self, index: u32) -> Vec<KernelRoute6> {
        self.routes6
            .iter()
            .filter(|r| r.index == index && r.route.is_configured())
            .map(|r| r.route.clone())
            .collect()
    }

    /// The permanent IPv6 neighbour entries of one interface.
    pub fn neighbours6_of(&self, index: u32) -> Vec<Neigh6> {
        self.neighbours6
            .iter()
            .filter(|n| n.index == index)
            .map(|n| n.neigh)
            .collect()
    }

    /// Every address in use in the namespace: on interfaces, and as route gateways.
    pub fn addresses_in_use(&self) -> Vec<Ipv4Addr> {
        let mut used: Vec<Ipv4Addr> = self.addrs.iter().map(|a| a.addr.net.addr).collect();
        used.extend(self.routes.iter().filter_map(|r| r.route.route.gateway));
        used
    }
}

/// An IPv6 address as the kernel holds it on an interface, with everything needed to put
/// it back exactly: `ip -6 addr add NET dev DEV [scope S] [FLAGS] [metric M] [proto P]
/// [valid_lft V preferred_lft P]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr6 {
    pub net: Ipv6Net,
    /// `IFA_F_*` flags that `ip addr add` can set (`nodad`, `noprefixroute`, ...).
    pub flags: u32,
    /// `RT_SCOPE_*`: 0 global, 253 link, 254 host.
    pub scope: u8,
    /// Remaining (valid, preferred) lifetimes in seconds; `None` for forever.
    pub lifetime: Option<(u32, u32)>,
    /// `IFA_PROTO`: who made it (3: the kernel's own link-local address).
    pub protocol: Option<u8>,
    /// `IFA_RT_PRIORITY`: the metric of its prefix route, when one was set.
    pub metric: Option<u32>,
}

/// The flags the kernel derives itself (temporary, DAD failed, deprecated, tentative,
/// permanent, stable privacy) and refuses or ignores on `ip -6 addr add`.
const IFA6_F_DERIVED: u32 = IFA_F_DERIVED | IFA_F_STABLE_PRIVACY;
/// Not usable as the guest's address: temporary, DAD failed, deprecated, tentative.
const IFA6_F_UNUSABLE: u32 = IFA_F_SECONDARY | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE;

impl IfAddr6 {
    /// An address as `ip -6 addr add NET dev DEV` makes it (scope from the address).
    pub fn plain(net: Ipv6Net) -> IfAddr6 {
        IfAddr6 {
            net,
            flags: 0,
            scope: if net.is_link_local() {
                RT_SCOPE_LINK
            } else {
                0
            },
            lifetime: None,
            protocol: None,
            metric: None,
        }
    }

    /// Keeps only the flags `ip -6 addr add` can set.
    pub fn settable_flags(flags: u32) -> u32 {
        flags & !IFA6_F_DERIVED
    }

    /// A global (or unique local) address that can be handed on: not temporary, not
    /// deprecated, not tentative, and DAD did not fail.
    pub fn is_handable(flags: u32, scope: u8) -> bool {
        scope == 0 && flags & IFA6_F_UNUSABLE == 0
    }
}

/// One IPv6 address on one interface, with the flags the kernel reported (derived ones too).
#[derive(Clone, Debug, PartialEq)]
pub struct Addr6 {
    pub index: u32,
    pub addr: IfAddr6,
    /// Every `IFA_F_*` flag as reported, to tell which addresses can go to the guest.
    pub reported_flags: u32,
}

/// `RTPROT_REDIRECT`, `RTPROT_RA`: IPv6 routes the kernel learned from the network.
const RTPROT_REDIRECT: u8 = 1;
const RTPROT_RA: u8 = 9;

/// An IPv6 route as the kernel holds it, with everything needed to put it back exactly.
/// `ICMPV6_ROUTER_PREF_MEDIUM`: a route's router preference when none is given.
pub const ICMPV6_ROUTER_PREF_MEDIUM: u8 = 0;
/// `ICMPV6_ROUTER_PREF_HIGH` (`pref high`).
pub const ICMPV6_ROUTER_PREF_HIGH: u8 = 1;
/// `ICMPV6_ROUTER_PREF_LOW` (`pref low`).
pub const ICMPV6_ROUTER_PREF_LOW: u8 = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute6 {
    /// Destination, gateway and metric.
    pub route: Route6,
    pub table: u32,
    /// `RTPROT_*`: who made it (`proto`).
    pub protocol: u8,
    /// `RTN_*`: unicast (1) for every route vminit reads.
    pub kind: u8,
    /// The preferred source address (`src`).
    pub src: Option<Ipv6Addr>,
    /// The gateway is not checked against connected prefixes (`onlink`).
    pub onlink: bool,
    /// `RTA_PREF`: the router preference (`ICMPV6_ROUTER_PREF_*`).
    pub pref: u8,
    /// `RTA_METRICS` (`RTAX_*` number, value): mtu, hoplimit, advmss, ...
    pub metrics: Vec<(u16, u32)>,
}

impl KernelRoute6 {
    /// A route in the main table as `ip -6 route add` makes it: proto boot, metric 1024.
    pub fn main(route: Route6) -> KernelRoute6 {
        KernelRoute6 {
            route,
            table: RT_TABLE_MAIN,
            protocol: RTPROT_BOOT,
            kind: RTN_UNICAST,
            src: None,
            onlink: false,
            pref: 0,
            metrics: Vec::new(),
        }
    }

    /// Whether `other` is the same route as far as `ip -6 route del` matches one.
    pub fn same_key(&self, other: &KernelRoute6) -> bool {
        self.table == other.table
            && self.route.dst == other.route.dst
            && self.route.gateway == other.route.gateway
            && self.route.metric == other.route.metric
    }

    /// Configured by someone (Docker, Kubernetes, a user), not made by the kernel for an
    /// address, a router advertisement or a redirect (those come back by themselves).
    pub fn is_configured(&self) -> bool {
        ![RTPROT_KERNEL, RTPROT_RA, RTPROT_REDIRECT].contains(&self.protocol)
    }
}

/// One IPv6 route through one interface.
#[derive(Clone, Debug, PartialEq)]
pub struct Route6Entry {
    pub index: u32,
    pub route: KernelRoute6,
}

/// A permanent IPv6 neighbour entry: `ip -6 neigh add ADDR lladdr MAC nud permanent [router]
/// dev DEV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neigh6 {
    pub addr: Ipv6Addr,
    pub mac: Mac,
    /// The neighbour is a router (`NTF_ROUTER`).
    pub router: bool,
}

/// A permanent IPv6 neighbour entry on one interface.
#[derive(Clone, Debug, PartialEq)]
pub struct Neigh6Entry {
    pub index: u32,
    pub neigh: Neigh6,
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

/// An interface address of either family, as a change to the namespace carries it. The
/// families keep what differs (IPv4's broadcast and label, IPv6's metric and protocol);
/// what they share (the address and prefix, flags, scope, lifetimes) is read through this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpIfAddr {
    V4(IfAddr),
    V6(IfAddr6),
}

impl From<IfAddr> for IpIfAddr {
    fn from(a: IfAddr) -> IpIfAddr {
        IpIfAddr::V4(a)
    }
}

impl From<IfAddr6> for IpIfAddr {
    fn from(a: IfAddr6) -> IpIfAddr {
        IpIfAddr::V6(a)
    }
}

/// A route of either family, with everything needed to put it back exactly. (An IPv6 route
/// is boxed: it is the largest thing a change carries.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpRoute {
    V4(KernelRoute),
    V6(Box<KernelRoute6>),
}

impl From<KernelRoute> for IpRoute {
    fn from(r: KernelRoute) -> IpRoute {
        IpRoute::V4(r)
    }
}

impl From<KernelRoute6> for IpRoute {
    fn from(r: KernelRoute6) -> IpRoute {
        IpRoute::V6(Box::new(r))
    }
}

/// A permanent neighbour entry of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpNeigh {
    V4(Neigh),
    V6(Neigh6),
}

impl From<Neigh> for IpNeigh {
    fn from(n: Neigh) -> IpNeigh {
        IpNeigh::V4(n)
    }
}

impl From<Neigh6> for IpNeigh {
    fn from(n: Neigh6) -> IpNeigh {
        IpNeigh::V6(n)
    }
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
}
