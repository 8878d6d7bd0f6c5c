//! The network namespace as plain data: links, IPv4 addresses and routes (pure).
//!
//! `discover` fills it from netlink dumps; `plan` and `identity` read it. Nothing here
//! touches the system.

use std::net::Ipv4Addr;

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
    pub alias: Option<String>,
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

    /// Every address in use in the namespace: on interfaces, and as route gateways.
    pub fn addresses_in_use(&self) -> Vec<Ipv4Addr> {
        let mut used: Vec<Ipv4Addr> = self.addrs.iter().map(|a| a.net.addr).collect();
        used.extend(self.routes.iter().filter_map(|r| r.route.gateway));
        used
    }
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
