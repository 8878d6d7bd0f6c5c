//! Small value types shared by every stage: MAC addresses, IPv4 and IPv6 networks, routes.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A random unicast, locally administered address built from `bytes`.
    pub fn local_from(mut bytes: [u8; 6]) -> Mac {
        bytes[0] = (bytes[0] & 0xfc) | 0x02;
        Mac(bytes)
    }

    /// The IPv6 interface identifier the kernel derives from this MAC (modified EUI-64,
    /// RFC 4291 appendix A): `02:42:0a:01:00:02` -> `::42:aff:fe01:2`.
    pub fn eui64(&self) -> [u8; 8] {
        let b = self.0;
        [b[0] ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]]
    }

    /// The link-local address `fe80::/64` + `eui64()`: what a NIC with this MAC gives itself
    /// (with the kernel's default `addr_gen_mode eui64`).
    pub fn link_local(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a[0] = 0xfe;
        a[1] = 0x80;
        a[8..].copy_from_slice(&self.eui64());
        Ipv6Addr::from(a)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(|| format!("bad MAC {s:?}"))?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| format!("bad MAC {s:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("bad MAC {s:?}"));
        }
        Ok(Mac(out))
    }
}

/// An IPv4 address with its prefix length, as on an interface (`172.19.0.2/24`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        Ipv4Net { addr, prefix }
    }

    /// The netmask, e.g. 255.255.255.0 for /24.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix))
    }

    /// The network address, e.g. 172.19.0.0 for 172.19.0.2/24.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & mask_bits(self.prefix))
    }

    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask_bits(self.prefix) == u32::from(self.network())
    }
}

fn mask_bits(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    /// Accepts `A.B.C.D/N` and `A.B.C.D/M.M.M.M` (a contiguous netmask).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, mask) = s.split_once('/').ok_or("expected IP/MASK")?;
        let addr: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
        let prefix = if let Ok(n) = mask.parse::<u8>() {
            if n > 32 {
                return Err(format!("prefix {n} is larger than 32"));
            }
            n
        } else {
            let m: Ipv4Addr = mask
                .parse()
                .map_err(|_| format!("{mask:?} is neither a prefix length nor a netmask"))?;
            let bits = u32::from(m);
            let n = bits.leading_ones();
            if bits.checked_shl(n).unwrap_or(0) != 0 {
                return Err(format!("netmask {m} is not contiguous"));
            }
            n as u8
        };
        Ok(Ipv4Net { addr, prefix })
    }
}

/// What a route needs of a network, in either family: `Ipv4Net` and `Ipv6Net`.
pub trait IpNet: Copy + fmt::Debug + PartialEq + Eq {
    type Addr: Copy + fmt::Debug + fmt::Display + PartialEq + Eq;
    /// The prefix length of one address: 32 or 128.
    const HOST_PREFIX: u8;
    fn with_prefix(addr: Self::Addr, prefix: u8) -> Self;
    fn prefix_len(&self) -> u8;
    fn network_addr(&self) -> Self::Addr;
}

impl IpNet for Ipv4Net {
    type Addr = Ipv4Addr;
    const HOST_PREFIX: u8 = 32;
    fn with_prefix(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        Ipv4Net::new(addr, prefix)
    }
    fn prefix_len(&self) -> u8 {
        self.prefix
    }
    fn network_addr(&self) -> Ipv4Addr {
        self.network()
    }
}

/// A route through one interface, as much of it as vminit moves and hands on: the same for
/// both families (`Route`, `Route6`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RouteVia<N: IpNet> {
    /// Destination network (`0.0.0.0/0`, `::/0` for the default route).
    pub dst: N,
    /// Next hop; `None` for an on-link (scope link) route.
    pub gateway: Option<N::Addr>,
    /// Route metric (priority), if one was set; the kernel gives IPv6 routes 1024 unless
    /// told otherwise.
    pub metric: Option<u32>,
}

/// An IPv4 route.
pub type Route = RouteVia<Ipv4Net>;
/// An IPv6 route.
pub type Route6 = RouteVia<Ipv6Net>;

impl<N: IpNet> RouteVia<N> {
    /// An on-link route to one address: `ip [-6] route add ADDR/32|128 dev DEV`.
    pub fn host(addr: N::Addr) -> RouteVia<N> {
        RouteVia {
            dst: N::with_prefix(addr, N::HOST_PREFIX),
            gateway: None,
            metric: None,
        }
    }

    pub fn is_default(&self) -> bool {
        self.dst.prefix_len() == 0
    }
}

impl<N: IpNet> fmt::Display for RouteVia<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_default() {
            write!(f, "default")?;
        } else {
            write!(f, "{}/{}", self.dst.network_addr(), self.dst.prefix_len())?;
        }
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        Ok(())
    }
}

/// An IPv6 address with its prefix length, as on an interface (`fd00:1::2/64`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv6Net {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Ipv6Net {
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Ipv6Net {
        Ipv6Net { addr, prefix }
    }

    /// The network address, e.g. `fd00:1::` for `fd00:1::2/64`.
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & mask_bits6(self.prefix))
    }

    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & mask_bits6(self.prefix) == u128::from(self.network())
    }

    /// Whether the address is link-local (`fe80::/10`).
    pub fn is_link_local(&self) -> bool {
        is_link_local6(self.addr)
    }
}

/// Whether `ip` is an IPv6 link-local address (`fe80::/10`).
pub fn is_link_local6(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

fn mask_bits6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix.min(128)))
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv6Net {
    type Err = String;
    /// Accepts `ADDR/N`; `ADDR` alone is a /128.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = s.split_once('/').unwrap_or((s, "128"));
        let addr: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|n| *n <= 128)
            .ok_or_else(|| format!("{prefix:?} is not a prefix length from 0 to 128"))?;
        Ok(Ipv6Net { addr, prefix })
    }
}

impl IpNet for Ipv6Net {
    type Addr = Ipv6Addr;
    const HOST_PREFIX: u8 = 128;
    fn with_prefix(addr: Ipv6Addr, prefix: u8) -> Ipv6Net {
        Ipv6Net::new(addr, prefix)
    }
    fn prefix_len(&self) -> u8 {
        self.prefix
    }
    fn network_addr(&self) -> Ipv6Addr {
        self.network()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_network_knows_its_prefix_and_members() {
        let n: Ipv6Net = "fd00:1::2/64".parse().unwrap();
        assert_eq!(n.network(), "fd00:1::".parse::<Ipv6Addr>().unwrap());
        assert!(n.contains("fd00:1::ffff".parse().unwrap()));
        assert!(!n.contains("fd00:2::1".parse().unwrap()));
        assert_eq!("fd00:1::7".parse::<Ipv6Net>().unwrap().prefix, 128);
        assert!("fd00::/129".parse::<Ipv6Net>().is_err());
        assert!("10.0.0.0/8".parse::<Ipv6Net>().is_err());
        let all = Ipv6Net::new(Ipv6Addr::UNSPECIFIED, 0);
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        assert!(Ipv6Net::new("fe80::1".parse().unwrap(), 64).is_link_local());
        assert!(!n.is_link_local());
    }

    #[test]
    fn a_mac_gives_the_link_local_address_the_kernel_derives_from_it() {
        let m: Mac = "02:42:0a:3d:00:02".parse().unwrap();
        assert_eq!(
            m.link_local(),
            "fe80::42:aff:fe3d:2".parse::<Ipv6Addr>().unwrap()
        );
        let calico: Mac = "ee:ee:ee:ee:ee:ee".parse().unwrap();
        assert_eq!(
            calico.link_local(),
            "fe80::ecee:eeff:feee:eeee".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn parses_prefix_and_netmask_forms() {
        let a: Ipv4Net = "10.1.0.0/16".parse().unwrap();
        let b: Ipv4Net = "10.1.0.0/255.255.0.0".parse().unwrap();
        assert_eq!(a, b);
        assert!(a.contains("10.1.200.3".parse().unwrap()));
        assert!(!a.contains("10.2.0.1".parse().unwrap()));
    }

    #[test]
    fn rejects_non_contiguous_netmask_and_big_prefix() {
        assert!("10.0.0.0/255.0.255.0".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn local_mac_is_unicast_and_locally_administered() {
        let m = Mac::local_from([0xff; 6]);
        assert_eq!(m.0[0] & 0x01, 0);
        assert_eq!(m.0[0] & 0x02, 0x02);
        assert_eq!("fe:ff:ff:ff:ff:ff".parse::<Mac>().unwrap(), m);
    }

    #[test]
    fn zero_prefix_contains_everything() {
        let d = Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0);
        assert!(d.contains("8.8.8.8".parse().unwrap()));
        assert_eq!(d.netmask(), Ipv4Addr::UNSPECIFIED);
    }
}
