//! What the guest is told about DNS (pure): its resolvers and their order, what dnsmasq
//! forwards on the door, which NIC announces what, and the hostname, domain and search list,
//! each checked so that it reaches the guest as what it is, or is left out with a warning.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::dhcp::resolv::Resolv;
use crate::ipv6::announce::Dns4;
use crate::takeover::plan::NicPlan;

/// Docker's embedded DNS server, in a container on a user-defined network.
pub const DOCKER_DNS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The most one DHCP option carries, and so the encoded search list (option 119, RFC 3397):
/// dnsmasq refuses to start with a longer one.
const OPTION_MAX: usize = 255;

/// What the DNS decisions depend on.
pub struct DnsInput<'a> {
    /// The container's resolv.conf.
    pub resolv: &'a Resolv,
    /// `GUEST_DNS`: the guest's external resolvers, named by the user.
    pub guest_dns: &'a [Ipv4Addr],
    /// The container's hostname, if it has one.
    pub hostname: Option<&'a str>,
}

/// Which names dnsmasq forwards to the container's loopback resolvers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Forward {
    /// Every name: the door is the guest's only resolver.
    All,
    /// Only unqualified (single-label) names, such as container names on a Docker network.
    /// Every other name is refused at once, so the guest asks its direct resolvers next
    /// instead of waiting for an upstream the container can no longer reach.
    Unqualified,
}

/// The guest's DNS, decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Dns {
    /// Loopback resolvers of either family (Docker's 127.0.0.11, a resolver of the pod on
    /// `::1`) that dnsmasq forwards to from the door: the guest cannot reach them itself.
    /// Empty: dnsmasq serves no DNS.
    pub forward_to: Vec<IpAddr>,
    pub forward: Forward,
    /// Resolvers the guest asks itself, through its own routes and address, in order: the
    /// container's non-loopback ones, then `GUEST_DNS`, or without it the upstreams Docker
    /// asks from the container's namespace (bare `ExtServers` entries).
    pub direct: Vec<Ipv4Addr>,
    /// The container's hostname (its first label, in lower case), if it is a valid one.
    pub hostname: Option<String>,
    pub domain: Option<String>,
    /// The search list, cut to what DHCP option 119 carries.
    pub search: Vec<String>,
    /// One line each: what was left out and why, what will not work.
    pub warnings: Vec<String>,
}

/// What one guest NIC announces by DHCP.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Announcement {
    /// DNS servers (option 6); empty: the option is sent empty.
    pub servers: Vec<Ipv4Addr>,
    /// Host name (option 12).
    pub hostname: Option<String>,
    /// Domain name (option 15).
    pub domain: Option<String>,
    /// Domain search list (option 119).
    pub search: Vec<String>,
}

impl Dns {
    /// Decides the guest's resolvers and names from the container's.
    pub fn decide(input: &DnsInput) -> Dns {
        let resolv = input.resolv;
        let mut warnings = Vec::new();
        let mut forward_to = Vec::new();
        let mut direct = Vec::new();
        for &ip in &resolv.nameservers {
            match ip {
                _ if ip.is_loopback() => push_new(&mut forward_to, ip),
                IpAddr::V4(ip) if is_host(ip) => push_new(&mut direct, ip),
                // Non-loopback IPv6 resolvers go to the guest by IPv6 (`ipv6::announce`): the
                // container has no global IPv6 source address left to forward them from.
                _ => {}
            }
        }
        // An explicit GUEST_DNS replaces what vminit would infer from Docker's comment.
        let named: Vec<Ipv4Addr> = if input.guest_dns.is_empty() {
            resolv
                .ext_servers
                .iter()
                .filter(|e| !e.from_host)
                .map(|e| e.addr)
                .collect()
        } else {
            input.guest_dns.to_vec()
        };
        for ip in named {
            if is_host(ip) && !ip.is_loopback() {
                push_new(&mut direct, ip);
            }
        }
        let forward = if direct.is_empty() {
            Forward::All
        } else {
            Forward::Unqualified
        };
        if forward_to.contains(&IpAddr::V4(DOCKER_DNS))
            && direct.is_empty()
            && !resolv.ext_servers.iter().any(|e| e.from_host)
        {
            warnings.push(format!(
                "DNS: nothing names the upstream servers of Docker's resolver {DOCKER_DNS}, which \
                 cannot reach them from this container once the guest has its address: the guest \
                 resolves container names, not external ones; set GUEST_DNS=ip[,ip...] to \
                 resolvers the guest can ask"
            ));
        }

        let hostname = input.hostname.and_then(|full| {
            let label = full.split('.').next().unwrap_or_default();
            let name = host_label(label);
            if name.is_none() {
                warnings.push(format!(
                    "hostname {label:?} is not a valid host name (letters, digits and '-', at \
                     most 63): the guest gets none"
                ));
            }
            name
        });

        let mut search = Vec::new();
        for entry in &resolv.search {
            match domain_name(entry) {
                Some(name) => push_new(&mut search, name),
                None => warnings.push(format!(
                    "search domain {entry:?} is not a valid domain name: the guest does not get it"
                )),
            }
        }
        let fits = fitting_search(&search);
        if fits < search.len() {
            warnings.push(format!(
                "the search list is longer than DHCP option 119 carries ({OPTION_MAX} bytes): the \
                 guest does not get {}",
                search[fits..].join(" ")
            ));
            search.truncate(fits);
        }
        let domain = match &resolv.domain {
            Some(entry) => {
                let name = domain_name(entry);
                if name.is_none() {
                    warnings.push(format!(
                        "domain {entry:?} is not a valid domain name: the guest gets none"
                    ));
                }
                name
            }
            None => search.first().cloned(),
        };

        Dns {
            forward_to,
            forward,
            direct,
            hostname,
            domain,
            search,
            warnings,
        }
    }

    /// What DNS over IPv4 leaves to the IPv6 announcements on `nics`: whether DHCPv4 gives a
    /// resolver, and whether the door must be announced over IPv6 (it forwards to the
    /// container's loopback resolvers, and no NIC has IPv4 to ask it by).
    pub fn left_to_ipv6(&self, nics: &[NicPlan]) -> Dns4 {
        Dns4 {
            gives_resolvers: self.gives_resolvers(nics),
            door_over_ipv6: !self.forward_to.is_empty()
                && !nics.is_empty()
                && primary_nic(nics).is_none(),
        }
    }

    /// One line when the container has resolvers but the guest gets none: none by DHCPv4 on
    /// `nics`, and none in `ipv6` (what the IPv6 announcements carry): the container's are
    /// then IPv6 ones, and no guest NIC has IPv6 to reach them by.
    pub fn no_resolver(
        &self,
        resolv: &Resolv,
        nics: &[NicPlan],
        ipv6: &[Ipv6Addr],
    ) -> Option<String> {
        let theirs: Vec<String> = resolv.nameservers.iter().map(IpAddr::to_string).collect();
        // Loopback ones are the door's, which the guest asks over IPv4 or IPv6.
        let none = !theirs.is_empty()
            && self.forward_to.is_empty()
            && ipv6.is_empty()
            && !self.gives_resolvers(nics);
        none.then(|| {
            format!(
                "DNS: the guest gets no resolver: the container's ({}) are neither loopback ones \
                 the door forwards to nor ones the guest can reach (IPv4, or IPv6 through a NIC \
                 with IPv6); set GUEST_DNS=ip[,ip...] to resolvers the guest can ask",
                theirs.join(" ")
            )
        })
    }

    /// Whether DHCPv4 gives the guest at least one resolver on `nics`.
    pub fn gives_resolvers(&self, nics: &[NicPlan]) -> bool {
        self.announcements(nics)
            .iter()
            .any(|a| !a.servers.is_empty())
    }

    /// What each NIC announces, in `nics` order. The door resolver, hostname, domain and
    /// search list go on the primary NIC only: one NIC is where a client looks for them,
    /// and the door is reached through its own NIC's route. A direct resolver goes on the
    /// NIC the guest reaches it through, so that a client that routes each resolver
    /// through the NIC announcing it (systemd-networkd) routes it the way it is reachable.
    pub fn announcements(&self, nics: &[NicPlan]) -> Vec<Announcement> {
        let mut out = vec![Announcement::default(); nics.len()];
        let Some(primary) = primary_nic(nics) else {
            return out;
        };
        let first = &mut out[primary];
        if !self.forward_to.is_empty() {
            first.servers.push(nics[primary].door_addr);
        }
        first.hostname = self.hostname.clone();
        first.domain = self.domain.clone();
        first.search = self.search.clone();
        for &ip in &self.direct {
            let nic = nic_reaching(ip, nics).unwrap_or(primary);
            out[nic].servers.push(ip);
        }
        out
    }
}

/// The primary NIC: the one that gives the guest its default route (the container's
/// default-route NIC), else the first with an IPv4 address. None when no NIC has one: DHCP
/// announces nothing (an IPv6-only NIC learns its resolvers and names by IPv6).
pub fn primary_nic(nics: &[NicPlan]) -> Option<usize> {
    nics.iter()
        .position(|n| n.gateway.is_some())
        .or_else(|| nics.iter().position(|n| n.addr.is_some()))
}

/// The NIC the guest reaches `ip` through without its default route: the one whose subnet
/// or other route holds it, the most specific prefix winning (the first NIC on a tie).
pub fn nic_reaching(ip: Ipv4Addr, nics: &[NicPlan]) -> Option<usize> {
    let mut best: Option<(u8, usize)> = None;
    for (i, nic) in nics.iter().enumerate() {
        let prefixes = nic
            .addr
            .into_iter()
            .chain(nic.guest_routes.iter().map(|r| r.dst))
            .filter(|net| net.prefix > 0 && net.contains(ip))
            .map(|net| net.prefix);
        for prefix in prefixes {
            if best.is_none_or(|(p, _)| prefix > p) {
                best = Some((prefix, i));
            }
        }
    }
    best.map(|(_, i)| i)
}

/// A host name as DHCP clients take it from option 12: one label of ASCII letters, digits
/// and '-' (not first or last), 1 to 63 characters; lowered (names ignore case, and dnsmasq
/// lowers them anyway).
pub fn host_label(text: &str) -> Option<String> {
    valid_label(text, false).then(|| text.to_ascii_lowercase())
}

/// A domain name: labels as in `host_label` (plus '_', as in service names), at most 253
/// characters, an optional final dot (the root) dropped; lowered.
pub fn domain_name(text: &str) -> Option<String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| valid_label(label, true));
    valid.then(|| name.to_ascii_lowercase())
}

fn valid_label(label: &str, underscore: bool) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || (underscore && c == '_');
    (1..=63).contains(&label.len())
        && label.chars().all(ok)
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// How many of `search`'s first names fit DHCP option 119, each encoded as DNS labels
/// (length byte + label, then the root's zero byte); dnsmasq's compression only shrinks it.
fn fitting_search(search: &[String]) -> usize {
    let mut size = 0;
    for (i, name) in search.iter().enumerate() {
        size += name.split('.').map(|l| l.len() + 1).sum::<usize>() + 1;
        if size > OPTION_MAX {
            return i;
        }
    }
    search.len()
}

/// Whether `ip` can be a resolver's address at all.
fn is_host(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::resolv::parse;
    use crate::net::types::{Ipv4Net, Mac, Route};
    use crate::takeover::slot::Slot;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Guest NIC `i` with `addr`, a router when `gateway` is given, and extra routes.
    fn nic(i: usize, addr: &str, gateway: Option<&str>, routes: &[(&str, &str)]) -> NicPlan {
        let door = ip(&format!("169.254.1.{}", 10 + i));
        let mut guest_routes = vec![Route::host(door)];
        for (dst, via) in routes {
            guest_routes.push(Route {
                dst: dst.parse().unwrap(),
                gateway: Some(ip(via)),
                metric: None,
            });
        }
        if let Some(gw) = gateway {
            guest_routes.push(Route {
                dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0),
                gateway: Some(ip(gw)),
                metric: None,
            });
        }
        NicPlan {
            lower: format!("eth{i}"),
            slot: Slot(i),
            tap: Slot(i).tap(),
            door: Slot(i).door(),
            datapath: crate::config::Datapath::Macvtap,
            mac: Mac([2, 0x42, 0, 0, 0, i as u8]),
            mtu: 1500,
            addr: Some(addr.parse().unwrap()),
            gateway: gateway.map(ip),
            guest_routes,
            door_addr: door,
        }
    }

    fn decide(resolv: &str, guest_dns: &[&str]) -> Dns {
        let guest_dns: Vec<Ipv4Addr> = guest_dns.iter().map(|s| ip(s)).collect();
        Dns::decide(&DnsInput {
            resolv: &parse(resolv),
            guest_dns: &guest_dns,
            hostname: Some("vm1"),
        })
    }

    #[test]
    fn ipv6_only_nics_announce_nothing_by_dhcp_and_the_first_nic_with_ipv4_is_primary() {
        let v6only = |i: usize| NicPlan {
            addr: None,
            gateway: None,
            guest_routes: Vec::new(),
            ..nic(i, "10.0.0.1/24", None, &[])
        };
        let dns = decide(
            "nameserver 127.0.0.11\nnameserver 10.2.0.53\nsearch a.test\n",
            &[],
        );
        let nics = [v6only(0), nic(1, "10.2.0.5/24", None, &[])];
        assert_eq!(primary_nic(&nics), Some(1));
        let a = dns.announcements(&nics);
        assert_eq!(a[0], Announcement::default());
        assert_eq!(a[1].servers, [nics[1].door_addr, ip("10.2.0.53")]);
        assert_eq!(a[1].search, ["a.test"]);
        let only = [v6only(0)];
        assert_eq!(primary_nic(&only), None);
        assert_eq!(dns.announcements(&only), [Announcement::default()]);
        // Without IPv4 the door is asked over IPv6 (at its link-local address, which vminit
        // answers for where the door has no IPv6: `ipv6::announcer`).
        let over6 = dns.left_to_ipv6(&only);
        assert!(over6.door_over_ipv6 && !over6.gives_resolvers);
        assert!(!dns.left_to_ipv6(&nics).door_over_ipv6);
        // The door is the guest's, then: no second warning that the guest has no resolver.
        let resolv = parse("nameserver 127.0.0.11\n");
        assert_eq!(dns.no_resolver(&resolv, &only, &[]), None);
    }

    #[test]
    fn docker_20_10_user_network_forwards_everything_and_warns_naming_guest_dns() {
        let dns = decide("nameserver 127.0.0.11\noptions ndots:0\n", &[]);
        assert_eq!(dns.forward_to, [IpAddr::V4(DOCKER_DNS)]);
        assert_eq!(dns.forward, Forward::All);
        assert!(dns.direct.is_empty());
        assert_eq!(dns.warnings.len(), 1, "{:?}", dns.warnings);
        assert!(dns.warnings[0].contains("GUEST_DNS=ip"));
    }

    #[test]
    fn guest_dns_becomes_a_direct_resolver_and_the_door_keeps_only_unqualified_names() {
        let dns = decide("nameserver 127.0.0.11\n", &["10.1.0.53", "1.1.1.1"]);
        assert_eq!(dns.direct, vec![ip("10.1.0.53"), ip("1.1.1.1")]);
        assert_eq!(dns.forward, Forward::Unqualified);
        assert!(dns.warnings.is_empty(), "{:?}", dns.warnings);
    }

    #[test]
    fn docker_25_bare_upstreams_are_direct_and_host_ones_stay_behind_the_door() {
        let dns = decide(
            "nameserver 127.0.0.11\n# ExtServers: [10.1.0.53 host(192.168.1.1)]\n",
            &[],
        );
        assert_eq!(dns.direct, vec![ip("10.1.0.53")]);
        assert_eq!(dns.forward, Forward::Unqualified);
        // Only host() upstreams: Docker asks them from the host, forwarding keeps working.
        let dns = decide(
            "nameserver 127.0.0.11\n# ExtServers: [host(192.168.1.1) host(127.0.0.53)]\n",
            &[],
        );
        assert!(dns.direct.is_empty());
        assert_eq!(dns.forward, Forward::All);
        assert!(dns.warnings.is_empty(), "{:?}", dns.warnings);
    }

    #[test]
    fn guest_dns_replaces_dockers_bare_upstreams() {
        let dns = decide(
            "nameserver 127.0.0.11\n# ExtServers: [10.1.0.53]\n",
            &["10.9.0.53"],
        );
        assert_eq!(dns.direct, vec![ip("10.9.0.53")]);
    }

    #[test]
    fn kubernetes_resolvers_stay_direct_and_come_first() {
        let dns = decide(
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\n",
            &["1.1.1.1"],
        );
        assert!(dns.forward_to.is_empty());
        assert_eq!(dns.direct, vec![ip("10.96.0.10"), ip("1.1.1.1")]);
        assert_eq!(dns.domain.as_deref(), Some("default.svc.cluster.local"));
        assert!(dns.warnings.is_empty());
    }

    #[test]
    fn a_loopback_address_is_never_a_direct_resolver() {
        let dns = decide(
            "nameserver 127.0.0.53\nnameserver 0.0.0.0\n# ExtServers: [127.0.0.1]\n",
            &[],
        );
        assert_eq!(dns.forward_to, [IpAddr::from(ip("127.0.0.53"))]);
        assert!(dns.direct.is_empty());
    }

    #[test]
    fn a_container_with_only_ipv6_resolvers_gives_the_guest_the_door_for_its_loopback_one() {
        // A resolver of the pod on ::1 (a caching sidecar): the door forwards to it, over
        // the container's loopback, and DHCPv4 announces the door.
        let dns = decide("nameserver ::1\nnameserver fd00:1::53\n", &[]);
        assert_eq!(
            dns.forward_to,
            [IpAddr::from(std::net::Ipv6Addr::LOCALHOST)]
        );
        assert!(
            dns.direct.is_empty(),
            "fd00:1::53 goes by IPv6: {:?}",
            dns.direct
        );
        assert_eq!(dns.forward, Forward::All);
        let nics = [nic(0, "10.1.0.2/24", Some("10.1.0.1"), &[])];
        assert_eq!(dns.announcements(&nics)[0].servers, [nics[0].door_addr]);
        assert!(dns.gives_resolvers(&nics));
        assert_eq!(
            dns.no_resolver(&parse("nameserver ::1\n"), &nics, &[]),
            None
        );
        // Only non-loopback IPv6 ones: nothing by DHCPv4 (the guest gets them by IPv6).
        let resolv = parse("nameserver fd00:1::53\n");
        let dns = decide("nameserver fd00:1::53\n", &[]);
        assert!(dns.forward_to.is_empty() && dns.direct.is_empty());
        assert!(!dns.gives_resolvers(&nics));
        let v6: std::net::Ipv6Addr = "fd00:1::53".parse().unwrap();
        assert_eq!(dns.no_resolver(&resolv, &nics, &[v6]), None);
        // ... and a guest without IPv6 to reach them by: one line naming GUEST_DNS.
        let warning = dns.no_resolver(&resolv, &nics, &[]).expect("a warning");
        assert!(
            warning.contains("fd00:1::53") && warning.contains("GUEST_DNS="),
            "{warning}"
        );
        let nothing = Resolv::default();
        assert_eq!(decide("", &[]).no_resolver(&nothing, &nics, &[]), None);
    }

    #[test]
    fn the_primary_nic_announces_the_door_and_the_names_and_others_announce_nothing() {
        let nics = [
            nic(0, "10.2.0.5/24", None, &[]),
            nic(1, "10.1.0.2/24", Some("10.1.0.1"), &[]),
        ];
        let mut dns = decide("nameserver 127.0.0.11\nsearch example.test\n", &[]);
        dns.hostname = Some("vm1".into());
        let a = dns.announcements(&nics);
        assert_eq!(a[0], Announcement::default());
        assert_eq!(a[1].servers, vec![nics[1].door_addr]);
        assert_eq!(a[1].hostname.as_deref(), Some("vm1"));
        assert_eq!(a[1].domain.as_deref(), Some("example.test"));
        assert_eq!(a[1].search, vec!["example.test"]);
        // Without a default route anywhere, the first NIC is the primary one.
        let nics = [
            nic(0, "10.2.0.5/24", None, &[]),
            nic(1, "10.1.0.2/24", None, &[]),
        ];
        let a = dns.announcements(&nics);
        assert_eq!(a[0].servers, vec![nics[0].door_addr]);
        assert!(a[1].servers.is_empty() && a[1].hostname.is_none());
    }

    #[test]
    fn a_direct_resolver_is_announced_on_the_nic_that_reaches_it() {
        let nics = [
            nic(0, "10.1.0.2/24", Some("10.1.0.1"), &[]),
            nic(1, "10.2.0.5/24", None, &[("10.20.0.0/16", "10.2.0.1")]),
            nic(2, "10.3.0.5/16", None, &[("10.3.7.0/24", "10.3.0.1")]),
        ];
        let dns = decide(
            "nameserver 127.0.0.11\n",
            &[
                "10.2.0.53", // eth1's subnet
                "10.20.5.5", // eth1's route
                "10.3.7.53", // eth2: its /24 route beats its /16 subnet
                "8.8.8.8",   // only the default route: the primary NIC
                "10.1.0.53", // the primary NIC's subnet
            ],
        );
        let a = dns.announcements(&nics);
        assert_eq!(
            a[0].servers,
            vec![nics[0].door_addr, ip("8.8.8.8"), ip("10.1.0.53")]
        );
        assert_eq!(a[1].servers, vec![ip("10.2.0.53"), ip("10.20.5.5")]);
        assert_eq!(a[2].servers, vec![ip("10.3.7.53")]);
        assert!(a[1].search.is_empty() && a[2].domain.is_none());
    }

    #[test]
    fn the_most_specific_route_wins_across_nics() {
        let nics = [
            nic(0, "10.0.0.2/8", Some("10.0.0.1"), &[]),
            nic(1, "10.5.0.2/16", None, &[]),
        ];
        assert_eq!(nic_reaching(ip("10.5.1.1"), &nics), Some(1));
        assert_eq!(nic_reaching(ip("10.6.1.1"), &nics), Some(0));
        assert_eq!(nic_reaching(ip("192.0.2.1"), &nics), None);
    }

    #[test]
    fn hostnames_dnsmasq_would_misread_are_still_hostnames() {
        for name in ["123456789012", "ignore", "infinite", "5m", "12s", "a-b"] {
            assert_eq!(host_label(name).as_deref(), Some(name));
        }
        assert_eq!(host_label("MyBox").as_deref(), Some("mybox"));
        for bad in [
            "",
            "-a",
            "a-",
            "a_b",
            "a b",
            "a,b",
            "a\nb",
            "ü",
            "a\"b",
            &"x".repeat(64),
        ] {
            assert_eq!(host_label(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_invalid_hostname_is_left_out_with_a_warning() {
        let dns = Dns::decide(&DnsInput {
            resolv: &Resolv::default(),
            guest_dns: &[],
            hostname: Some("bad,name\nport=53.example"),
        });
        assert_eq!(dns.hostname, None);
        assert_eq!(dns.warnings.len(), 1);
        let dns = Dns::decide(&DnsInput {
            resolv: &Resolv::default(),
            guest_dns: &[],
            hostname: Some("web.example.com"),
        });
        assert_eq!(dns.hostname.as_deref(), Some("web"));
    }

    #[test]
    fn invalid_search_domains_are_left_out_and_the_list_is_cut_to_fit_option_119() {
        let long: Vec<String> = (0..10)
            .map(|i| format!("{i}{}.example", "x".repeat(30)))
            .collect();
        let dns = decide(
            &format!("search ok.test a,b bad\"q {}\n", long.join(" ")),
            &[],
        );
        assert_eq!(dns.search[0], "ok.test");
        assert!(dns.search.len() < 11);
        let size: usize = dns.search.iter().map(|d| d.len() + 2).sum();
        assert!(size <= 255, "{size}");
        assert_eq!(dns.warnings.len(), 3, "{:#?}", dns.warnings);
        assert!(dns.warnings[2].contains(long.last().unwrap()));
        assert_eq!(dns.domain.as_deref(), Some("ok.test"));
    }

    #[test]
    fn a_trailing_dot_is_the_root_and_is_dropped() {
        assert_eq!(domain_name("Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(domain_name("."), None);
        assert_eq!(domain_name("a..b"), None);
        assert_eq!(domain_name("_tcp.example").as_deref(), Some("_tcp.example"));
    }
}
