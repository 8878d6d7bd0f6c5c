//! The identity record: what vminit took over from each NIC, kept in the network namespace
//! itself (link aliases), and the recovery it allows after vminit was killed (pure).
//!
//! A container restart in a Kubernetes pod keeps the pod's network namespace and nothing
//! else, so the record lives there: in the aliases of links vminit creates on the NIC, each
//! starting with `vminit:`. The door carries the first part of the record; a record longer
//! than one alias (the kernel caps an alias at 255 bytes) continues on carrier links, down
//! macvlans that exist for nothing else. Every part is written before the first step that
//! changes the NIC, so a run killed at any moment leaves either an untouched NIC or a
//! complete record.
//!
//! ```text
//! vmlink0   vminit:door eth0 1/2 v1 02:42:ac:13:00:02;a 172.19.0.2/24 b=172.19.0.255;r 0.0.0.0/0 g=…
//! vmrec0.2  vminit:rec eth0 2/2 …;n 172.19.0.1 02:42:ac:13:00:01
//! vmtap0    vminit:nic eth0
//! ```

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::config::Datapath;
use crate::net::netstate::{
    IfAddr, IfAddr6, KernelRoute, KernelRoute6, Link, Neigh, Neigh6, NetState,
};
use crate::net::step::Step;
use crate::net::types::{IpNet, Mac, Route, Route6, RouteVia};

/// Every link vminit creates carries an alias starting with this.
pub const ALIAS_PREFIX: &str = "vminit:";

/// How many bytes of the record one alias carries (255 at most, with its prefix).
const CHUNK: usize = 180;

/// What vminit took over from one NIC: everything it changes there, so that it can be put
/// back exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The container NIC (`eth0`).
    pub lower: String,
    /// Its original MAC (the guest's).
    pub mac: Mac,
    /// Every IPv4 address it had, in the kernel's order.
    pub addrs: Vec<IfAddr>,
    /// Its routes in every table (not the kernel's subnet routes).
    pub routes: Vec<KernelRoute>,
    /// Its permanent neighbour entries (a MAC change flushes them).
    pub neighbours: Vec<Neigh>,
    /// Every IPv6 address it had, in the kernel's order.
    pub addrs6: Vec<IfAddr6>,
    /// Its configured IPv6 routes in every table.
    pub routes6: Vec<KernelRoute6>,
    /// Its permanent IPv6 neighbour entries.
    pub neighbours6: Vec<Neigh6>,
    /// The datapath that took it over: with the tap datapath, the NIC's ingress qdisc (the
    /// tc filters to the guest's tap) is vminit's too.
    pub datapath: Datapath,
}

/// Whether vminit made this link (an earlier run's, or this run's): its alias says so, or
/// it is a macvlan or macvtap with one of vminit's names and no alias yet (a run killed
/// between creating a link and naming it in its alias).
pub fn is_ours(link: &Link) -> bool {
    match link.alias.as_deref() {
        Some(alias) => alias.starts_with(ALIAS_PREFIX),
        None => match link.kind.as_deref() {
            Some("macvlan") => {
                numbered(&link.name, "vmlink")
                    || link
                        .name
                        .strip_prefix("vmrec")
                        .and_then(|rest| rest.split_once('.'))
                        .is_some_and(|(i, k)| numbered(i, "") && numbered(k, ""))
            }
            Some("macvtap") | Some("tun") => numbered(&link.name, "vmtap"),
            _ => false,
        },
    }
}

/// `PREFIX` followed by a decimal number.
fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The alias of the guest's macvtap on `lower`.
pub fn tap_alias(lower: &str) -> String {
    format!("{ALIAS_PREFIX}nic {}", escape(lower))
}

impl Identity {
    /// The record's aliases: the door's first, then one per carrier link.
    pub fn aliases(&self) -> Vec<String> {
        let text = self.encode();
        let chunks: Vec<&str> = split_at_boundaries(&text, CHUNK);
        let n = chunks.len();
        let lower = escape(&self.lower);
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let role = if i == 0 { "door" } else { "rec" };
                format!("{ALIAS_PREFIX}{role} {lower} {}/{n} {chunk}", i + 1)
            })
            .collect()
    }

    /// The record as text: `v1 MAC;a …;r …;n …;a6 …;r6 …;n6 …`, with `;t` after the MAC
    /// for the tap datapath.
    pub fn encode(&self) -> String {
        let mut entries = vec![format!("v1 {}", self.mac)];
        if self.datapath == Datapath::Tap {
            entries.push("t".into());
        }
        entries.extend(self.addrs.iter().map(encode_addr));
        entries.extend(self.routes.iter().map(encode_route));
        entries.extend(
            self.neighbours
                .iter()
                .map(|n| format!("n {} {}", n.addr, n.mac)),
        );
        entries.extend(self.addrs6.iter().map(encode_addr6));
        entries.extend(self.routes6.iter().map(encode_route6));
        entries.extend(self.neighbours6.iter().map(|n| {
            let router = if n.router { " router" } else { "" };
            format!("n6 {} {}{router}", n.addr, n.mac)
        }));
        entries.join(";")
    }

    /// Reads a record made by `encode` for the NIC `lower`; `None` if it is not one.
    pub fn decode(lower: &str, text: &str) -> Option<Identity> {
        let mut entries = text.split(';');
        let mac = entries.next()?.strip_prefix("v1 ")?.parse().ok()?;
        let mut id = Identity {
            lower: lower.to_string(),
            mac,
            addrs: Vec::new(),
            routes: Vec::new(),
            neighbours: Vec::new(),
            addrs6: Vec::new(),
            routes6: Vec::new(),
            neighbours6: Vec::new(),
            datapath: Datapath::Macvtap,
        };
        for entry in entries {
            let mut words = entry.split(' ');
            match words.next()? {
                "t" => id.datapath = Datapath::Tap,
                "a" => id.addrs.push(decode_addr(words)?),
                "r" => id.routes.push(decode_route(words)?),
                "n" => id.neighbours.push(Neigh {
                    addr: words.next()?.parse().ok()?,
                    mac: words.next()?.parse().ok()?,
                }),
                "a6" => id.addrs6.push(decode_addr6(words)?),
                "r6" => id.routes6.push(decode_route6(words)?),
                "n6" => id.neighbours6.push(Neigh6 {
                    addr: words.next()?.parse().ok()?,
                    mac: words.next()?.parse().ok()?,
                    router: match words.next() {
                        None => false,
                        Some("router") => true,
                        Some(_) => return None,
                    },
                }),
                _ => return None,
            }
        }
        Some(id)
    }
}

fn encode_addr(a: &IfAddr) -> String {
    let mut w = Words::new(format!("a {}", a.net));
    w.some("b", a.broadcast);
    w.some("l", a.label.as_deref().map(escape));
    w.addr_common(a.flags, a.scope, 0, a.lifetime);
    w.0
}

fn decode_addr<'a>(mut words: impl Iterator<Item = &'a str>) -> Option<IfAddr> {
    let mut a = IfAddr::plain(words.next()?.parse().ok()?);
    for word in words {
        let (key, value) = word.split_once('=')?;
        match key {
            "b" => a.broadcast = Some(value.parse().ok()?),
            "l" => a.label = Some(unescape(value)?),
            _ => decode_addr_common(key, value, &mut a.flags, &mut a.scope, &mut a.lifetime)?,
        }
    }
    Some(a)
}

/// Reads one of the words `Words::addr_common` writes; `None` for any other word.
fn decode_addr_common(
    key: &str,
    value: &str,
    flags: &mut u32,
    scope: &mut u8,
    lifetime: &mut Option<(u32, u32)>,
) -> Option<()> {
    match key {
        "f" => *flags = u32::from_str_radix(value, 16).ok()?,
        "s" => *scope = value.parse().ok()?,
        "v" => {
            let (valid, preferred) = value.split_once('/')?;
            *lifetime = Some((valid.parse().ok()?, preferred.parse().ok()?));
        }
        _ => return None,
    }
    Some(())
}

fn encode_route(r: &KernelRoute) -> String {
    let plain = KernelRoute::main(r.route.clone());
    let mut w = Words::route("r", &r.route);
    w.unless("t", r.table, plain.table);
    w.unless("p", r.protocol, plain.protocol);
    w.unless("s", r.scope, plain.scope);
    w.unless("k", r.kind, plain.kind);
    w.unless("o", r.tos, 0);
    w.route_tail(r.src, r.onlink, &r.metrics);
    w.0
}

fn decode_route<'a>(mut words: impl Iterator<Item = &'a str>) -> Option<KernelRoute> {
    let dst = words.next()?.parse().ok()?;
    // The plain route's scope depends on its gateway: read that first.
    let words: Vec<&str> = words.collect();
    let mut gateway = None;
    let mut metric = None;
    for word in &words {
        match word.split_once('=') {
            Some(("g", v)) => gateway = Some(v.parse::<Ipv4Addr>().ok()?),
            Some(("m", v)) => metric = Some(v.parse().ok()?),
            _ => {}
        }
    }
    let mut r = KernelRoute::main(Route {
        dst,
        gateway,
        metric,
    });
    for word in words {
        if word == "onlink" {
            r.onlink = true;
            continue;
        }
        let (key, value) = word.split_once('=')?;
        match key {
            "g" | "m" => {}
            "t" => r.table = value.parse().ok()?,
            "p" => r.protocol = value.parse().ok()?,
            "s" => r.scope = value.parse().ok()?,
            "k" => r.kind = value.parse().ok()?,
            "o" => r.tos = value.parse().ok()?,
            "src" => r.src = Some(value.parse().ok()?),
            "x" => r.metrics = decode_metrics(value)?,
            _ => return None,
        }
    }
    Some(r)
}

fn encode_addr6(a: &IfAddr6) -> String {
    let plain = IfAddr6::plain(a.net);
    let mut w = Words::new(format!("a6 {}", a.net));
    w.addr_common(a.flags, a.scope, plain.scope, a.lifetime);
    w.some("p", a.protocol);
    w.some("m", a.metric);
    w.0
}

fn decode_addr6<'a>(mut words: impl Iterator<Item = &'a str>) -> Option<IfAddr6> {
    let mut a = IfAddr6::plain(words.next()?.parse().ok()?);
    for word in words {
        let (key, value) = word.split_once('=')?;
        match key {
            "p" => a.protocol = Some(value.parse().ok()?),
            "m" => a.metric = Some(value.parse().ok()?),
            _ => decode_addr_common(key, value, &mut a.flags, &mut a.scope, &mut a.lifetime)?,
        }
    }
    Some(a)
}

fn encode_route6(r: &KernelRoute6) -> String {
    let plain = KernelRoute6::main(r.route.clone());
    let mut w = Words::route("r6", &r.route);
    w.unless("t", r.table, plain.table);
    w.unless("p", r.protocol, plain.protocol);
    w.unless("k", r.kind, plain.kind);
    w.unless("e", r.pref, 0);
    w.route_tail(r.src, r.onlink, &r.metrics);
    w.0
}

fn decode_route6<'a>(mut words: impl Iterator<Item = &'a str>) -> Option<KernelRoute6> {
    let mut r = KernelRoute6::main(Route6 {
        dst: words.next()?.parse().ok()?,
        gateway: None,
        metric: None,
    });
    for word in words {
        if word == "onlink" {
            r.onlink = true;
            continue;
        }
        let (key, value) = word.split_once('=')?;
        match key {
            "g" => r.route.gateway = Some(value.parse::<Ipv6Addr>().ok()?),
            "m" => r.route.metric = Some(value.parse().ok()?),
            "t" => r.table = value.parse().ok()?,
            "p" => r.protocol = value.parse().ok()?,
            "k" => r.kind = value.parse().ok()?,
            "e" => r.pref = value.parse().ok()?,
            "src" => r.src = Some(value.parse().ok()?),
            "x" => r.metrics = decode_metrics(value)?,
            _ => return None,
        }
    }
    Some(r)
}

/// One record entry being written: its first words, then ` key=value` for each attribute
/// that differs from what a plain entry of its kind has (and is read back as that default).
struct Words(String);

impl Words {
    fn new(head: String) -> Words {
        Words(head)
    }

    /// A route entry's first words, alike in both families: `TAG NETWORK/PREFIX [g=GATEWAY]
    /// [m=METRIC]`.
    fn route<N: IpNet>(tag: &str, route: &RouteVia<N>) -> Words {
        let dst = route.dst;
        let mut w = Words::new(format!("{tag} {}/{}", dst.network_addr(), dst.prefix_len()));
        w.some("g", route.gateway);
        w.some("m", route.metric);
        w
    }

    /// ` key=value` when there is a value.
    fn some(&mut self, key: &str, value: Option<impl std::fmt::Display>) {
        if let Some(value) = value {
            self.0 += &format!(" {key}={value}");
        }
    }

    /// ` key=value` unless the value is the default.
    fn unless<T: PartialEq + std::fmt::Display>(&mut self, key: &str, value: T, default: T) {
        self.some(key, (value != default).then_some(value));
    }

    /// What IPv4 and IPv6 addresses hold alike: flags (`f=HEX`), the scope unless it is
    /// the family's default (`s=N`), lifetimes (`v=VALID/PREFERRED`).
    fn addr_common(
        &mut self,
        flags: u32,
        scope: u8,
        default_scope: u8,
        lifetime: Option<(u32, u32)>,
    ) {
        self.some("f", (flags != 0).then(|| format!("{flags:x}")));
        self.unless("s", scope, default_scope);
        self.some(
            "v",
            lifetime.map(|(valid, preferred)| format!("{valid}/{preferred}")),
        );
    }

    /// What IPv4 and IPv6 routes end with alike: the source address, `onlink`, and the
    /// route metrics (`x=KEY:VALUE,...`).
    fn route_tail(
        &mut self,
        src: Option<impl std::fmt::Display>,
        onlink: bool,
        metrics: &[(u16, u32)],
    ) {
        self.some("src", src);
        if onlink {
            self.0 += " onlink";
        }
        let list: Vec<String> = metrics.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        self.some("x", (!list.is_empty()).then(|| list.join(",")));
    }
}

/// Route metrics as `route_tail` writes them.
fn decode_metrics(value: &str) -> Option<Vec<(u16, u32)>> {
    value
        .split(',')
        .map(|pair| {
            let (k, v) = pair.split_once(':')?;
            Some((k.parse().ok()?, v.parse().ok()?))
        })
        .collect()
}

/// Splits `text` into pieces of at most `size` bytes (it is ASCII: `escape` saw to that).
fn split_at_boundaries(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > size {
        let mut cut = size;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

/// `text` with every byte that is not a letter, digit or one of `._:-` as `%XX`: names and
/// labels can hold spaces, `;` or `=` and still be read back.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"._:-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut it = text.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

/// One of vminit's links, as its alias describes it.
enum Ours {
    /// The guest's macvtap.
    Tap,
    /// A door or carrier: part `k` of `n` of the record of its NIC.
    Part { k: usize, n: usize, text: String },
}

/// Reads an alias made by `tap_alias` or `Identity::aliases`: the NIC and what the link is.
fn parse_alias(alias: &str) -> Option<(String, Ours)> {
    let rest = alias.strip_prefix(ALIAS_PREFIX)?;
    let (role, rest) = rest.split_once(' ')?;
    let (lower, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let lower = unescape(lower)?;
    match role {
        "nic" => Some((lower, Ours::Tap)),
        "door" | "rec" => {
            let (part, text) = rest.split_once(' ')?;
            let (k, n) = part.split_once('/')?;
            let (k, n) = (k.parse().ok()?, n.parse().ok()?);
            (1..=n).contains(&k).then_some(())?;
            Some((
                lower,
                Ours::Part {
                    k,
                    n,
                    text: text.to_string(),
                },
            ))
        }
        _ => None,
    }
}

/// The complete records in the namespace, by NIC. A record with a part missing was never
/// finished: its NIC was not touched yet.
pub fn records(state: &NetState) -> Vec<Identity> {
    let mut parts: BTreeMap<String, (usize, BTreeMap<usize, String>)> = BTreeMap::new();
    for alias in state.links.iter().filter_map(|l| l.alias.as_deref()) {
        if let Some((lower, Ours::Part { k, n, text })) = parse_alias(alias) {
            let entry = parts.entry(lower).or_insert((n, BTreeMap::new()));
            if entry.0 == n {
                entry.1.insert(k, text);
            }
        }
    }
    parts
        .into_iter()
        .filter(|(_, (n, chunks))| chunks.len() == *n)
        .filter_map(|(lower, (_, chunks))| {
            let text: String = chunks.into_values().collect();
            Identity::decode(&lower, &text)
        })
        .collect()
}

/// The steps that undo what an earlier vminit left in this namespace (it was killed
/// before it could clean up): delete its links, give each NIC back its MAC, its addresses
/// in their order, its routes and permanent neighbours. Empty when there is nothing to
/// recover. Steps that find their object already in place fail harmlessly (`EEXIST`).
pub fn recovery(state: &NetState) -> Vec<Step> {
    let mut steps: Vec<Step> = state
        .links
        .iter()
        .filter(|l| is_ours(l))
        .map(|l| Step::DelLink {
            name: l.name.clone(),
        })
        .collect();
    for id in records(state) {
        let Some(lower) = state.link(&id.lower) else {
            continue;
        };
        steps.extend(restore(&id, lower, state));
    }
    steps
}

/// Puts one NIC back as its record says.
fn restore(id: &Identity, lower: &Link, state: &NetState) -> Vec<Step> {
    let dev = &id.lower;
    let mut steps = Vec::new();
    if id.datapath == Datapath::Tap {
        // Its filters send the network's frames to a tap that is gone.
        steps.push(Step::DelIngress { dev: dev.clone() });
    }
    let mac_changes = lower.mac.is_some_and(|m| m != id.mac);
    if let Some(current) = lower.mac.filter(|_| mac_changes) {
        steps.push(Step::SetMac {
            dev: dev.clone(),
            mac: id.mac,
            old: current,
        });
    }
    let current = state.addrs_of(lower.index);
    let nets = |addrs: &[IfAddr]| addrs.iter().map(|a| a.net).collect::<Vec<_>>();
    let ours: Vec<IfAddr> = current
        .iter()
        .filter(|a| id.addrs.iter().any(|r| r.net == a.net))
        .cloned()
        .collect();
    let addrs_change = nets(&ours) != nets(&id.addrs);
    if addrs_change {
        // Delete what is there of the record and add it all back, primary first, so that
        // the order (primary, secondaries) is the original one.
        for addr in ours.iter().rev() {
            steps.push(Step::del_addr(dev.clone(), addr.clone()));
        }
        for addr in &id.addrs {
            steps.push(Step::add_addr(dev.clone(), addr.clone()));
        }
    }
    let present = state.routes_of(lower.index);
    let mut routes: Vec<&KernelRoute> = id
        .routes
        .iter()
        .filter(|r| addrs_change || !present.iter().any(|p| p.same_key(r)))
        .collect();
    routes.sort_by_key(|r| r.route.gateway.is_some());
    for route in routes {
        steps.push(Step::add_route(dev.clone(), route.clone()));
    }
    let neighbours = state.neighbours_of(lower.index);
    for neigh in id
        .neighbours
        .iter()
        .filter(|n| mac_changes || !neighbours.contains(n))
    {
        steps.push(Step::add_neigh(dev.clone(), *neigh));
    }
    steps.extend(restore6(id, lower, state, mac_changes));
    steps
}

/// Puts one NIC's IPv6 addresses, routes and permanent neighbours back as its record says.
fn restore6(id: &Identity, lower: &Link, state: &NetState, mac_changes: bool) -> Vec<Step> {
    let dev = &id.lower;
    let mut steps = Vec::new();
    let nets = |addrs: &[IfAddr6]| addrs.iter().map(|a| a.net).collect::<Vec<_>>();
    let ours: Vec<IfAddr6> = state
        .addrs6_of(lower.index)
        .into_iter()
        .filter(|a| id.addrs6.iter().any(|r| r.net == a.net))
        .collect();
    let addrs_change = nets(&ours) != nets(&id.addrs6);
    if addrs_change {
        // The kernel puts a new IPv6 address first among those of its scope: delete what
        // is there of the record and add it all back, last first, so the order is the
        // original one.
        for addr in &ours {
            steps.push(Step::del_addr(dev.clone(), addr.clone()));
        }
        for addr in id.addrs6.iter().rev() {
            steps.push(Step::add_addr(dev.clone(), addr.clone()));
        }
    }
    // IPv6 routes outlive the addresses, but lose a `src` that went: one that differs from
    // the record is replaced.
    let present = state.routes6_of(lower.index);
    let mut routes: Vec<&KernelRoute6> =
        id.routes6.iter().filter(|r| !present.contains(r)).collect();
    routes.sort_by_key(|r| r.route.gateway.is_some());
    for route in routes {
        if let Some(old) = present.iter().find(|p| p.same_key(route)) {
            steps.push(Step::del_route(dev.clone(), old.clone()));
        }
        steps.push(Step::add_route(dev.clone(), route.clone()));
    }
    let neighbours = state.neighbours6_of(lower.index);
    for neigh in id
        .neighbours6
        .iter()
        .filter(|n| mac_changes || !neighbours.contains(n))
    {
        steps.push(Step::add_neigh(dev.clone(), *neigh));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::netstate::{Addr, IFA_F_SECONDARY};
    use crate::net::types::Route6;
    use crate::testing::{MAC0, Ns, docker_two_networks, ip, net, route};

    fn identity() -> Identity {
        let mut secondary = IfAddr::plain(net("172.19.0.9/24"));
        secondary.flags = IFA_F_SECONDARY;
        secondary.label = Some("eth0:a b;c=d".into());
        secondary.lifetime = Some((3600, 1800));
        let mut primary = IfAddr::plain(net("172.19.0.2/24"));
        primary.broadcast = Some(ip("172.19.0.255"));
        let mut other_table = KernelRoute::main(route("10.9.0.0/16", Some("172.19.0.254")));
        other_table.table = 1000;
        other_table.protocol = 186;
        other_table.src = Some(ip("172.19.0.2"));
        other_table.onlink = true;
        other_table.metrics = vec![(2, 1400)];
        other_table.tos = 16;
        let mut default = KernelRoute::main(route("0.0.0.0/0", Some("172.19.0.1")));
        default.route.metric = Some(100);
        Identity {
            lower: "eth0".into(),
            mac: MAC0,
            addrs: vec![primary, secondary],
            routes: vec![default, other_table],
            neighbours: vec![Neigh {
                addr: ip("172.19.0.1"),
                mac: Mac([2, 0x42, 0xac, 0x13, 0, 1]),
            }],
            addrs6: Vec::new(),
            routes6: Vec::new(),
            neighbours6: Vec::new(),
            datapath: Datapath::Macvtap,
        }
    }

    #[test]
    fn a_record_survives_encoding_with_everything_it_holds() {
        let id = identity();
        assert_eq!(Identity::decode("eth0", &id.encode()), Some(id));
        assert_eq!(Identity::decode("eth0", "something else"), None);
    }

    #[test]
    fn every_alias_fits_the_kernels_limit_however_long_the_record() {
        let mut id = identity();
        for i in 0..40 {
            id.routes.push(KernelRoute::main(route(
                &format!("10.{i}.0.0/16"),
                Some("172.19.0.1"),
            )));
        }
        let aliases = id.aliases();
        assert!(aliases.len() > 3, "a long record spans several links");
        assert!(aliases.iter().all(|a| a.len() <= 255), "{aliases:?}");
        assert!(aliases[0].starts_with("vminit:door eth0 1/"));
        assert!(aliases[1].starts_with("vminit:rec eth0 2/"));
        let state = with_links(Ns::new().0, &aliases);
        assert_eq!(records(&state), vec![id]);
    }

    #[test]
    fn a_record_with_a_part_missing_is_not_read() {
        let mut id = identity();
        for i in 0..10 {
            id.routes
                .push(KernelRoute::main(route(&format!("10.{i}.0.0/16"), None)));
        }
        let mut aliases = id.aliases();
        aliases.remove(1);
        let state = with_links(Ns::new().0, &aliases);
        assert!(records(&state).is_empty());
        // Its links are still deleted.
        assert_eq!(recovery(&state).len(), aliases.len());
    }

    /// `state` with one link of ours per alias.
    fn with_links(mut state: NetState, aliases: &[String]) -> NetState {
        for (i, alias) in aliases.iter().enumerate() {
            state.links.push(Link {
                index: 20 + i as u32,
                name: format!("vmrec{i}"),
                mac: None,
                mtu: 1500,
                kind: Some("macvlan".into()),
                alias: Some(alias.clone()),
                ethernet: true,
            });
        }
        state
    }

    /// What the namespace looks like after a run was SIGKILLed once the NIC was taken over:
    /// eth0 with a random MAC and the kept secondary only, the door, a carrier and the tap.
    fn killed_run() -> NetState {
        let id = identity();
        let mut state = Ns::new().nic(7, "eth0", Mac([0xaa; 6]), &[], &[]).0;
        state.addrs.push(Addr {
            index: 7,
            addr: IfAddr {
                flags: 0,
                ..id.addrs[1].clone()
            },
        });
        let mut aliases = id.aliases();
        aliases.push(tap_alias("eth0"));
        with_links(state, &aliases)
    }

    #[test]
    fn recovery_puts_back_the_mac_the_address_order_routes_and_neighbours() {
        let state = killed_run();
        let ours = state.links.iter().filter(|l| is_ours(l)).count();
        assert!(ours >= 3, "door, carrier(s), tap");
        let cmds: Vec<String> = recovery(&state).iter().map(|s| s.to_string()).collect();
        let dels: Vec<String> = (0..ours).map(|i| format!("ip link del vmrec{i}")).collect();
        assert_eq!(cmds[..ours], dels);
        assert_eq!(
            cmds[ours..],
            [
                "ip link set eth0 address 02:42:ac:13:00:02",
                "ip addr del 172.19.0.9/24 dev eth0",
                "ip addr add 172.19.0.2/24 brd 172.19.0.255 dev eth0",
                "ip addr add 172.19.0.9/24 dev eth0 label eth0:a b;c=d valid_lft 3600 preferred_lft 1800",
                "ip route add default via 172.19.0.1 metric 100 dev eth0",
                "ip route add 10.9.0.0/16 via 172.19.0.254 table 1000 tos 16 dev eth0 onlink src 172.19.0.2 proto 186 metric-2 1400",
                "ip neigh add 172.19.0.1 lladdr 02:42:ac:13:00:01 nud permanent dev eth0",
            ]
        );
    }

    #[test]
    fn a_tap_record_says_so_and_only_its_recovery_deletes_the_nics_ingress_qdisc() {
        let mut id = identity();
        id.datapath = Datapath::Tap;
        let text = id.encode();
        assert!(text.starts_with("v1 02:42:ac:13:00:02;t;a "), "{text}");
        assert_eq!(Identity::decode("eth0", &text), Some(id.clone()));
        let tap_state = with_links(Ns::new().nic(7, "eth0", MAC0, &[], &[]).0, &id.aliases());
        let cmds: Vec<String> = recovery(&tap_state).iter().map(|s| s.to_string()).collect();
        assert!(
            cmds.contains(&"tc qdisc del dev eth0 ingress".to_string()),
            "{cmds:?}"
        );
        // A macvtap run's recovery leaves the NIC's qdiscs alone (a user's, if any).
        let cmds: Vec<String> = recovery(&killed_run())
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(!cmds.iter().any(|c| c.starts_with("tc ")), "{cmds:?}");
    }

    #[test]
    fn a_run_killed_before_it_changed_the_nic_only_loses_its_links() {
        // The record is complete, the NIC untouched: its MAC, addresses in order, routes
        // and neighbours are all there.
        let id = identity();
        let mut state = Ns::new().nic(7, "eth0", MAC0, &[], &[]).0;
        for addr in &id.addrs {
            state.addrs.push(Addr {
                index: 7,
                addr: addr.clone(),
            });
        }
        for route in &id.routes {
            state.routes.push(crate::net::netstate::RouteEntry {
                index: 7,
                route: route.clone(),
            });
        }
        for neigh in &id.neighbours {
            state.neighbours.push(crate::net::netstate::NeighEntry {
                index: 7,
                neigh: *neigh,
            });
        }
        let state = with_links(state, &id.aliases());
        let steps = recovery(&state);
        assert!(
            steps.iter().all(|s| matches!(s, Step::DelLink { .. })),
            "{steps:?}"
        );
    }

    #[test]
    fn names_and_labels_with_spaces_and_separators_survive_the_alias() {
        let mut id = identity();
        id.lower = "we ird;=%".into();
        let state = with_links(Ns::new().0, &id.aliases());
        assert_eq!(records(&state), vec![id]);
    }

    #[test]
    fn a_link_of_ours_killed_before_its_alias_is_still_ours_and_a_users_is_not() {
        let link = |name: &str, kind: &str, alias: Option<&str>| Link {
            index: 9,
            name: name.into(),
            mac: None,
            mtu: 1500,
            kind: Some(kind.into()),
            alias: alias.map(str::to_string),
            ethernet: true,
        };
        assert!(is_ours(&link("vmlink0", "macvlan", None)));
        assert!(is_ours(&link("vmrec1.2", "macvlan", None)));
        assert!(is_ours(&link("vmtap3", "macvtap", None)));
        // The tap datapath's tap; a user's tun of another name (slirp4netns' tap0) is not.
        assert!(is_ours(&link("vmtap3", "tun", None)));
        assert!(!is_ours(&link("tap0", "tun", None)));
        assert!(is_ours(&link("anything", "veth", Some("vminit:nic eth0"))));
        assert!(!is_ours(&link("vmlink1", "veth", None)), "a user's veth");
        assert!(
            !is_ours(&link("vmlink0", "macvlan", Some("mine"))),
            "a user's alias"
        );
        assert!(!is_ours(&link("vmlinkx", "macvlan", None)));
    }

    /// The identity of a dual-stack NIC: a Docker IPv6 address and the kernel's link-local
    /// address, a default route, a route in another table and a permanent router neighbour.
    fn identity6() -> Identity {
        let mut id = identity();
        let mut global = IfAddr6::plain("fd00:1::2/64".parse().unwrap());
        global.flags = 0x02;
        let mut ll = IfAddr6::plain("fe80::42:acff:fe13:2/64".parse().unwrap());
        ll.protocol = Some(3);
        let mut kept = IfAddr6::plain("fd00:7::9/64".parse().unwrap());
        kept.lifetime = Some((600, 300));
        kept.metric = Some(77);
        id.addrs6 = vec![kept, global, ll];
        let default = KernelRoute6::main(Route6 {
            dst: "::/0".parse().unwrap(),
            gateway: Some("fd00:1::1".parse().unwrap()),
            metric: Some(1024),
        });
        let mut other = KernelRoute6::main(Route6 {
            dst: "fd00:99::/64".parse().unwrap(),
            gateway: Some("fe80::1".parse().unwrap()),
            metric: Some(5),
        });
        other.table = 100;
        other.pref = 1;
        other.protocol = 186;
        other.onlink = true;
        other.src = Some("fd00:7::9".parse().unwrap());
        other.metrics = vec![(2, 1280)];
        id.routes6 = vec![default, other];
        id.neighbours6 = vec![Neigh6 {
            addr: "fe80::1".parse().unwrap(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            router: true,
        }];
        id
    }

    #[test]
    fn an_ipv6_record_survives_encoding_and_the_alias_limit() {
        let id = identity6();
        assert_eq!(Identity::decode("eth0", &id.encode()), Some(id.clone()));
        let aliases = id.aliases();
        assert!(aliases.iter().all(|a| a.len() <= 255), "{aliases:?}");
        let state = with_links(Ns::new().0, &aliases);
        assert_eq!(records(&state), vec![id]);
    }

    #[test]
    fn recovery_puts_back_the_ipv6_addresses_in_their_order_routes_and_neighbours() {
        // Killed after the takeover: eth0 keeps fd00:7::9 only (re-added), no routes.
        let id = identity6();
        let mut state = killed_run();
        state.addrs6.push(crate::net::netstate::Addr6 {
            index: 7,
            addr: id.addrs6[0].clone(),
            reported_flags: 0x80,
        });
        // A record of the IPv6 identity replaces the IPv4-only one on the links.
        state.links.retain(|l| !is_ours(l));
        let mut aliases = id.aliases();
        aliases.push(tap_alias("eth0"));
        let state = with_links(state, &aliases);
        let cmds: Vec<String> = recovery(&state).iter().map(|s| s.to_string()).collect();
        let v6: Vec<&String> = cmds.iter().filter(|c| c.starts_with("ip -6")).collect();
        assert_eq!(
            v6,
            [
                "ip -6 addr del fd00:7::9/64 dev eth0",
                "ip -6 addr add fe80::42:acff:fe13:2/64 dev eth0 proto 3",
                "ip -6 addr add fd00:1::2/64 dev eth0 nodad",
                "ip -6 addr add fd00:7::9/64 dev eth0 metric 77 valid_lft 600 preferred_lft 300",
                "ip -6 route add default via fd00:1::1 metric 1024 dev eth0",
                "ip -6 route add fd00:99::/64 via fe80::1 metric 5 table 100 dev eth0 onlink src fd00:7::9 proto 186 pref high metric-2 1280",
                "ip -6 neigh add fe80::1 lladdr 02:00:00:00:00:01 nud permanent router dev eth0",
            ]
        );
    }

    #[test]
    fn a_clean_namespace_needs_no_recovery() {
        assert!(recovery(&docker_two_networks()).is_empty());
    }
}
