//! Renders QEMU's own user networking (slirp) for one guest NIC: user mode's fallback where
//! passt cannot sandbox itself (pure).
//!
//! slirp serves the guest DHCP and relays its TCP, UDP and ping through sockets of the
//! container's namespace, like passt; but every address of its virtual network other than its
//! router and its resolver is unreachable (it answers ARP for those two only, and sends
//! connections to any address of the network to the container's loopback). So the guest gets
//! the container's address in the smallest network slirp accepts (a /29), not the container's
//! prefix: everything outside that /29 goes through slirp's router, including the container's
//! real gateway and the peers of its network.

use std::net::Ipv4Addr;

use crate::config::{USER_PORTS_DEFAULT, UserPorts};
use crate::net::types::Ipv4Net;

/// The guest's virtual network: the container's address in it, slirp's router and resolver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Network {
    pub net: Ipv4Net,
    pub host: Ipv4Addr,
    pub dns: Ipv4Addr,
}

/// The prefix of the guest's network: the smallest that holds the guest, a router and a
/// resolver (slirp wants the three distinct) besides the network and broadcast addresses.
pub const PREFIX: u8 = 29;

/// The /29 that holds `guest` (wider where the guest would be its network or broadcast
/// address): slirp's router is `gateway` where it is a host address of that network (the
/// container's own router, as on a Docker network: `.1` beside `.2`), else the network's
/// first host address that is not the guest's; the resolver is its last such address.
pub fn network(guest: Ipv4Addr, gateway: Option<Ipv4Addr>) -> Network {
    let prefix = (1..=PREFIX)
        .rev()
        .find(|p| {
            let low = u32::from(guest) & !(u32::MAX << (32 - p));
            low != 0 && low != !(u32::MAX << (32 - p))
        })
        .unwrap_or(PREFIX);
    let net = Ipv4Net::new(guest, prefix);
    let first = u32::from(net.network()) + 1;
    let last = first + (1 << (32 - prefix)) - 3;
    let hosts = (first..=last).map(Ipv4Addr::from).filter(|ip| *ip != guest);
    let host = gateway
        .filter(|gw| *gw != guest && (first..=last).contains(&u32::from(*gw)))
        .unwrap_or_else(|| hosts.clone().next().expect("six host addresses at least"));
    let mut hosts = hosts;
    let dns = hosts
        .rfind(|ip| *ip != host)
        .expect("six host addresses at least");
    Network {
        net: Ipv4Net::new(net.network(), prefix),
        host,
        dns,
    }
}

/// One guest NIC's slirp.
pub struct SlirpNic<'a> {
    /// The guest's IPv4 address (the container NIC's); `None`: slirp's own 10.0.2.15.
    pub addr: Option<Ipv4Addr>,
    /// The container NIC's router, kept as slirp's where it lies in the guest's /29.
    pub gateway: Option<Ipv4Addr>,
    /// The forwarded TCP ports, (the container's, the guest's).
    pub tcp: &'a [(u16, u16)],
    /// The forwarded UDP ports (on one NIC only: see `options`).
    pub udp: &'a [(u16, u16)],
    /// The guest's hostname and DNS search list (DHCP options 12 and 119).
    pub hostname: &'a str,
    pub search: &'a [String],
}

/// The options of `-netdev user` after its `id`: the network, the guest's address as the first
/// (and only) DHCP lease, no IPv6 (slirp's would be a private `fec0::/64`, not the
/// container's), and each port forwarded to the guest's address: TCP from the container's
/// same address; UDP from the container's every address, as slirp gives a datagram that came
/// to an address of the guest's network the source address it came to (the guest's own, which
/// the guest drops), so only one NIC's slirp can forward UDP.
pub fn options(s: &SlirpNic) -> String {
    let mut o = vec!["ipv6=off".to_string()];
    if let Some(guest) = s.addr {
        let n = network(guest, s.gateway);
        o.extend([
            format!("net={}/{}", n.net.addr, n.net.prefix),
            format!("host={}", n.host),
            format!("dns={}", n.dns),
            format!("dhcpstart={guest}"),
        ]);
    }
    if is_dhcp_name(s.hostname) {
        o.push(format!("hostname={}", s.hostname));
    }
    for domain in s.search.iter().filter(|d| is_dhcp_name(d)) {
        o.push(format!("dnssearch={domain}"));
    }
    let guest = s.addr.map(|a| a.to_string()).unwrap_or_default();
    for (proto, bind, ports) in [("tcp", guest.as_str(), s.tcp), ("udp", "", s.udp)] {
        for (outside, inside) in ports {
            o.push(format!("hostfwd={proto}:{bind}:{outside}-{guest}:{inside}"));
        }
    }
    o.join(",")
}

/// QEMU's command line for the log: each `-netdev user`'s forwards (one option per port and
/// protocol, over a thousand by default) as their count.
pub fn abbreviate(line: &str) -> String {
    line.split(' ')
        .map(|word| {
            let n = word.matches(",hostfwd=").count();
            match word.find(",hostfwd=") {
                Some(at) if word.starts_with("user,") => {
                    format!("{},hostfwd=<{n} ports>", &word[..at])
                }
                _ => word.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name QEMU's option parser passes through unchanged (no `,`, no `=`).
fn is_dhcp_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The ports `USER_PORTS` forwards, one by one as slirp takes them: passt's list (`22`,
/// `8000-8100`, `~8050` to leave one out, `2222:22` to forward the container's 2222 to the
/// guest's 22) expanded. `all` is passt's word for some 30000 ports, a listening socket each
/// for slirp: it forwards the default instead, and says so.
pub fn ports(ports: &UserPorts) -> (Vec<(u16, u16)>, Option<String>) {
    let list = match ports {
        UserPorts::None => return (Vec::new(), None),
        UserPorts::All => {
            let warning = format!(
                "USER_PORTS=all is not forwarded by QEMU's user networking (a socket per port); it forwards {USER_PORTS_DEFAULT}: name the ports in USER_PORTS"
            );
            return (expand(USER_PORTS_DEFAULT), Some(warning));
        }
        UserPorts::List(list) => list,
    };
    (expand(list), None)
}

/// Expands a list `config` has checked.
fn expand(list: &str) -> Vec<(u16, u16)> {
    let range = |r: &str| -> Option<(u16, u16)> {
        match r.split_once('-') {
            Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
            None => r.trim().parse().ok().map(|p| (p, p)),
        }
    };
    let mut out: Vec<(u16, u16)> = Vec::new();
    let mut excluded: Vec<(u16, u16)> = Vec::new();
    for item in list.split(',').map(str::trim) {
        if let Some(ex) = item.strip_prefix('~') {
            excluded.extend(range(ex));
            continue;
        }
        let (outside, inside) = item.split_once(':').unwrap_or((item, item));
        let (Some((a, b)), Some((c, _))) = (range(outside), range(inside)) else {
            continue;
        };
        out.extend((a..=b).map(|p| (p, c.wrapping_add(p - a))));
    }
    out.retain(|(p, _)| !excluded.iter().any(|(a, b)| (*a..=*b).contains(p)));
    out.sort_unstable();
    out.dedup_by_key(|(p, _)| *p);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_guests_network_is_its_29_with_the_containers_router_where_it_lies_there() {
        let n = network(ip("172.19.0.2"), Some(ip("172.19.0.1")));
        assert_eq!(
            (n.net.to_string(), n.host, n.dns),
            ("172.19.0.0/29".into(), ip("172.19.0.1"), ip("172.19.0.6"))
        );
        // A Kubernetes /32 pod's router (169.254.1.1) is outside: slirp's router is another
        // address of the /29, and the real one is reached through it.
        let n = network(ip("10.244.1.17"), Some(ip("169.254.1.1")));
        assert_eq!(
            (n.net.to_string(), n.host, n.dns),
            (
                "10.244.1.16/29".into(),
                ip("10.244.1.18"),
                ip("10.244.1.22")
            )
        );
        // The guest at the end of its /29, no router at all.
        let n = network(ip("10.0.0.22"), None);
        assert_eq!((n.host, n.dns), (ip("10.0.0.17"), ip("10.0.0.21")));
        // Network and broadcast addresses are never the router.
        let n = network(ip("10.0.0.9"), Some(ip("10.0.0.8")));
        assert_eq!((n.host, n.dns), (ip("10.0.0.10"), ip("10.0.0.14")));
        // Nor the guest: its network widens until it is a host address of it.
        let n = network(ip("10.0.0.8"), Some(ip("10.0.0.1")));
        assert_eq!(
            (n.net.to_string(), n.host, n.dns),
            ("10.0.0.0/28".into(), ip("10.0.0.1"), ip("10.0.0.14"))
        );
        assert_eq!(
            network(ip("10.0.0.15"), None).net.to_string(),
            "10.0.0.0/27"
        );
        assert_eq!(network(ip("10.1.0.0"), None).net.to_string(), "10.0.0.0/15");
    }

    #[test]
    fn slirp_gives_the_guest_the_containers_address_name_and_ports_on_that_address() {
        let search = vec!["example.org".to_string(), "bad,name".to_string()];
        let o = options(&SlirpNic {
            addr: Some(ip("172.19.0.2")),
            gateway: Some(ip("172.19.0.1")),
            tcp: &[(80, 80), (2222, 22)],
            udp: &[(80, 80), (2222, 22)],
            hostname: "web-1",
            search: &search,
        });
        assert_eq!(
            o,
            "ipv6=off,net=172.19.0.0/29,host=172.19.0.1,dns=172.19.0.6,dhcpstart=172.19.0.2,\
             hostname=web-1,dnssearch=example.org,\
             hostfwd=tcp:172.19.0.2:80-172.19.0.2:80,hostfwd=tcp:172.19.0.2:2222-172.19.0.2:22,\
             hostfwd=udp::80-172.19.0.2:80,hostfwd=udp::2222-172.19.0.2:22"
        );
        assert_eq!(
            abbreviate(&format!("qemu -netdev user,id=net0,{o} -device x")),
            "qemu -netdev user,id=net0,ipv6=off,net=172.19.0.0/29,host=172.19.0.1,dns=172.19.0.6,\
             dhcpstart=172.19.0.2,hostname=web-1,dnssearch=example.org,hostfwd=<4 ports> -device x"
        );
        let o = options(&SlirpNic {
            addr: None,
            gateway: None,
            tcp: &[(80, 80)],
            udp: &[],
            hostname: "",
            search: &[],
        });
        assert_eq!(o, "ipv6=off,hostfwd=tcp::80-:80");
    }

    #[test]
    fn user_ports_expand_to_single_forwards() {
        let list = |s: &str| ports(&UserPorts::List(s.into())).0;
        assert_eq!(list("22, 80"), [(22, 22), (80, 80)]);
        assert_eq!(
            list("8000-8003,~8001,2222:22"),
            [(2222, 22), (8000, 8000), (8002, 8002), (8003, 8003)]
        );
        assert_eq!(list("9000-9001:80-81"), [(9000, 80), (9001, 81)]);
        assert_eq!(list("1-1023").len(), 1023);
        assert!(ports(&UserPorts::None).0.is_empty());
        let (all, warning) = ports(&UserPorts::All);
        assert_eq!(all.len(), 1023);
        assert!(warning.unwrap().contains("USER_PORTS"));
    }
}
