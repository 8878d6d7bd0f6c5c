//! Builders for unit tests: namespaces shaped like Docker's and Kubernetes' (test only).

use std::net::Ipv4Addr;

use crate::net::netstate::{
    Addr, Addr6, IFA_F_SECONDARY, IfAddr, IfAddr6, KernelRoute, KernelRoute6, Link, NetState,
    RTPROT_KERNEL, Route6Entry, RouteEntry,
};
use crate::net::types::{Ipv4Net, Mac, Route, Route6};

pub const MAC0: Mac = Mac([0x02, 0x42, 0xac, 0x13, 0x00, 0x02]);
pub const MAC1: Mac = Mac([0x02, 0x42, 0xac, 0x14, 0x00, 0x05]);

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
pub fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}
/// Bytes written as hex digits, spaces allowed (`"33 33 00 00"`): packets as tcpdump or
/// scapy show them.
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
/// A route in the main table (`KernelRoute::main` makes it a kernel route).
pub fn route(dst: &str, gw: Option<&str>) -> Route {
    Route {
        dst: net(dst),
        gateway: gw.map(ip),
        metric: None,
    }
}

pub struct Ns(pub NetState);

impl Ns {
    pub fn new() -> Ns {
        let lo = Link {
            index: 1,
            name: "lo".into(),
            mac: None,
            mtu: 65536,
            kind: None,
            alias: None,
            lower: None,
            ethernet: false,
            arp_ignore: Some(0),
            lower_netns: None,
            up: true,
        };
        Ns(NetState {
            links: vec![lo],
            ..Default::default()
        })
    }
    pub fn nic(mut self, index: u32, name: &str, mac: Mac, addrs: &[&str], routes: &[Route]) -> Ns {
        self.0.links.push(Link {
            index,
            name: name.into(),
            mac: Some(mac),
            mtu: 1450,
            kind: Some("veth".into()),
            alias: None,
            lower: None,
            ethernet: true,
            arp_ignore: Some(0),
            lower_netns: None,
            up: true,
        });
        for a in addrs {
            let n = net(a);
            let mut addr = IfAddr::plain(n);
            // As Docker adds them: `brd +` below /31; a second address in a subnet is
            // the kernel's secondary.
            if n.prefix < 31 {
                let bits = u32::from(n.network()) | !u32::from(n.netmask());
                addr.broadcast = Some(Ipv4Addr::from(bits));
            }
            if self.0.addrs.iter().any(|x| {
                x.index == index
                    && x.addr.net.prefix == n.prefix
                    && x.addr.net.network() == n.network()
            }) {
                addr.flags |= IFA_F_SECONDARY;
            } else {
                let mut subnet = KernelRoute::main(Route {
                    dst: Ipv4Net::new(n.network(), n.prefix),
                    gateway: None,
                    metric: None,
                });
                subnet.protocol = RTPROT_KERNEL;
                subnet.src = Some(n.addr);
                self.0.routes.push(RouteEntry {
                    index,
                    route: subnet,
                });
            }
            self.0.addrs.push(Addr { index, addr });
        }
        for r in routes {
            self.0.routes.push(RouteEntry {
                index,
                route: KernelRoute::main(r.clone()),
            });
        }
        self
    }

    /// One more IPv6 address (`ADDR/PREFIX`) on interface `index`, as Docker adds them
    /// (`nodad`, permanent); links made later get IPv6 too.
    pub fn addr6(mut self, index: u32, cidr: &str) -> Ns {
        const NODAD_PERMANENT: u32 = 0x02 | 0x80;
        let mut addr = IfAddr6::plain(cidr.parse().unwrap());
        addr.flags = IfAddr6::settable_flags(NODAD_PERMANENT);
        self.0.addrs6.push(Addr6 {
            index,
            addr,
            reported_flags: NODAD_PERMANENT,
        });
        self.0.ipv6_on_new_links = true;
        self
    }

    /// An IPv6 route through interface `index` (`ip -6 route add DST [via GW] dev ...`).
    pub fn route6(mut self, index: u32, dst: &str, gw: Option<&str>) -> Ns {
        self.0.routes6.push(Route6Entry {
            index,
            route: KernelRoute6::main(Route6 {
                dst: dst.parse().unwrap(),
                gateway: gw.map(|g| g.parse().unwrap()),
                metric: Some(1024),
            }),
        });
        self
    }
}

pub fn docker_two_networks() -> NetState {
    // Docker names NICs by connection order, not ifindex order.
    Ns::new()
        .nic(9, "eth1", MAC1, &["172.20.0.5/16"], &[])
        .nic(
            7,
            "eth0",
            MAC0,
            &["172.19.0.2/24"],
            &[route("0.0.0.0/0", Some("172.19.0.1"))],
        )
        .0
}
