//! The `DISTRO-REPORT` block a distribution guest prints on its console
//! (tests/distro/common/usr/local/sbin/distro-report), parsed.

use std::collections::BTreeMap;

/// One ethernet NIC as the guest's `ip` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistroNic {
    /// The guest's name for it (`ens4`, `eth0`, …).
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    /// `ADDR/PREFIX`, empty when the NIC has no IPv4 address.
    pub addrs: Vec<String>,
    /// The NIC's IPv6 MTU (`/proc/sys/net/ipv6/conf/NIC/mtu`), `None` without IPv6.
    pub mtu6: Option<u32>,
}

/// One IPv6 address of an ethernet NIC, as `ip -6 addr` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistroAddr6 {
    /// The guest's name for the NIC.
    pub nic: String,
    /// `ADDR/PREFIX`.
    pub addr: String,
    /// `global`, `link`, ...
    pub scope: String,
    /// `dynamic`, `noprefixroute`, `tentative`, `dadfailed`, ...
    pub flags: Vec<String>,
}

/// `ip route get SERVER` for one resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteGet {
    pub server: String,
    /// The NIC the route leaves by (`none` when there is no route).
    pub dev: String,
    /// The gateway, `None` when the server is on-link.
    pub via: Option<String>,
}

/// A resolver the guest uses and where it has it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// The NIC that announced it (systemd-resolved's per-link servers), `global`, or
    /// `resolv.conf`.
    pub source: String,
    pub server: String,
}

/// What the guest's own tools said, once its network was online.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DistroReport {
    pub os: String,
    pub kernel: String,
    /// The network stack and its packages' versions, e.g. `networkd systemd=252.39-1~deb12u2 …`.
    pub client: String,
    /// The guest's uptime (s) when it reported.
    pub uptime: f64,
    pub nics: Vec<DistroNic>,
    /// `ip -4 route show table main`, one line each.
    pub routes: Vec<String>,
    /// Every IPv6 address of the ethernet NICs, link-local ones included.
    pub addrs6: Vec<DistroAddr6>,
    /// `ip -6 route show table main`, one line each.
    pub routes6: Vec<String>,
    /// `ip -6 neigh show`, one line each.
    pub neigh6: Vec<String>,
    /// The nameservers of /etc/resolv.conf (under systemd-resolved, its stub).
    pub resolv_conf: Vec<String>,
    pub resolvers: Vec<Resolver>,
    pub search: Vec<String>,
    pub route_gets: Vec<RouteGet>,
    /// Each name asked for (`distro_report.resolve=`) and the addresses it resolved to (empty:
    /// it did not resolve).
    pub resolved: BTreeMap<String, Vec<String>>,
    pub hostname: String,
    /// Units systemd reported as failed.
    pub failed_units: Vec<String>,
    /// The block's lines as printed (without the prefix), for logs and failure messages.
    pub lines: Vec<String>,
}

const PREFIX: &str = "DISTRO-REPORT ";

impl DistroReport {
    /// The last complete report (`begin` … `end`) in `console`, if any. Lines the console
    /// interleaved with other output (no prefix) are skipped.
    pub fn parse(console: &str) -> Option<DistroReport> {
        let lines: Vec<&str> = console
            .lines()
            .filter_map(|l| l.split_once(PREFIX).map(|(_, fact)| fact.trim_end()))
            .collect();
        let end = lines.iter().rposition(|l| *l == "end")?;
        let begin = lines[..end].iter().rposition(|l| *l == "begin")?;
        let mut r = DistroReport {
            lines: lines[begin..=end].iter().map(|l| (*l).to_owned()).collect(),
            ..DistroReport::default()
        };
        for line in &lines[begin + 1..end] {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "os" => r.os = rest.to_owned(),
                "kernel" => r.kernel = rest.to_owned(),
                "client" => r.client = rest.to_owned(),
                "uptime" => r.uptime = rest.parse().unwrap_or(0.0),
                "nic" => r.nics.push(parse_nic(rest)),
                "route" => r.routes.push(rest.to_owned()),
                "addr6" => r.addrs6.push(parse_addr6(rest)),
                "route6" => r.routes6.push(rest.to_owned()),
                "neigh6" => r.neigh6.push(rest.to_owned()),
                "resolv-conf" => {
                    r.resolv_conf = rest.split_whitespace().map(str::to_owned).collect();
                }
                "dns" => {
                    if let Some((source, server)) = rest.split_once(' ') {
                        r.resolvers.push(Resolver {
                            source: source.to_owned(),
                            server: server.trim().to_owned(),
                        });
                    }
                }
                "search" => r.search = rest.split_whitespace().map(str::to_owned).collect(),
                "route-get" => r.route_gets.push(parse_route_get(rest)),
                "resolve" => {
                    let (name, addrs) = rest.split_once(' ').unwrap_or((rest, "none"));
                    let addrs = if addrs == "none" {
                        Vec::new()
                    } else {
                        addrs.split(',').map(str::to_owned).collect()
                    };
                    r.resolved.insert(name.to_owned(), addrs);
                }
                "hostname" => r.hostname = rest.to_owned(),
                "failed" => r.failed_units.push(rest.to_owned()),
                _ => {}
            }
        }
        Some(r)
    }

    /// The NIC with this MAC (the container NIC it took over).
    pub fn nic_with_mac(&self, mac: &str) -> Option<&DistroNic> {
        self.nics.iter().find(|n| n.mac.eq_ignore_ascii_case(mac))
    }

    /// The default routes as `(gateway, dev)`; a correct setup has exactly one.
    pub fn default_routes(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .filter(|r| r.starts_with("default "))
            .map(|r| {
                (
                    word_after(r, "via").unwrap_or_default(),
                    word_after(r, "dev").unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The IPv6 default routes as `(gateway, dev)`; a correct setup has exactly one.
    pub fn default_routes6(&self) -> Vec<(String, String)> {
        self.routes6
            .iter()
            .filter(|r| r.starts_with("default "))
            .map(|r| {
                (
                    word_after(r, "via").unwrap_or_default(),
                    word_after(r, "dev").unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The global IPv6 addresses of the NIC `nic` (`ADDR/PREFIX`).
    pub fn global6(&self, nic: &str) -> Vec<&DistroAddr6> {
        self.addrs6
            .iter()
            .filter(|a| a.nic == nic && a.scope == "global")
            .collect()
    }

    /// The MAC `ip -6 neigh` holds for `addr` on `dev`, if any.
    pub fn neighbour6(&self, addr: &str, dev: &str) -> Option<String> {
        self.neigh6
            .iter()
            .find(|l| {
                l.split_whitespace().next() == Some(addr)
                    && word_after(l, "dev").as_deref() == Some(dev)
            })
            .and_then(|l| word_after(l, "lladdr"))
    }

    /// Every resolver the guest uses, once each, in the order reported.
    pub fn dns_servers(&self) -> Vec<String> {
        let mut servers: Vec<String> = Vec::new();
        for r in &self.resolvers {
            if !servers.contains(&r.server) {
                servers.push(r.server.clone());
            }
        }
        servers
    }

    /// `ip route get SERVER`, as reported.
    pub fn route_to(&self, server: &str) -> Option<&RouteGet> {
        self.route_gets.iter().find(|g| g.server == server)
    }

    /// The report's lines about resolvers and their routes, for failure messages.
    pub fn dns_summary(&self) -> String {
        let mut s = String::new();
        s += &format!("resolv.conf nameservers: {}\n", self.resolv_conf.join(" "));
        for r in &self.resolvers {
            s += &format!("dns {} {}\n", r.source, r.server);
        }
        for g in &self.route_gets {
            s += &format!(
                "ip route get {} -> dev {} via {}\n",
                g.server,
                g.dev,
                g.via.as_deref().unwrap_or("-")
            );
        }
        for (name, addrs) in &self.resolved {
            s += &format!("resolve {name} -> {addrs:?}\n");
        }
        s
    }
}

/// `ens4 mac=52:54:00:12:34:56 mtu=1500 ip=10.1.0.2/24`
fn parse_nic(text: &str) -> DistroNic {
    let (name, facts) = text.split_once(' ').unwrap_or((text, ""));
    let facts: BTreeMap<&str, &str> = facts
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let ip = facts.get("ip").copied().unwrap_or("none");
    DistroNic {
        name: name.to_owned(),
        mac: facts.get("mac").copied().unwrap_or_default().to_owned(),
        mtu: facts.get("mtu").and_then(|m| m.parse().ok()).unwrap_or(0),
        addrs: if ip == "none" || ip.is_empty() {
            Vec::new()
        } else {
            ip.split(',').map(str::to_owned).collect()
        },
        mtu6: facts.get("mtu6").and_then(|m| m.parse().ok()),
    }
}

/// `ens3 fd00:1::6/128 scope=global dynamic noprefixroute` (no flags: `-`)
fn parse_addr6(text: &str) -> DistroAddr6 {
    let mut words = text.split_whitespace();
    let nic = words.next().unwrap_or_default().to_owned();
    let addr = words.next().unwrap_or_default().to_owned();
    let scope = words
        .next()
        .and_then(|s| s.strip_prefix("scope="))
        .unwrap_or_default()
        .to_owned();
    DistroAddr6 {
        nic,
        addr,
        scope,
        flags: words.filter(|w| *w != "-").map(str::to_owned).collect(),
    }
}

/// `10.1.0.53 dev=ens4 via=-`
fn parse_route_get(text: &str) -> RouteGet {
    let mut words = text.split_whitespace();
    let server = words.next().unwrap_or_default().to_owned();
    let facts: BTreeMap<&str, &str> = words.filter_map(|kv| kv.split_once('=')).collect();
    RouteGet {
        server,
        dev: facts.get("dev").copied().unwrap_or("none").to_owned(),
        via: facts
            .get("via")
            .filter(|v| **v != "-")
            .map(|v| (*v).to_owned()),
    }
}

/// The word after `key` in a route line (`via`, `dev`).
fn word_after(line: &str, key: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == key)?;
    words.next().map(str::to_owned)
}
