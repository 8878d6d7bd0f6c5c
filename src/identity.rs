//! The identity record: what vminit took over from each NIC, kept in the namespace itself
//! (link aliases), and the recovery it allows after vminit was killed (pure).
//!
//! Every link vminit creates carries an alias starting with `vminit:`. A macvtap's alias
//! records the NIC it took over; a later run in the same network namespace (a container
//! restart in a Kubernetes pod keeps it) reads the aliases and puts each NIC back first.

use crate::netstate::{Link, NetState};
use crate::step::Step;
use crate::types::{Ipv4Net, Mac, Route, on_link_first};

/// Every link vminit creates carries an alias starting with this.
pub const ALIAS_PREFIX: &str = "vminit:";

/// Whether vminit made this link (an earlier run's, or this run's).
pub fn is_ours(link: &Link) -> bool {
    link.alias
        .as_deref()
        .is_some_and(|a| a.starts_with(ALIAS_PREFIX))
}

/// The alias of the door (the container's macvlan) on `lower`.
pub fn door_alias(lower: &str) -> String {
    format!("{ALIAS_PREFIX}door {lower}")
}

/// What a macvtap's alias records about the NIC it took over, so that a second run
/// in the same namespace can put the NIC back before starting again.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub lower: String,
    pub mac: Mac,
    pub addr: Ipv4Net,
    pub routes: Vec<Route>,
}

impl Identity {
    /// `vminit:nic eth0 02:42:ac:13:00:02 172.19.0.2/24 0.0.0.0/0>172.19.0.1@100,169.254.1.1/32`
    pub fn encode(&self) -> String {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let mut s = format!("{}/{}", r.dst.network(), r.dst.prefix);
                if let Some(gw) = r.gateway {
                    s.push_str(&format!(">{gw}"));
                }
                if let Some(m) = r.metric {
                    s.push_str(&format!("@{m}"));
                }
                s
            })
            .collect();
        format!(
            "{ALIAS_PREFIX}nic {} {} {} {}",
            self.lower,
            self.mac,
            self.addr,
            if routes.is_empty() {
                "-".into()
            } else {
                routes.join(",")
            }
        )
    }

    pub fn decode(alias: &str) -> Option<Identity> {
        let rest = alias.strip_prefix(ALIAS_PREFIX)?.strip_prefix("nic ")?;
        let mut words = rest.split(' ');
        let lower = words.next()?.to_string();
        let mac = words.next()?.parse().ok()?;
        let addr = words.next()?.parse().ok()?;
        let mut routes = Vec::new();
        match words.next()? {
            "-" => {}
            list => {
                for item in list.split(',') {
                    let (item, metric) = match item.split_once('@') {
                        Some((i, m)) => (i, Some(m.parse().ok()?)),
                        None => (item, None),
                    };
                    let (dst, gateway) = match item.split_once('>') {
                        Some((d, g)) => (d, Some(g.parse().ok()?)),
                        None => (item, None),
                    };
                    routes.push(Route {
                        dst: dst.parse().ok()?,
                        gateway,
                        metric,
                    });
                }
            }
        }
        Some(Identity {
            lower,
            mac,
            addr,
            routes,
        })
    }
}

/// The steps that undo what an earlier vminit left in this namespace (it was killed
/// before it could clean up): delete its links, give each NIC back its MAC, address
/// and routes. Empty when there is nothing to recover.
pub fn recovery(state: &NetState) -> Vec<Step> {
    let mut steps = Vec::new();
    for link in &state.links {
        let Some(alias) = link.alias.as_deref() else {
            continue;
        };
        if alias.starts_with(&format!("{ALIAS_PREFIX}door")) {
            steps.push(Step::DelLink {
                name: link.name.clone(),
            });
        }
    }
    for link in &state.links {
        let Some(id) = link.alias.as_deref().and_then(Identity::decode) else {
            continue;
        };
        steps.push(Step::DelLink {
            name: link.name.clone(),
        });
        let Some(lower) = state.link(&id.lower) else {
            continue;
        };
        if let Some(current) = lower.mac.filter(|m| *m != id.mac) {
            steps.push(Step::SetMac {
                dev: id.lower.clone(),
                mac: id.mac,
                old: current,
            });
        }
        if !state.addrs_of(lower.index).contains(&id.addr) {
            // What Docker and Kubernetes give an address; the alias does not record it.
            steps.push(Step::AddAddr {
                dev: id.lower.clone(),
                addr: id.addr,
                broadcast: id.addr.prefix < 31,
            });
        }
        let present = state.routes_of(lower.index);
        for route in on_link_first(id.routes)
            .into_iter()
            .filter(|r| !present.contains(r))
        {
            steps.push(Step::AddRoute {
                dev: id.lower.clone(),
                route,
                src: None,
                onlink: false,
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MAC0, Ns, docker_two_networks, ip, net, route};

    #[test]
    fn identity_survives_the_alias_round_trip() {
        let id = Identity {
            lower: "eth0".into(),
            mac: MAC0,
            addr: net("10.244.1.7/32"),
            routes: vec![
                route("169.254.1.1/32", None),
                Route {
                    dst: net("0.0.0.0/0"),
                    gateway: Some(ip("169.254.1.1")),
                    metric: Some(100),
                },
            ],
        };
        let alias = id.encode();
        assert!(alias.len() < 256, "fits IFALIASZ");
        assert_eq!(Identity::decode(&alias), Some(id));
        assert_eq!(Identity::decode(&door_alias("eth0")), None);
        assert_eq!(Identity::decode("something else"), None);
    }

    /// What the namespace looks like after a run was SIGKILLed: eth0 with a random MAC and
    /// no address, the macvtap and the door still there.
    fn killed_run() -> NetState {
        let mut state = Ns::new().nic(7, "eth0", Mac([0xaa; 6]), &[], &[]).0;
        let id = Identity {
            lower: "eth0".into(),
            mac: MAC0,
            addr: net("172.19.0.2/24"),
            routes: vec![route("0.0.0.0/0", Some("172.19.0.1"))],
        };
        for (index, name, kind, alias) in [
            (20, "vmtap0", "macvtap", id.encode()),
            (21, "vmlink0", "macvlan", door_alias("eth0")),
        ] {
            state.links.push(Link {
                index,
                name: name.into(),
                mac: Some(MAC0),
                mtu: 1500,
                kind: Some(kind.into()),
                alias: Some(alias),
                ethernet: true,
            });
        }
        state
    }

    #[test]
    fn recovery_puts_back_what_a_killed_run_left() {
        let state = killed_run();
        let cmds: Vec<String> = recovery(&state).iter().map(|s| s.to_string()).collect();
        assert_eq!(
            cmds,
            [
                "ip link del vmlink0",
                "ip link del vmtap0",
                "ip link set eth0 address 02:42:ac:13:00:02",
                "ip addr add 172.19.0.2/24 brd + dev eth0",
                "ip route add default via 172.19.0.1 dev eth0",
            ]
        );
        let ours: Vec<&str> = state
            .links
            .iter()
            .filter(|l| is_ours(l))
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(ours, ["vmtap0", "vmlink0"]);
    }

    #[test]
    fn a_clean_namespace_needs_no_recovery() {
        assert!(recovery(&docker_two_networks()).is_empty());
    }
}
