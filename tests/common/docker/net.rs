//! Docker networks as the tests see them: a network a test made, a container's endpoint on one,
//! and the free private /24s they come from.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use super::super::cmd::run_ok;

/// The private range the tests' Docker networks come from: 10.231.N.0/24.
pub const SUBNET_BASE: [u8; 2] = [10, 231];

/// The next third octet to try for a network's 10.231.N.0/24.
static NEXT_SUBNET: AtomicU32 = AtomicU32::new(1);

/// A Docker network a test made.
#[derive(Debug, Clone)]
pub struct Net {
    pub name: String,
}

/// A container's endpoint on one network, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: String,
    pub gateway: Ipv4Addr,
}

impl Endpoint {
    /// `IP/PREFIX`, as the guest reports its address.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix)
    }

    /// The `docker inspect` format that prints one [`Endpoint::parse`] line per network.
    pub(super) const INSPECT_FORMAT: &str = "{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.IPAddress}} {{$e.IPPrefixLen}} {{$e.MacAddress}} {{$e.Gateway}}\n{{end}}";

    /// One line of [`Endpoint::INSPECT_FORMAT`]; panics on anything else.
    pub(super) fn parse(line: &str) -> Endpoint {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "unexpected endpoint line {line:?}");
        Endpoint {
            network: f[0].to_owned(),
            ip: f[1].parse().expect("IPAddress"),
            prefix: f[2].parse().expect("IPPrefixLen"),
            mac: f[3].to_owned(),
            gateway: f[4].parse().expect("Gateway"),
        }
    }
}

/// The outcome of pinging from a peer container.
#[derive(Debug)]
pub struct Ping {
    pub ok: bool,
    /// The MAC the peer's ARP table holds for the address pinged.
    pub neighbour_mac: Option<String>,
    pub output: String,
}

/// The next 10.231.N.0/24 that no route of the host overlaps; panics when none is left. Another
/// test process may still take it first: Docker then refuses it, and the caller asks again.
pub(super) fn next_free_subnet() -> String {
    loop {
        let n = NEXT_SUBNET.fetch_add(1, Ordering::SeqCst);
        assert!(
            n <= 254,
            "no free /24 left in {}.{}.0.0/16",
            SUBNET_BASE[0],
            SUBNET_BASE[1]
        );
        let net = Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], n as u8, 0);
        if !host_routes_overlap((net, 24)) {
            return format!("{net}/24");
        }
    }
}

/// True when `net`/`len` overlaps a route of the host (the default route aside).
fn host_routes_overlap((net, len): (Ipv4Addr, u8)) -> bool {
    let routes = run_ok(&["ip", "-4", "route", "show", "table", "all"]);
    routes.lines().any(|line| {
        let mut words = line.split_whitespace();
        let mut dest = words.next().unwrap_or("");
        if [
            "local",
            "broadcast",
            "unicast",
            "unreachable",
            "prohibit",
            "blackhole",
            "throw",
            "multicast",
            "anycast",
        ]
        .contains(&dest)
        {
            dest = words.next().unwrap_or("");
        }
        if dest == "default" {
            return false;
        }
        let (addr, plen) = dest.split_once('/').unwrap_or((dest, "32"));
        let (Ok(addr), Ok(plen)) = (addr.parse::<Ipv4Addr>(), plen.parse::<u8>()) else {
            return false;
        };
        let shorter = plen.min(len);
        let mask = if shorter == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(shorter))
        };
        (u32::from(addr) & mask) == (u32::from(net) & mask)
    })
}
