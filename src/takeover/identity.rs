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
    Addr6, IfAddr, IfAddr6, KernelRoute, KernelRoute6, Link, Neigh, Neigh6, NetState,
};
use crate::net::step::Step;
use crate::net::types::{IpNet, Mac, Route, Route6, RouteVia};

/// `IFA_F_PERMANENT`: an IPv6 address configured, not learned from the network (SLAAC).
const IFA_F_PERMANENT: u32 = 0x80;

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
    /// Its `arp_ignore`, when vminit changed it (a macvlan NIC with macvtap: see
    /// `plan::answer_arp_for_own_addresses_only`).
    pub arp_ignore: Option<u32>,
}

/// The links vminit makes, by role. Each role has one name pattern, its link kinds and one
/// alias: `claim` holds a link to all of them. A new datapath adds its role here (or a kind
/// to a role), its name in `role_by_name`, its kinds in `Role::kinds` and its alias in
/// `alias_fits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The door: the container's bridge-mode macvlan on the NIC (`vmlinkN`), carrying the
    /// record's first part.
    Door,
    /// A carrier of the record's part K (K ≥ 2): a down macvlan on the NIC (`vmrecN.K`).
    Carrier(usize),
    /// The guest's NIC (`vmtapN`): a macvtap on the NIC, or with the tap datapath a tap
    /// (`tun` device) joined to the NIC by tc, which has no lower link.
    Tap,
}

/// The kind of the tap datapath's tap: it sits on no link, its alias names the NIC.
const TUN: &str = "tun";

impl Role {
    /// The link kinds vminit gives a link of this role.
    fn kinds(self) -> &'static [&'static str] {
        match self {
            Role::Door | Role::Carrier(_) => &["macvlan"],
            Role::Tap => &["macvtap", TUN],
        }
    }
}

/// The role and slot of a name vminit gives its links (`vmlink3`: the door of slot 3,
/// `vmrec3.2`: the carrier of part 2 of slot 3's record, `vmtap3`); `None` for any other.
pub fn role_by_name(name: &str) -> Option<(Role, usize)> {
    let number = |digits: &str| -> Option<usize> {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    if let Some(n) = name.strip_prefix("vmlink") {
        return Some((Role::Door, number(n)?));
    }
    if let Some(n) = name.strip_prefix("vmtap") {
        return Some((Role::Tap, number(n)?));
    }
    let (slot, k) = name.strip_prefix("vmrec")?.split_once('.')?;
    let k = number(k)?;
    (k >= 2).then_some((Role::Carrier(k), number(slot)?))
}

/// Whether vminit keeps `name` for its own links: a link so named is never the guest's.
pub fn reserved_name(name: &str) -> bool {
    role_by_name(name).is_some()
}

/// One of vminit's links, as recovery trusts it.
#[derive(Clone, Debug, PartialEq)]
pub struct Own {
    pub name: String,
    pub role: Role,
    pub slot: usize,
    /// The container NIC it sits on.
    pub lower: String,
    /// Its part of the record: part `k` of `n`, and the text (doors and carriers that have
    /// their alias; a link of a run killed before it named the link has none).
    part: Option<(usize, usize, String)>,
}

/// What recovery makes of one link.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// An ordinary link: nothing about it says vminit.
    Other,
    /// A link vminit made: its name, kind, lower link and alias are what vminit gives.
    Ours(Own),
    /// It bears vminit's alias but is not what vminit makes (why, as one clause): left alone.
    Foreign(String),
}

/// Whether vminit made `link`, judged by everything vminit gives a link: a name of one of its
/// roles, that role's kind, a lower link in this namespace that is not vminit's own, and an
/// alias that is exactly the role's (or none: a run killed between creating the link and
/// naming it). An alias that starts with `vminit:` proves nothing by itself: anyone with
/// `NET_ADMIN` can set one.
pub fn claim(link: &Link, state: &NetState) -> Claim {
    let marked = link
        .alias
        .as_deref()
        .is_some_and(|a| a.starts_with(ALIAS_PREFIX));
    let foreign = |why: String| {
        if marked {
            Claim::Foreign(why)
        } else {
            Claim::Other
        }
    };
    let Some((role, slot)) = role_by_name(&link.name) else {
        return foreign("its name is not one vminit gives its links".into());
    };
    let kind = link.kind.as_deref().unwrap_or("a device without a kind");
    if !role.kinds().contains(&kind) {
        return foreign(format!(
            "it is a {kind}, not a {}",
            role.kinds().join(" or ")
        ));
    }
    let lower = if kind == TUN {
        // The tap datapath's tap: its NIC is the one its alias names.
        let Some(alias) = link.alias.as_deref().filter(|_| marked) else {
            return Claim::Ours(Own {
                name: link.name.clone(),
                role,
                slot,
                lower: String::new(),
                part: None,
            });
        };
        let named = alias
            .strip_prefix(ALIAS_PREFIX)
            .and_then(|rest| rest.strip_prefix("nic "))
            .and_then(unescape);
        named.and_then(|n| state.link(&n))
    } else if link.lower_netns.is_some() {
        nic_beside(link, link.alias.as_deref().filter(|_| marked), state)
    } else {
        link.lower
            .filter(|&i| i != link.index)
            .and_then(|i| state.links.iter().find(|l| l.index == i))
    };
    let Some(lower) = lower else {
        return foreign("it sits on no link of this namespace".into());
    };
    if reserved_name(&lower.name) {
        return foreign(format!("it sits on {}, a link of vminit's own", lower.name));
    }
    let part = match link.alias.as_deref() {
        None => None,
        Some(_) if !marked => return Claim::Other,
        Some(alias) => match alias_fits(role, &lower.name, alias) {
            Ok(part) => part,
            Err(why) => return Claim::Foreign(why),
        },
    };
    Claim::Ours(Own {
        name: link.name.clone(),
        role,
        slot,
        lower: lower.name.clone(),
        part,
    })
}

/// The NIC of a macvlan or macvtap that hangs on a link of another namespace. On a macvlan
/// NIC (Docker `-d macvlan`) the kernel puts what vminit stacks on the NIC onto the NIC's own
/// lower link, the host's NIC, so `IFLA_LINK` names that link (by its index over there), not
/// the NIC. The NIC is then the link of this namespace, not one of vminit's, that hangs on the
/// same link: the one `alias` names, else (a link of a run killed before it named it) the
/// only one.
fn nic_beside<'a>(link: &Link, alias: Option<&str>, state: &'a NetState) -> Option<&'a Link> {
    let mut beside = state.links.iter().filter(|l| {
        l.index != link.index
            && !reserved_name(&l.name)
            && l.lower == link.lower
            && l.lower_netns == link.lower_netns
    });
    let named = alias
        .and_then(|a| a.strip_prefix(ALIAS_PREFIX))
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(unescape);
    match named {
        Some(name) => beside.find(|l| l.name == name),
        None => {
            let first = beside.next()?;
            beside.next().is_none().then_some(first)
        }
    }
}

/// Whether `alias` is the alias vminit gives a link of `role` on `lower`; the record's part
/// it carries, if any.
fn alias_fits(
    role: Role,
    lower: &str,
    alias: &str,
) -> Result<Option<(usize, usize, String)>, String> {
    let rest = alias.strip_prefix(ALIAS_PREFIX).unwrap_or(alias);
    let (word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let (named, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if unescape(named).as_deref() != Some(lower) {
        return Err(format!(
            "its alias names a NIC other than {lower}, the link it sits on"
        ));
    }
    let part = |expected_k: Option<usize>| -> Option<(usize, usize, String)> {
        let (kn, text) = rest.split_once(' ')?;
        let (k, n) = kn.split_once('/')?;
        let (k, n): (usize, usize) = (k.parse().ok()?, n.parse().ok()?);
        let fits = match expected_k {
            Some(expected) => k == expected && k <= n,
            None => k == 1 && n >= 1,
        };
        fits.then(|| (k, n, text.to_string()))
    };
    let found = match (role, word) {
        (Role::Tap, "nic") if rest.is_empty() => return Ok(None),
        (Role::Door, "door") => part(None),
        (Role::Carrier(k), "rec") => part(Some(k)),
        _ => None,
    };
    found
        .map(Some)
        .ok_or_else(|| format!("its alias is not the one vminit gives its {role:?} links"))
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
    /// for the tap datapath and `;i N` (the NIC's `arp_ignore`) when vminit changes it.
    pub fn encode(&self) -> String {
        let mut entries = vec![format!("v1 {}", self.mac)];
        if self.datapath == Datapath::Tap {
            entries.push("t".into());
        }
        if let Some(value) = self.arp_ignore {
            entries.push(format!("i {value}"));
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
            arp_ignore: None,
        };
        for entry in entries {
            let mut words = entry.split(' ');
            match words.next()? {
                "t" => id.datapath = Datapath::Tap,
                "i" => id.arp_ignore = Some(words.next()?.parse().ok()?),
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

/// What recovery will do: the steps, and one warning line per link it leaves alone.
#[derive(Debug, Default)]
pub struct Recovery {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

/// The records in the namespace: for each NIC and slot, the record its links carry, read
/// and checked against the namespace (`Ok`), or why it is not trusted (`Err`, with the links
/// it was on). A record with a part missing was never finished: its NIC was not touched
/// yet, and it is left out.
fn read_records(own: &[Own], state: &NetState) -> Vec<(Vec<String>, Result<Identity, String>)> {
    let mut slots: BTreeMap<(&str, usize), Vec<&Own>> = BTreeMap::new();
    for link in own {
        slots
            .entry((&link.lower, link.slot))
            .or_default()
            .push(link);
    }
    let mut out = Vec::new();
    for ((lower, _), links) in slots {
        let parts: Vec<&(usize, usize, String)> =
            links.iter().filter_map(|l| l.part.as_ref()).collect();
        let Some(n) = parts.iter().find(|p| p.0 == 1).map(|p| p.1) else {
            continue;
        };
        let mut chunks: BTreeMap<usize, &str> = BTreeMap::new();
        for (k, _, text) in parts.iter().filter(|(_, m, _)| *m == n) {
            chunks.insert(*k, text);
        }
        if chunks.len() != n {
            continue;
        }
        let text: String = chunks.into_values().collect();
        let names = links.iter().map(|l| l.name.clone()).collect();
        // The guest's macvtaps on this NIC, whatever their slot.
        let taps: Vec<&Link> = own
            .iter()
            .filter(|o| o.role == Role::Tap && o.lower == lower)
            .filter_map(|o| state.link(&o.name))
            .collect();
        let checked = match (Identity::decode(lower, &text), state.link(lower)) {
            (Some(id), Some(nic)) => consistent(&id, nic, &taps, state).map(|()| id),
            (None, _) => Err("its record is not one vminit writes".to_string()),
            (Some(_), None) => Err(format!("{lower} is gone")),
        };
        out.push((names, checked));
    }
    // Two records for one NIC: neither can be trusted.
    let lowers: Vec<String> = out
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|id| id.lower.clone()))
        .collect();
    for (_, result) in &mut out {
        if let Ok(id) = result
            && lowers.iter().filter(|l| **l == id.lower).count() > 1
        {
            *result = Err(format!("{} has more than one record", id.lower));
        }
    }
    out
}

/// Whether a record fits the namespace as a run of vminit leaves it, at whatever step it
/// was killed: the NIC holds no address the record lacks (vminit never adds one); if its
/// MAC is not the record's, vminit changed it (to a locally administered one, after taking
/// an address off, and only the guest's macvtap may hold the record's MAC); the guest's
/// macvtaps on the NIC hold the record's MAC; no other link holds an address the record
/// would put back.
fn consistent(id: &Identity, nic: &Link, taps: &[&Link], state: &NetState) -> Result<(), String> {
    let dev = &nic.name;
    if id.mac.0[0] & 1 == 1 || id.mac.0 == [0; 6] {
        return Err(format!(
            "its record gives {dev} {}, not a unicast MAC",
            id.mac
        ));
    }
    let held = state.addrs_of(nic.index);
    if let Some(extra) = held
        .iter()
        .find(|a| !id.addrs.iter().any(|r| r.net == a.net))
    {
        return Err(format!("{dev} holds {}, which its record lacks", extra.net));
    }
    let held6: Vec<&Addr6> = state
        .addrs6
        .iter()
        .filter(|a| {
            a.index == nic.index && a.addr.scope == 0 && a.reported_flags & IFA_F_PERMANENT != 0
        })
        .collect();
    if let Some(extra) = held6
        .iter()
        .find(|a| !id.addrs6.iter().any(|r| r.net == a.addr.net))
    {
        return Err(format!(
            "{dev} holds {}, which its record lacks",
            extra.addr.net
        ));
    }
    if let Some(mac) = taps.iter().filter_map(|t| t.mac).find(|m| *m != id.mac) {
        return Err(format!(
            "the guest's macvtap has {mac}, not the record's {}",
            id.mac
        ));
    }
    if nic.mac.is_some_and(|m| m != id.mac) {
        let gave_up_one = id
            .addrs
            .iter()
            .any(|r| !held.iter().any(|a| a.net == r.net))
            || id
                .addrs6
                .iter()
                .filter(|r| r.scope == 0)
                .any(|r| !held6.iter().any(|a| a.addr.net == r.net));
        if !gave_up_one {
            return Err(format!(
                "{dev} still holds every address of its record but not its MAC {}",
                id.mac
            ));
        }
        if nic.mac.is_some_and(|m| m.0[0] & 0x03 != 0x02) {
            return Err(format!(
                "{dev}'s MAC is not one vminit gives (locally administered)"
            ));
        }
        let holder = state
            .links
            .iter()
            .find(|l| l.mac == Some(id.mac) && !taps.iter().any(|t| t.index == l.index));
        if let Some(holder) = holder {
            return Err(format!("{} holds the record's MAC {}", holder.name, id.mac));
        }
    }
    let elsewhere = |index: u32| index != nic.index;
    for addr in &id.addrs {
        if let Some(a) = state
            .addrs
            .iter()
            .find(|a| elsewhere(a.index) && a.addr.net.addr == addr.net.addr)
        {
            return Err(format!("{} is on another link ({})", addr.net, a.index));
        }
    }
    for addr in id.addrs6.iter().filter(|a| a.scope == 0) {
        if let Some(a) = state
            .addrs6
            .iter()
            .find(|a| elsewhere(a.index) && a.addr.net.addr == addr.net.addr)
        {
            return Err(format!("{} is on another link ({})", addr.net, a.index));
        }
    }
    Ok(())
}

/// The complete, trusted records in the namespace, by NIC.
#[cfg(test)]
fn records(state: &NetState) -> Vec<Identity> {
    let own = own_links(state).0;
    read_records(&own, state)
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .collect()
}

/// vminit's links in the namespace, and one warning per link that bears its alias but is
/// not one of them.
fn own_links(state: &NetState) -> (Vec<Own>, Vec<String>) {
    let mut own = Vec::new();
    let mut warnings = Vec::new();
    for link in &state.links {
        match claim(link, state) {
            Claim::Ours(o) => own.push(o),
            Claim::Foreign(why) => warnings.push(format!(
                "leaving {} alone: its alias starts with `{ALIAS_PREFIX}`, but {why}",
                link.name
            )),
            Claim::Other => {}
        }
    }
    (own, warnings)
}

/// What undoes what an earlier vminit left in this namespace (it was killed before it
/// could clean up): delete its links, give each NIC back its MAC, its addresses in their
/// order, its routes and permanent neighbours. Only links `claim` finds vminit's are
/// touched, and only records that fit the namespace are put back: a record that does not
/// is left alone with its links (one warning each). No steps when there is nothing to
/// recover. Steps that find their object already in place fail harmlessly (`EEXIST`).
pub fn recovery(state: &NetState) -> Recovery {
    let (own, mut warnings) = own_links(state);
    let records = read_records(&own, state);
    let mut untrusted: Vec<&str> = Vec::new();
    for (names, result) in &records {
        if let Err(why) = result {
            warnings.push(format!(
                "leaving {} alone: {why}; delete {} by hand if {} vminit's",
                names.join(", "),
                if names.len() == 1 { "it" } else { "them" },
                if names.len() == 1 {
                    "it is"
                } else {
                    "they are"
                }
            ));
            untrusted.extend(names.iter().map(String::as_str));
        }
    }
    let mut steps: Vec<Step> = own
        .iter()
        .filter(|o| !untrusted.contains(&o.name.as_str()))
        .map(|o| Step::DelLink {
            name: o.name.clone(),
        })
        .collect();
    for id in records.iter().filter_map(|(_, r)| r.as_ref().ok()) {
        let Some(lower) = state.link(&id.lower) else {
            continue;
        };
        steps.extend(restore(id, lower, state));
    }
    Recovery { steps, warnings }
}

/// Puts one NIC back as its record says.
fn restore(id: &Identity, lower: &Link, state: &NetState) -> Vec<Step> {
    let dev = &id.lower;
    let mut steps = Vec::new();
    if id.datapath == Datapath::Tap {
        // Its filters send the network's frames to a tap that is gone.
        steps.push(Step::DelIngress { dev: dev.clone() });
    }
    if let Some(value) = id.arp_ignore
        && lower.arp_ignore.is_some_and(|now| now != value)
    {
        steps.push(Step::SetArpIgnore {
            dev: dev.clone(),
            value,
            old: lower.arp_ignore,
        });
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
    use crate::testing::{MAC0, MAC1, Ns, docker_two_networks, ip, net, route};

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
            arp_ignore: None,
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
        assert_eq!(recovery(&state).steps.len(), aliases.len());
    }

    /// `state` with the links a run of vminit makes on eth0 (in slot 0), one per alias:
    /// `vmlink0` for the door's, `vmrec0.K` for part K's, `vmtap0` for the tap's. An eth0
    /// with the record's MAC and no address is added when there is none.
    fn with_links(mut state: NetState, aliases: &[String]) -> NetState {
        let lower = identity().lower;
        with_links_on(&mut state, &lower, aliases);
        state
    }

    fn with_links_on(state: &mut NetState, lower: &str, aliases: &[String]) {
        if state.link(lower).is_none() {
            let mut nic = Ns::new().nic(7, lower, MAC0, &[], &[]).0;
            state.links.push(nic.links.remove(1));
        }
        let index = state.link(lower).unwrap().index;
        for (i, alias) in aliases.iter().enumerate() {
            let words: Vec<&str> = alias.split(' ').collect();
            let (name, kind) = match words[0] {
                "vminit:door" => ("vmlink0".to_string(), "macvlan"),
                "vminit:nic" => ("vmtap0".to_string(), "macvtap"),
                _ => {
                    let k = words[2].split('/').next().unwrap();
                    (format!("vmrec0.{k}"), "macvlan")
                }
            };
            state.links.push(own_link(&name, kind, index, Some(alias)));
            state.links.last_mut().unwrap().index = 20 + i as u32;
        }
    }

    /// A tap datapath's tap: a tun device on no link.
    fn tun(name: &str, alias: Option<&str>) -> Link {
        let mut link = own_link(name, "tun", 0, alias);
        link.lower = None;
        link
    }

    fn own_link(name: &str, kind: &str, lower: u32, alias: Option<&str>) -> Link {
        Link {
            index: 9,
            name: name.into(),
            mac: None,
            mtu: 1500,
            kind: Some(kind.into()),
            alias: alias.map(str::to_string),
            lower: Some(lower),
            ethernet: true,
            arp_ignore: Some(0),
            lower_netns: None,
            up: true,
        }
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
        let ours: Vec<String> = state
            .links
            .iter()
            .filter(|l| matches!(claim(l, &state), Claim::Ours(_)))
            .map(|l| format!("ip link del {}", l.name))
            .collect();
        assert!(ours.len() >= 3, "door, carrier(s), tap");
        let recovery = recovery(&state);
        assert!(recovery.warnings.is_empty(), "{:?}", recovery.warnings);
        let cmds: Vec<String> = recovery.steps.iter().map(|s| s.to_string()).collect();
        let n = ours.len();
        let (dels, ours) = (ours, n);
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
    fn on_a_macvlan_nic_vminits_links_on_the_hosts_nic_are_known_by_the_nic_beside_them() {
        // Docker `-d macvlan`: eth0 hangs on the host's NIC (index 2 in the namespace with
        // id 0), and so do the door, the carrier and the macvtap stacked on eth0.
        let on_host_nic = |mut state: NetState| {
            for l in state.links.iter_mut().filter(|l| l.name != "lo") {
                if l.name == "eth0" {
                    l.kind = Some("macvlan".into());
                }
                (l.lower, l.lower_netns) = (Some(2), Some(0));
            }
            state
        };
        let steps = |state: &NetState| -> Vec<String> {
            let r = recovery(state);
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
            r.steps.iter().map(|s| s.to_string()).collect()
        };
        let macvlan = on_host_nic(killed_run());
        assert_eq!(steps(&macvlan), steps(&killed_run()));
        // A user's macvlan on the same host NIC is not vminit's, and a link of vminit's that
        // a killed run had not named yet is known only while one NIC hangs there.
        let mut user = Ns::new()
            .nic(30, "mvx", Mac([2, 0, 0, 0, 0, 0x99]), &[], &[])
            .0
            .links
            .remove(1);
        (user.kind, user.lower, user.lower_netns) = (Some("macvlan".into()), Some(2), Some(0));
        let mut unnamed = own_link("vmtap0", "macvtap", 2, None);
        unnamed.lower_netns = Some(0);
        let mut state = macvlan.clone();
        state.links.retain(|l| l.name != "vmtap0");
        state.links.push(unnamed.clone());
        assert!(matches!(claim(&unnamed, &state), Claim::Ours(o) if o.lower == "eth0"));
        state.links.push(user.clone());
        assert_eq!(claim(&user, &state), Claim::Other);
        assert_eq!(claim(&unnamed, &state), Claim::Other);
        let mut both = macvlan.clone();
        both.links.push(user);
        assert_eq!(steps(&both), steps(&killed_run()));
    }

    #[test]
    fn a_tap_record_says_so_and_only_its_recovery_deletes_the_nics_ingress_qdisc() {
        let mut id = identity();
        id.datapath = Datapath::Tap;
        let text = id.encode();
        assert!(text.starts_with("v1 02:42:ac:13:00:02;t;a "), "{text}");
        assert_eq!(Identity::decode("eth0", &text), Some(id.clone()));
        let tap_state = with_links(Ns::new().nic(7, "eth0", MAC0, &[], &[]).0, &id.aliases());
        let cmds: Vec<String> = recovery(&tap_state)
            .steps
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(
            cmds.contains(&"tc qdisc del dev eth0 ingress".to_string()),
            "{cmds:?}"
        );
        // A macvtap run's recovery leaves the NIC's qdiscs alone (a user's, if any).
        let cmds: Vec<String> = recovery(&killed_run())
            .steps
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(!cmds.iter().any(|c| c.starts_with("tc ")), "{cmds:?}");
    }

    #[test]
    fn a_changed_arp_ignore_is_in_the_record_and_recovery_puts_it_back_when_it_differs() {
        let mut id = identity();
        id.arp_ignore = Some(0);
        let text = id.encode();
        assert!(text.starts_with("v1 02:42:ac:13:00:02;i 0;a "), "{text}");
        assert_eq!(Identity::decode("eth0", &text), Some(id.clone()));
        let killed = |now: u32| {
            let mut state = Ns::new().nic(7, "eth0", MAC0, &[], &[]).0;
            state.links[1].arp_ignore = Some(now);
            let state = with_links(state, &id.aliases());
            recovery(&state)
                .steps
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<String>>()
        };
        let cmds = killed(1);
        assert!(
            cmds.contains(&"sysctl -w net.ipv4.conf.eth0.arp_ignore=0".to_string()),
            "{cmds:?}"
        );
        let cmds = killed(0);
        assert!(!cmds.iter().any(|c| c.contains("arp_ignore")), "{cmds:?}");
        // A record without the entry (the NIC's setting was never changed) changes nothing.
        let cmds: Vec<String> = recovery(&killed_run())
            .steps
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(!cmds.iter().any(|c| c.contains("arp_ignore")), "{cmds:?}");
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
        let steps = recovery(&state).steps;
        assert!(!steps.is_empty());
        assert!(
            steps.iter().all(|s| matches!(s, Step::DelLink { .. })),
            "{steps:?}"
        );
    }

    #[test]
    fn names_and_labels_with_spaces_and_separators_survive_the_alias() {
        let mut id = identity();
        id.lower = "we ird;=%".into();
        let mut state = Ns::new().0;
        with_links_on(&mut state, &id.lower, &id.aliases());
        assert_eq!(records(&state), vec![id]);
    }

    #[test]
    fn a_link_of_ours_killed_before_its_alias_is_still_ours_and_a_users_is_not() {
        let state = Ns::new().nic(7, "eth0", MAC0, &[], &[]).0;
        let ours = |link: Link| matches!(claim(&link, &state), Claim::Ours(_));
        assert!(ours(own_link("vmlink0", "macvlan", 7, None)));
        assert!(ours(own_link("vmrec1.2", "macvlan", 7, None)));
        assert!(ours(own_link("vmtap3", "macvtap", 7, None)));
        assert!(ours(own_link(
            "vmtap3",
            "macvtap",
            7,
            Some("vminit:nic eth0")
        )));
        assert!(!ours(own_link("vmlink1", "veth", 7, None)), "a user's veth");
        // The tap datapath's tap (a tun device, no lower link: the NIC its alias names); a
        // user's tun of another name (slirp4netns' tap0) is not.
        assert!(ours(tun("vmtap3", Some("vminit:nic eth0"))));
        assert!(ours(tun("vmtap3", None)));
        assert!(!ours(tun("tap0", None)));
        assert!(!ours(tun("vmtap3", Some("vminit:nic eth9"))), "no such NIC");
        assert!(
            !ours(own_link("vmlink0", "macvlan", 7, Some("mine"))),
            "a user's alias"
        );
        assert!(!ours(own_link("vmlinkx", "macvlan", 7, None)));
        assert!(
            !ours(own_link("vmrec1.1", "macvlan", 7, None)),
            "part 1 is the door's"
        );
    }

    #[test]
    fn a_vminit_alias_on_a_link_vminit_does_not_make_is_left_alone_with_a_warning() {
        // Forged records, well-formed and garbage, on each kind of link a container has.
        let id = identity();
        let door = id.aliases()[0].clone();
        let mut state = Ns::new()
            .nic(7, "eth0", MAC0, &["172.19.0.2/24"], &[])
            .nic(8, "eth1", MAC1, &["172.20.0.5/24"], &[])
            .0;
        let forged = [
            // The container's own NIC, and a bridge, with a well-formed record.
            ("eth0", "veth", None, door.as_str()),
            ("br0", "bridge", None, door.as_str()),
            // vminit's names and kinds, wrong in one thing each: the kind, the lower link,
            // the NIC the alias names, the part number, the role, the format.
            ("vmlink1", "bridge", Some(7), door.as_str()),
            ("vmlink2", "macvlan", Some(8), door.as_str()),
            ("vmlink3", "macvlan", None, door.as_str()),
            (
                "vmrec4.3",
                "macvlan",
                Some(7),
                "vminit:rec eth0 2/3 ;r 1.2.3.0/24",
            ),
            (
                "vmtap5",
                "macvtap",
                Some(7),
                "vminit:door eth0 1/1 v1 02:00:00:00:00:01",
            ),
            ("vmtap6", "macvtap", Some(7), "vminit:nic eth1"),
            ("mv0", "macvlan", Some(7), "vminit:nic eth0"),
            ("vmlink7", "macvlan", Some(7), "vminit:door x"),
            (
                "vmlink8",
                "macvlan",
                Some(7),
                "vminit:door eth0 1/1 garbage;;\u{0}",
            ),
        ];
        for (i, (name, kind, lower, alias)) in forged.iter().enumerate() {
            if let Some(link) = state.links.iter_mut().find(|l| l.name == *name) {
                link.alias = Some(alias.to_string());
                continue;
            }
            let mut link = own_link(name, kind, lower.unwrap_or(99), Some(alias));
            link.index = 30 + i as u32;
            link.lower = *lower;
            state.links.push(link);
        }
        let recovery = recovery(&state);
        assert!(recovery.steps.is_empty(), "{:?}", recovery.steps);
        assert_eq!(
            recovery.warnings.len(),
            forged.len(),
            "{:#?}",
            recovery.warnings
        );
        for (name, ..) in forged {
            let line = format!("leaving {name} alone: ");
            assert!(
                recovery.warnings.iter().any(|w| w.starts_with(&line)),
                "{line} in {:#?}",
                recovery.warnings
            );
        }
    }

    #[test]
    fn a_well_formed_record_that_does_not_fit_the_nic_never_changes_it() {
        // vminit's links, shaped right, on an eth0 whose state no run of vminit leaves.
        let id = identity();
        let cases: [(&str, NetState); 4] = [
            (
                "eth0 holds an address the record lacks",
                Ns::new().nic(7, "eth0", MAC0, &["10.0.0.5/24"], &[]).0,
            ),
            (
                "another MAC while holding every recorded address",
                Ns::new()
                    .nic(
                        7,
                        "eth0",
                        Mac([0xaa; 6]),
                        &["172.19.0.2/24", "172.19.0.9/24"],
                        &[],
                    )
                    .0,
            ),
            (
                "another link holds the record's MAC",
                Ns::new()
                    .nic(7, "eth0", Mac([0xaa; 6]), &[], &[])
                    .nic(8, "eth1", MAC0, &[], &[])
                    .0,
            ),
            (
                "another link holds a recorded address",
                Ns::new()
                    .nic(7, "eth0", MAC0, &[], &[])
                    .nic(8, "eth1", MAC1, &["172.19.0.2/24"], &[])
                    .0,
            ),
        ];
        for (what, state) in cases {
            let state = with_links(state, &id.aliases());
            let recovery = recovery(&state);
            assert!(recovery.steps.is_empty(), "{what}: {:?}", recovery.steps);
            assert_eq!(
                recovery.warnings.len(),
                1,
                "{what}: {:?}",
                recovery.warnings
            );
            assert!(
                recovery.warnings[0].starts_with("leaving vmlink0"),
                "{what}: {:?}",
                recovery.warnings
            );
        }
    }

    #[test]
    fn a_forged_record_beside_a_real_one_is_left_alone_and_the_real_one_recovered() {
        // After a real takeover eth0 lost an address and its MAC: a forged record that
        // fits that much is still refuted by the guest's macvtap, which holds the real MAC.
        let mut state = killed_run();
        state
            .links
            .iter_mut()
            .find(|l| l.name == "vmtap0")
            .unwrap()
            .mac = Some(MAC0);
        let mut forged = own_link(
            "vmlink5",
            "macvlan",
            7,
            Some("vminit:door eth0 1/1 v1 02:00:00:00:00:98;a 172.19.0.9/24"),
        );
        forged.index = 55;
        state.links.push(forged);
        let recovery = recovery(&state);
        assert_eq!(recovery.warnings.len(), 1, "{:?}", recovery.warnings);
        assert!(recovery.warnings[0].starts_with("leaving vmlink5 alone: the guest's macvtap"));
        let cmds: Vec<String> = recovery.steps.iter().map(|s| s.to_string()).collect();
        assert!(
            !cmds
                .iter()
                .any(|c| c.contains("vmlink5") || c.contains(":98")),
            "{cmds:?}"
        );
        assert!(cmds.contains(&"ip link set eth0 address 02:42:ac:13:00:02".to_string()));
    }

    #[test]
    fn two_records_for_one_nic_are_both_left_alone() {
        let mut id = identity();
        id.routes.clear();
        assert_eq!(id.aliases().len(), 1);
        let mut state = with_links(Ns::new().0, &id.aliases());
        let index = state.link("eth0").unwrap().index;
        let mut second = own_link("vmlink4", "macvlan", index, Some(&id.aliases()[0]));
        second.index = 44;
        state.links.push(second);
        let recovery = recovery(&state);
        assert!(recovery.steps.is_empty(), "{:?}", recovery.steps);
        assert_eq!(recovery.warnings.len(), 2, "{:?}", recovery.warnings);
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
        state.links.retain(|l| !reserved_name(&l.name));
        let mut aliases = id.aliases();
        aliases.push(tap_alias("eth0"));
        let state = with_links(state, &aliases);
        let cmds: Vec<String> = recovery(&state)
            .steps
            .iter()
            .map(|s| s.to_string())
            .collect();
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
        let recovery = recovery(&docker_two_networks());
        assert!(recovery.steps.is_empty() && recovery.warnings.is_empty());
    }
}
