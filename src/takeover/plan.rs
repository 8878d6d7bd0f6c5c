//! Decides, without touching anything, what happens to each attached NIC (pure).
//!
//! A plan is data: the guest's view of every NIC (`NicPlan`) and the ordered list of
//! changes to the namespace (`Step`) that give the guest the container's identity. The
//! steps for one NIC follow docs/network.md, "What happens to one NIC".

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::config::{Attach, Datapath};
use crate::error::{Error, NetworkError, Result};
use crate::net::netstate::{
    IfAddr, KernelRoute, Link, Neigh, NetState, RT_TABLE_MAIN, natural_cmp,
};
use crate::net::step::{MacLinkKind, Step};
use crate::net::types::{Ipv4Net, Ipv6Net, Mac, Route};
use crate::takeover::identity::{self, Identity};
use crate::takeover::plan6::{self, Guest6, Nic6};
use crate::takeover::slot::Slot;
use crate::takeover::tapjoin;

/// The guest's side of one container NIC.
#[derive(Clone, Debug, PartialEq)]
pub struct NicPlan {
    /// The container NIC whose identity the guest takes (`eth0`).
    pub lower: String,
    /// Its place among the guest's NICs, which makes every name below.
    pub slot: Slot,
    /// The macvtap, or the tap (tap datapath), that carries the guest's traffic (`vmtap0`).
    pub tap: String,
    /// The container's bridge-mode macvlan on the NIC (`vmlink0`): its way to the guest and
    /// the network (with the tap datapath, to the network only), and the record's first part.
    pub door: String,
    /// How the guest's NIC reaches the container's.
    pub datapath: Datapath,
    /// The guest's MAC: the container NIC's original one.
    pub mac: Mac,
    pub mtu: u32,
    /// The guest's IPv4 address: the container NIC's original one. `None` for an IPv6-only
    /// NIC, which the guest configures by IPv6 alone (no DHCPv4 for it).
    pub addr: Option<Ipv4Net>,
    /// The router, only on the NIC that holds the container's default route.
    pub gateway: Option<Ipv4Addr>,
    /// Classless static routes for the guest (DHCP option 121); on-link when no gateway.
    /// Empty for an IPv6-only NIC.
    pub guest_routes: Vec<Route>,
    /// The container's own (link-local) address on `door` (with the tap datapath, on the
    /// tap); also the guest's DHCP/DNS server (on an IPv6-only NIC only the source of the
    /// NIC's IPv4 routes, if it has any).
    pub door_addr: Ipv4Addr,
}

impl NicPlan {
    /// The link the guest's servers (DHCP, DNS, router advertisements, DHCPv6) and the door
    /// address are on: the door with macvtap, the tap itself with the tap datapath (its tc
    /// filters keep the guest's traffic for them there; see `tapjoin`).
    pub fn serves_on(&self) -> &str {
        match self.datapath {
            // User mode plans as macvtap and applies nothing.
            Datapath::Macvtap | Datapath::User => &self.door,
            Datapath::Tap => &self.tap,
        }
    }

    /// This NIC when it gives the guest the router `gateway` (the default route in DHCP
    /// options 3 and 121), its other routes kept.
    pub fn with_router(&self, gateway: Ipv4Addr) -> NicPlan {
        let Some(addr) = self.addr else {
            return self.clone();
        };
        let door = Route::host(self.door_addr);
        let own: Vec<Route> = self
            .guest_routes
            .iter()
            .filter(|r| **r != door)
            .cloned()
            .collect();
        let (guest_routes, _) = guest_routes(addr, self.door_addr, &own, Some(gateway));
        NicPlan {
            gateway: Some(gateway),
            guest_routes,
            ..self.clone()
        }
    }
}

/// What vminit will do to the namespace and hand to the guest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub nics: Vec<NicPlan>,
    /// What the guest does not get, and why (one log line each).
    pub warnings: Vec<String>,
    /// Every NIC's steps, one NIC after the other.
    pub steps: Vec<Step>,
    /// How many of `steps` belong to each NIC, in order.
    pub counts: Vec<usize>,
    /// How many of each NIC's steps make the guest's link (see `NicSteps`).
    pub makes: Vec<usize>,
    /// The guest's IPv6 side of each NIC that has an IPv6 address to give.
    pub v6: Vec<Guest6>,
}

/// One NIC's steps, in their two parts.
#[derive(Clone, Copy, Debug)]
pub struct NicSteps<'a> {
    /// Those that make the guest's link (its macvtap, down, or its tap): they change nothing
    /// of the container's, and QEMU needs nothing else at its start.
    pub make: &'a [Step],
    /// The takeover itself: the record, then every change to the NIC and the door. The
    /// guest sends nothing before its firmware and kernel have run, so these can be applied
    /// while QEMU starts.
    pub take: &'a [Step],
}

impl Plan {
    /// Each NIC with its own steps.
    pub fn per_nic(&self) -> impl Iterator<Item = (&NicPlan, NicSteps<'_>)> {
        let mut at = 0;
        (self.nics.iter().zip(&self.counts).zip(&self.makes)).map(move |((nic, n), make)| {
            let steps = NicSteps {
                make: &self.steps[at..at + make],
                take: &self.steps[at + make..at + n],
            };
            at += n;
            (nic, steps)
        })
    }
}

/// The inputs of `plan` that come from outside the namespace.
pub struct PlanInput<'a> {
    pub attach: &'a Attach,
    pub selected_network: Option<Ipv4Net>,
    /// `SELECTED_NETWORK`'s IPv6 network, if it names one.
    pub selected_network6: Option<Ipv6Net>,
    pub state: &'a NetState,
    /// Random bytes for the container NICs' new MACs, one per NIC (extra ones unused).
    pub random_macs: &'a [[u8; 6]],
    /// The datapath every NIC gets.
    pub datapath: Datapath,
}

/// One container NIC chosen for the guest, with what it holds now.
struct Candidate<'a> {
    link: &'a Link,
    mac: Mac,
    /// The IPv4 address the guest gets; `None` for an IPv6-only NIC (then `nic6` has one).
    addr: Option<IfAddr>,
    /// Every IPv4 address of the NIC, the guest's included, in the kernel's order.
    addrs: Vec<IfAddr>,
    /// The NIC's routes in every table (not the kernel's subnet routes), on-link first.
    routes: Vec<KernelRoute>,
    /// Its permanent neighbour entries.
    neighbours: Vec<Neigh>,
    /// What it holds in IPv6.
    nic6: Nic6,
    /// The guest address's subnet, routed on the door once the NIC gives the address up
    /// (see `open_door`); `None` when the container keeps a route to it anyway (another
    /// address of the NIC in it, another NIC on it) or it has none (a `/32`).
    subnet: Option<Ipv4Net>,
}

impl Candidate<'_> {
    /// The NIC's routes in the main table: what the guest can be told by DHCP.
    fn main_routes(&self) -> Vec<Route> {
        self.routes
            .iter()
            .filter(|r| r.table == RT_TABLE_MAIN)
            .map(|r| r.route.clone())
            .collect()
    }
}

/// Plans the takeover of every attached NIC.
pub fn plan(input: &PlanInput) -> Result<Plan> {
    let state = input.state;
    let names = attached_names(input.attach, state)?;
    let candidates = candidates(&names, input)?;
    let router_nic = router_nic(&candidates);
    let router_nic6 = router_nic6(&candidates);
    let mut taken = state.addresses_in_use();
    let mut plan = Plan::default();
    for (i, nic) in candidates.iter().enumerate() {
        let random = input.random_macs.get(i).copied().unwrap_or([i as u8; 6]);
        let router = Some(nic.link.index) == router_nic;
        let router6 = Some(nic.link.index) == router_nic6;
        let planned = plan_nic(
            Slot(i),
            nic,
            (router, router6),
            &mut taken,
            random,
            input.datapath,
        );
        plan.warnings.extend(planned.warning);
        plan.counts.push(planned.steps.len());
        plan.makes.push(planned.make);
        plan.steps.extend(planned.steps);
        plan.nics.push(planned.nic);
        plan.v6.extend(planned.v6);
    }
    Ok(plan)
}

/// The NIC that holds the container's IPv6 default route (lowest metric): the only one whose
/// guest is told of a default router.
fn router_nic6(candidates: &[Candidate]) -> Option<u32> {
    candidates
        .iter()
        .filter_map(|c| c.nic6.default_metric().map(|m| (m, c.link.index)))
        .min()
        .map(|(_, index)| index)
}

/// The guest NIC in `slot` (its `vmtapN`, `vmlinkN`) for one container NIC, the steps that
/// hand it over, and its IPv6 side. `routers`: it gives the guest the IPv4 and the IPv6
/// default route. `taken`: addresses its door must avoid; its door's is added.
fn plan_nic(
    slot: Slot,
    nic: &Candidate,
    (router, router6): (bool, bool),
    taken: &mut Vec<Ipv4Addr>,
    random: [u8; 6],
    datapath: Datapath,
) -> PlannedNic {
    let addr = nic.addr.as_ref().map(|a| a.net);
    let door_addr = match addr {
        Some(addr) => door_address(addr, taken),
        // IPv6-only (`candidate` hands over no NIC without an address to give).
        None => {
            let guest6 = nic.nic6.guest.as_ref().map(|g| g.net.addr);
            door_address6(guest6.unwrap_or(Ipv6Addr::UNSPECIFIED), taken)
        }
    };
    taken.push(door_addr);
    let main_routes = nic.main_routes();
    let gateway = router.then(|| default_gateway(&main_routes)).flatten();
    let (guest_routes, left_out) = match addr {
        Some(addr) => guest_routes(addr, door_addr, &main_routes, gateway),
        // No DHCPv4 for an IPv6-only NIC: its guest is told no IPv4 route.
        None => (Vec::new(), 0),
    };
    let warning = (left_out > 0).then(|| {
        format!(
            "{}: {left_out} of its routes do not fit DHCP option 121 (255 bytes); the guest gets the others",
            nic.link.name
        )
    });
    let guest = NicPlan {
        lower: nic.link.name.clone(),
        slot,
        tap: slot.tap(),
        door: slot.door(),
        datapath,
        mac: nic.mac,
        mtu: nic.link.mtu,
        addr,
        gateway,
        guest_routes,
        door_addr,
    };
    let (steps, make) = takeover(nic, &guest, random);
    let guest6 = plan6::guest6(
        &guest.lower,
        guest.serves_on(),
        guest.mac,
        guest.mtu,
        &nic.nic6,
        router6,
    );
    PlannedNic {
        nic: guest,
        steps,
        make,
        warning,
        v6: guest6,
    }
}

/// One container NIC planned: its guest NIC, the steps that hand it over, what the guest
/// will not get (one log line), and its IPv6 side when it has IPv6 to give.
struct PlannedNic {
    nic: NicPlan,
    steps: Vec<Step>,
    /// How many of `steps` make the guest's link.
    make: usize,
    warning: Option<String>,
    v6: Option<Guest6>,
}

/// What changed among the container's NICs while the guest runs (`docker network connect`
/// and `disconnect`), and what to do about it.
#[derive(Debug, Default)]
pub struct Changes {
    /// Guest NICs whose container NIC is gone (its macvtap went with it): their `lower`s.
    pub gone: Vec<String>,
    /// New container NICs to hand to the guest, planned exactly like those at start.
    pub added: Vec<(NicPlan, Vec<Step>)>,
    /// New container NICs without an IPv4 address yet: it may still come.
    pub waiting: Vec<String>,
    /// New container NICs that cannot be handed over, and why.
    pub refused: Vec<(String, Error)>,
    /// What the guest does not get, and why (one log line each).
    pub warnings: Vec<String>,
    /// The IPv6 side of the NICs in `added` that have an IPv6 address to give.
    pub v6: Vec<Guest6>,
    /// A guest NIC that stays and now gives the guest its router (the `lower`, the gateway):
    /// the NIC that gave it left, and the container's default route is now this NIC's.
    pub router: Option<(String, Ipv4Addr)>,
}

/// Compares the namespace with the guest's NICs (`guest`) and plans the changes: NICs that
/// left, and NICs that joined and are to be attached by the same rules as at start
/// (`AUTO_ATTACH`, `ATTACH_IFACES`, `SELECTED_NETWORK`). A joining NIC gets the lowest free
/// slot, a door address no one uses, and the router only if it holds the container's
/// default route and no guest NIC gives one already: the guest keeps exactly one. A
/// joining NIC that is not up yet, or has no address yet, is `waiting`.
pub fn plan_changes(input: &PlanInput, guest: &[NicPlan]) -> Changes {
    let state = input.state;
    let mut changes = Changes::default();
    let present = |name: &str| state.link(name).is_some();
    let (stay, gone): (Vec<&NicPlan>, Vec<&NicPlan>) = guest
        .iter()
        .partition(|n| present(&n.lower) && present(&n.tap));
    changes.gone = gone.iter().map(|n| n.lower.clone()).collect();
    let names: Vec<String> = match input.attach {
        Attach::All => attached_names(input.attach, state).unwrap_or_default(),
        Attach::Only(names) => names
            .iter()
            .filter(|n| state.link(n).is_some_and(|l| !is_infrastructure(l)))
            .cloned()
            .collect(),
    };
    let mut fresh = Vec::new();
    for name in names
        .iter()
        .filter(|n| !stay.iter().any(|g| &g.lower == *n))
    {
        // Docker (and CNI plugins) give a new NIC its MAC and addresses, then bring it up:
        // until the kernel says it is up, it is not finished.
        if state.link(name).is_some_and(|l| !l.up) {
            changes.waiting.push(name.clone());
            continue;
        }
        match candidate(name, input) {
            Ok(one)
                if let Some(held) = stay
                    .iter()
                    .find(|g| g.addr.is_some() && g.addr == one.addr.as_ref().map(|a| a.net)) =>
            {
                changes.refused.push((
                    name.clone(),
                    Error::Network(NetworkError::SameAddress(
                        one.addr
                            .as_ref()
                            .map(|a| a.net.addr.to_string())
                            .unwrap_or_default(),
                        name.clone(),
                        format!("the guest's {}", held.lower),
                    )),
                ));
            }
            Ok(one) => fresh.push(one),
            Err(e) if e.waiting_can_help() => changes.waiting.push(name.clone()),
            Err(e) => changes.refused.push((name.clone(), e)),
        }
    }
    let has_router = stay.iter().any(|g| g.gateway.is_some());
    if !has_router {
        changes.router = router_moved_to(state, &stay);
    }
    let router_nic = (!has_router && changes.router.is_none())
        .then(|| router_nic(&fresh))
        .flatten();
    let mut taken = state.addresses_in_use();
    taken.extend(stay.iter().map(|g| g.door_addr));
    // A free slot: no guest NIC has it, and no link of the namespace has one of its names.
    let mut used: Vec<Slot> = stay.iter().map(|g| g.slot).collect();
    let free = |s: &Slot, used: &[Slot]| {
        !used.contains(s) && !state.links.iter().any(|l| s.owns_link(&l.name))
    };
    for (i, nic) in fresh.iter().enumerate() {
        let slot = (0..)
            .map(Slot)
            .find(|s| free(s, &used))
            .expect("a free slot");
        used.push(slot);
        let random = input
            .random_macs
            .get(i)
            .copied()
            .unwrap_or([slot.0 as u8; 6]);
        let router = Some(nic.link.index) == router_nic;
        // A NIC that joins later never gives the guest an IPv6 default route.
        let planned = plan_nic(
            slot,
            nic,
            (router, false),
            &mut taken,
            random,
            input.datapath,
        );
        changes.warnings.extend(planned.warning);
        changes.added.push((planned.nic, planned.steps));
        changes.v6.extend(planned.v6);
    }
    changes
}

/// The guest NIC among `stay` that holds the container's IPv4 default route (the best
/// one), with its gateway. When the NIC that gave the guest its router leaves, Docker moves
/// the container's default route to another network's gateway: through the door of that
/// network's NIC, where the NIC's routes are.
fn router_moved_to(state: &NetState, stay: &[&NicPlan]) -> Option<(String, Ipv4Addr)> {
    let (_, index, gateway) = state
        .routes
        .iter()
        .filter(|r| r.route.table == RT_TABLE_MAIN && r.route.route.is_default())
        .filter_map(|r| {
            let gateway = r.route.route.gateway?;
            Some((r.route.route.metric.unwrap_or(0), r.index, gateway))
        })
        .min()?;
    let link = state.links.iter().find(|l| l.index == index)?;
    stay.iter()
        .find(|g| g.addr.is_some() && (g.door == link.name || g.lower == link.name))
        .map(|g| (g.lower.clone(), gateway))
}

/// The NICs to attach, in guest order, or why that is impossible.
pub fn attached_names(attach: &Attach, state: &NetState) -> Result<Vec<String>> {
    let names = match attach {
        Attach::All => {
            let mut names: Vec<String> = state
                .links
                .iter()
                .filter(|l| !is_infrastructure(l))
                .map(|l| l.name.clone())
                .collect();
            names.sort_by(|a, b| natural_cmp(a, b));
            names
        }
        Attach::Only(names) => {
            for name in names {
                let Some(link) = state.link(name) else {
                    return Err(Error::Network(NetworkError::NoSuchInterface(name.clone())));
                };
                if is_infrastructure(link) {
                    return Err(Error::Network(NetworkError::NotAttachable(name.clone())));
                }
            }
            names.clone()
        }
    };
    if names.is_empty() {
        return Err(Error::Network(NetworkError::NoInterfaces));
    }
    Ok(names)
}

/// Kinds that are never a container's NIC: loopback, bridges, kernel fallback tunnels and
/// vminit's own links.
pub fn is_infrastructure(link: &Link) -> bool {
    const SKIP: &[&str] = &[
        "bridge",
        "openvswitch",
        "macvtap",
        "ipip",
        "gre",
        "gretap",
        "erspan",
        "ip6gre",
        "ip6gretap",
        "ip6erspan",
        "sit",
        "ip6tnl",
        "vti",
        "vti6",
        "ip_vti",
        "ip6_vti",
        "dummy",
    ];
    link.name == "lo"
        || !link.ethernet
        || link.kind.as_deref().is_some_and(|k| SKIP.contains(&k))
        || identity::reserved_name(&link.name)
}

/// Each attached NIC with the address its guest gets: the one inside `SELECTED_NETWORK`,
/// else its first.
fn candidates<'a>(names: &[String], input: &'a PlanInput) -> Result<Vec<Candidate<'a>>> {
    let out = names
        .iter()
        .map(|name| candidate(name, input))
        .collect::<Result<Vec<_>>>()?;
    let nics6: Vec<(&str, &Nic6)> = out
        .iter()
        .map(|c| (c.link.name.as_str(), &c.nic6))
        .collect();
    plan6::check_selected(input.selected_network6, &nics6)?;
    if let Some(net) = input.selected_network
        && !out
            .iter()
            .any(|c| c.addrs.iter().any(|a| net.contains(a.net.addr)))
    {
        return Err(Error::config(
            "SELECTED_NETWORK",
            format!(
                "{net} matches no IPv4 address of {}; use the network of the address the VM should get",
                names.join(", ")
            ),
        ));
    }
    Ok(out)
}

/// One NIC with the address its guest gets, or why it cannot be handed over (yet).
fn candidate<'a>(name: &str, input: &'a PlanInput) -> Result<Candidate<'a>> {
    let state = input.state;
    let link = state
        .link(name)
        .ok_or_else(|| Error::Network(NetworkError::NoSuchInterface(name.to_string())))?;
    let addrs = state.addrs_of(link.index);
    let no_address = || Error::Network(NetworkError::NoAddress(name.to_string()));
    let Some(mac) = link.mac else {
        return Err(if addrs.is_empty() {
            no_address()
        } else {
            Error::Network(NetworkError::NoMac(name.to_string()))
        });
    };
    if let Some(a) = addrs.iter().find(|a| a.peer.is_some()) {
        let peer = a.peer.expect("found by its peer");
        return Err(Error::Network(NetworkError::PointToPoint(
            name.to_string(),
            a.net.addr,
            peer,
        )));
    }
    let nic6 = Nic6::of(state, link, mac, input.selected_network6);
    // A NIC with IPv6 alone is handed over too (IPv6-only networks); one with neither waits.
    if addrs.is_empty() && nic6.guest.is_none() {
        return Err(no_address());
    }
    let selected = input
        .selected_network
        .and_then(|net| addrs.iter().find(|a| net.contains(a.net.addr)).cloned());
    let mut routes = state.routes_of(link.index);
    routes.sort_by_key(|r| r.route.gateway.is_some());
    let addr = selected.or_else(|| addrs.first().cloned());
    let subnet = addr
        .as_ref()
        .and_then(|a| subnet_to_route(state, link.index, &addrs, a.net));
    check_held_once(state, link, addr.as_ref().map(|a| a.net.addr), &nic6)?;
    Ok(Candidate {
        link,
        mac,
        addr,
        addrs,
        routes,
        neighbours: state.neighbours_of(link.index),
        nic6,
        subnet,
    })
}

/// Refuses a NIC whose guest addresses (`addr`, the IPv6 one of `nic6`) another link of the
/// namespace also holds: the guest can hold an address once, and the container would
/// answer for it beside the guest.
fn check_held_once(
    state: &NetState,
    link: &Link,
    addr: Option<Ipv4Addr>,
    nic6: &Nic6,
) -> Result<()> {
    let name_of = |index: u32| {
        state
            .links
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| index.to_string(), |l| l.name.clone())
    };
    let twice = |addr: String, index: u32| {
        Err(Error::Network(NetworkError::SameAddress(
            addr,
            link.name.clone(),
            name_of(index),
        )))
    };
    if let Some(addr) = addr
        && let Some(other) = state
            .addrs
            .iter()
            .find(|a| a.index != link.index && a.addr.net.addr == addr)
    {
        return twice(addr.to_string(), other.index);
    }
    if let Some(guest) = &nic6.guest
        && let Some(other) = state
            .addrs6
            .iter()
            .find(|a| a.index != link.index && a.addr.net.addr == guest.net.addr)
    {
        return twice(guest.net.addr.to_string(), other.index);
    }
    Ok(())
}

/// The subnet of `guest` (an address of the NIC `index`, with `addrs`) that the door routes:
/// none for a `/32`, when another address of the NIC is in it (its kernel route stays), or
/// when the container has another route to it.
fn subnet_to_route(
    state: &NetState,
    index: u32,
    addrs: &[IfAddr],
    guest: Ipv4Net,
) -> Option<Ipv4Net> {
    if guest.prefix >= 32 {
        return None;
    }
    let subnet = Ipv4Net::new(guest.network(), guest.prefix);
    let kept_in_it = addrs
        .iter()
        .any(|a| a.net != guest && subnet.contains(a.net.addr));
    // Any other route to it in the main table (another NIC's, one of the NIC's own that
    // moves to the door) would clash with the door's.
    let routed = state.routes.iter().any(|r| {
        r.route.table == RT_TABLE_MAIN
            && r.route.route.dst == subnet
            && !(r.index == index && r.is_kernel())
    });
    (!kept_in_it && !routed).then_some(subnet)
}

/// The NIC that holds the container's default route (lowest metric): the only one that
/// gives the guest a router.
fn router_nic(candidates: &[Candidate]) -> Option<u32> {
    candidates
        .iter()
        .filter(|c| c.addr.is_some())
        .filter_map(|c| {
            c.main_routes()
                .iter()
                .filter(|r| r.is_default() && r.gateway.is_some())
                .map(|r| (r.metric.unwrap_or(0), c.link.index))
                .min()
        })
        .min()
        .map(|(_, index)| index)
}

/// The gateway of a NIC's best default route.
fn default_gateway(routes: &[Route]) -> Option<Ipv4Addr> {
    routes
        .iter()
        .filter(|r| r.is_default())
        .min_by_key(|r| r.metric.unwrap_or(0))
        .and_then(|r| r.gateway)
}

/// The changes that hand one NIC to the guest, in order, and how many of the first make the
/// guest's link (`make`): the guest's macvtap, down and with the NIC's MAC, or its tap (MAC
/// and door address its own, from `random` too). Those change nothing of the container's,
/// and are all QEMU needs at its start; the rest can follow while QEMU starts. Then the
/// record, so that a run killed at any later step can be recovered; then the NIC gives up
/// its address (and with it its routes) and its MAC, the guest's macvtap goes up with it,
/// and the container's door gets the routes back. With the tap datapath, the tap is joined
/// to the NIC last, once it serves the guest.
fn takeover(nic: &Candidate, guest: &NicPlan, random: [u8; 6]) -> (Vec<Step>, usize) {
    let new_mac = Mac::local_from(random);
    let quiet = answer_arp_for_own_addresses_only(nic, guest);
    let arp_ignore = match &quiet {
        Some(Step::SetArpIgnore { dev, old, .. }) if *dev == guest.lower => *old,
        _ => None,
    };
    let tap_mac = {
        let mut bytes = random;
        bytes.reverse();
        Mac::local_from(bytes)
    };
    let mut steps = match guest.datapath {
        Datapath::Macvtap | Datapath::User => make_guest_nic(guest),
        Datapath::Tap => vec![
            Step::AddTap {
                name: guest.tap.clone(),
                mac: tap_mac,
                mtu: guest.mtu,
            },
            Step::SetAlias {
                dev: guest.tap.clone(),
                alias: identity::tap_alias(&guest.lower),
            },
        ],
    };
    let make = steps.len();
    steps.extend(write_record(nic, guest, arp_ignore));
    steps.extend(release_address(nic));
    steps.extend(plan6::release6(&guest.lower, &nic.nic6));
    if guest.datapath == Datapath::Macvtap || !keeps_mac_for_tap(nic.link) {
        steps.push(Step::SetMac {
            dev: guest.lower.clone(),
            mac: new_mac,
            old: nic.mac,
        });
    }
    steps.extend(quiet);
    if guest.datapath != Datapath::Tap {
        // Only now: a macvtap with its lower link's MAC cannot go up.
        steps.push(Step::SetUpAllMulticast {
            dev: guest.tap.clone(),
        });
    }
    steps.extend(open_door(nic, guest));
    steps.extend(plan6::open_door6(&guest.door, guest.serves_on(), &nic.nic6));
    if guest.datapath == Datapath::Tap {
        steps.extend(join_tap(guest, tap_mac));
    }
    (steps, make)
}

/// On a macvlan NIC (Docker `-d macvlan`), the NIC, the door and the guest's macvtap are
/// siblings on the host's NIC, each hearing the broadcasts of the others. Linux answers an
/// ARP request on any link for any address of the namespace (`arp_ignore` 0), so the sibling
/// that does not hold the door address answers the guest's request for it too, with its own
/// MAC; when that reply comes first, the guest sends its DNS queries there, where dnsmasq
/// does not serve them, and they time out. That sibling answers only for its own addresses
/// from then on (`arp_ignore` 1): with macvtap the NIC (put back afterwards, and in the
/// record for a recovery), with the tap datapath the door macvlan (the door address is on
/// the tap; the setting goes with the door). A NIC that already answers only for its own
/// addresses (1, 2, or 8: never) is left as it is. On a veth or a tap the NIC is the lower
/// link, which does not hear its own macvlans' and macvtaps' frames: nothing changes.
fn answer_arp_for_own_addresses_only(nic: &Candidate, guest: &NicPlan) -> Option<Step> {
    if nic.link.kind.as_deref() != Some("macvlan") {
        return None;
    }
    match guest.datapath {
        Datapath::Macvtap | Datapath::User => {
            let old = nic.link.arp_ignore?;
            (!matches!(old, 1 | 2 | 8)).then(|| Step::SetArpIgnore {
                dev: guest.lower.clone(),
                value: 1,
                old: Some(old),
            })
        }
        Datapath::Tap => Some(Step::SetArpIgnore {
            dev: guest.door.clone(),
            value: 1,
            old: None,
        }),
    }
}

/// Whether, with the tap datapath, the NIC keeps its MAC (the guest's): a macvlan NIC (Docker
/// `-d macvlan`) receives only frames for its own MAC from the host's NIC, so the guest's
/// frames reach the tc filters only while the NIC holds the guest's MAC. A veth or a tap
/// receives every frame of its link and gets a new MAC, as with macvtap.
fn keeps_mac_for_tap(link: &Link) -> bool {
    link.kind.as_deref() == Some("macvlan")
}

/// The tc filters that join the tap to its NIC (see `tapjoin`): the tap's side first, the
/// NIC's last, so that the network reaches the guest only once everything else is there.
fn join_tap(guest: &NicPlan, tap_mac: Mac) -> Vec<Step> {
    let mut steps = vec![Step::AddIngress {
        dev: guest.tap.clone(),
    }];
    steps.extend(
        tapjoin::from_guest(tap_mac, &guest.lower)
            .into_iter()
            .map(|filter| Step::AddFilter {
                dev: guest.tap.clone(),
                filter,
            }),
    );
    steps.push(Step::AddIngress {
        dev: guest.lower.clone(),
    });
    steps.extend(
        tapjoin::from_network(guest.mac, &guest.tap)
            .into_iter()
            .map(|filter| Step::AddFilter {
                dev: guest.lower.clone(),
                filter,
            }),
    );
    steps
}

/// The door (a bridge-mode macvlan on the NIC: a macvtap cannot talk to its own lower
/// device) with the first part of the identity record in its alias, and down carrier links
/// for the rest of a long one. `arp_ignore`: the NIC's setting, when a later step changes it.
fn write_record(nic: &Candidate, guest: &NicPlan, arp_ignore: Option<u32>) -> Vec<Step> {
    let identity = Identity {
        lower: guest.lower.clone(),
        mac: nic.mac,
        addrs: nic.addrs.clone(),
        routes: nic.routes.clone(),
        neighbours: nic.neighbours.clone(),
        addrs6: nic.nic6.addrs.clone(),
        routes6: nic.nic6.routes.clone(),
        neighbours6: nic.nic6.neighbours.clone(),
        datapath: guest.datapath,
        arp_ignore,
    };
    let mut steps = Vec::new();
    for (k, alias) in identity.aliases().into_iter().enumerate() {
        let (name, up) = match k {
            0 => (guest.door.clone(), true),
            _ => (guest.slot.record(k + 1), false),
        };
        steps.push(Step::AddLink {
            kind: MacLinkKind::Macvlan,
            name: name.clone(),
            lower: guest.lower.clone(),
            mac: None,
            mtu: guest.mtu,
            up,
        });
        steps.push(Step::SetAlias { dev: name, alias });
    }
    steps
}

/// Takes the guest's address off the container NIC, and with it the NIC's routes (the
/// kernel drops them when the NIC loses its address; the door gets them back) and its
/// permanent neighbours (the MAC change would flush them). The kernel would delete the
/// secondaries of a primary address with it (promote_secondaries is off by default, and
/// read-only under Docker): they are taken off first and put back after, so the container
/// keeps them, the first as its new primary.
fn release_address(nic: &Candidate) -> Vec<Step> {
    let dev = &nic.link.name;
    let mut steps: Vec<Step> = nic
        .routes
        .iter()
        .rev()
        .map(|route| Step::del_route(dev.clone(), route.clone()))
        .collect();
    for neigh in &nic.neighbours {
        steps.push(Step::del_neigh(dev.clone(), *neigh));
    }
    // The kernel keeps a NIC's addresses in order (primaries as they were added, then the
    // secondaries) and deletes a primary's secondaries with it. Every address from the
    // guest's on is taken off, last first, and all but the guest's put back in their order:
    // the container keeps them, and putting the guest's back later restores the order.
    let Some(guest) = &nic.addr else {
        return steps; // IPv6-only: no IPv4 address to give
    };
    let at = nic
        .addrs
        .iter()
        .position(|a| a.net == guest.net)
        .unwrap_or(0);
    let tail = &nic.addrs[at..];
    for addr in tail.iter().rev() {
        steps.push(Step::del_addr(dev.clone(), addr.clone()));
    }
    for addr in tail.iter().filter(|a| a.net != guest.net) {
        steps.push(Step::add_addr(dev.clone(), addr.clone()));
    }
    steps
}

/// The macvtap that becomes the guest's NIC, with the container NIC's MAC and MTU, down:
/// its /dev/tapN can be opened for QEMU at once. It cannot go up before the NIC has given
/// its MAC away (`takeover` brings it up then, passing all multicast on: the guest's IPv6
/// neighbour solicitations arrive in groups only the guest knows it is in), and could not
/// give itself an IPv6 link-local address then (with the guest's MAC, that would be the
/// guest's own).
fn make_guest_nic(guest: &NicPlan) -> Vec<Step> {
    vec![
        Step::AddLink {
            kind: MacLinkKind::Macvtap,
            name: guest.tap.clone(),
            lower: guest.lower.clone(),
            mac: Some(guest.mac),
            mtu: guest.mtu,
            up: false,
        },
        Step::NoAddrGen {
            dev: guest.tap.clone(),
        },
        Step::SetAlias {
            dev: guest.tap.clone(),
            alias: identity::tap_alias(&guest.lower),
        },
    ]
}

/// The container's side of the door: the link-local door address, a route to the guest,
/// and the NIC's routes of every table, whose source is the address the container kept
/// (Kubernetes can give a NIC two), else the door address.
fn open_door(nic: &Candidate, guest: &NicPlan) -> Vec<Step> {
    let door = &guest.door;
    let serves_on = guest.serves_on();
    let kept = nic
        .addrs
        .iter()
        .find(|a| Some(a.net) != guest.addr)
        .map(|a| a.net.addr);
    let mut steps = vec![
        Step::TxChecksumOff {
            dev: serves_on.to_string(),
        },
        Step::add_addr(
            serves_on.to_string(),
            IfAddr::plain(Ipv4Net::new(guest.door_addr, 32)),
        ),
    ];
    if let Some(addr) = guest.addr {
        let mut to_guest = KernelRoute::main(Route::host(addr.addr));
        to_guest.src = Some(guest.door_addr);
        steps.push(Step::add_route(serves_on.to_string(), to_guest));
    }
    // The subnet the NIC's address routed (the kernel drops that route with the address):
    // the gateway stays on-link, so Docker can route the container through it when it
    // moves the default route here (`docker network disconnect` of the default network).
    if let Some(subnet) = nic.subnet {
        let mut on_link = KernelRoute::main(Route {
            dst: subnet,
            gateway: None,
            metric: None,
        });
        on_link.src = Some(kept.unwrap_or(guest.door_addr));
        steps.push(Step::add_route(door.clone(), on_link));
    }
    for route in &nic.routes {
        let mut moved = route.clone();
        moved.src = Some(kept.unwrap_or(guest.door_addr));
        moved.onlink = route.route.gateway.is_some();
        steps.push(Step::add_route(door.clone(), moved));
    }
    steps
}

/// The guest's classless static routes: its way to the container (the door), the
/// container NIC's own routes, and the default route on the default-route NIC only.
fn guest_routes(
    addr: Ipv4Net,
    door: Ipv4Addr,
    moved: &[Route],
    gateway: Option<Ipv4Addr>,
) -> (Vec<Route>, usize) {
    let own: Vec<Route> = moved
        .iter()
        .filter(|r| !r.is_default())
        .map(|r| Route {
            metric: None,
            ..r.clone()
        })
        .collect();
    // DHCP option 121 holds 255 bytes (dnsmasq refuses more and would not start): the
    // NIC's own routes that do not fit are left out, last first; the door and the default
    // route always fit.
    let mut keep = own.len();
    loop {
        let routes = guest_routes_with(addr, door, &own[..keep], gateway);
        let size: usize = routes
            .iter()
            .map(|r| 1 + usize::from(r.dst.prefix).div_ceil(8) + 4)
            .sum();
        if size <= 255 || keep == 0 {
            return (routes, own.len() - keep);
        }
        keep -= 1;
    }
}

fn guest_routes_with(
    addr: Ipv4Net,
    door: Ipv4Addr,
    own: &[Route],
    gateway: Option<Ipv4Addr>,
) -> Vec<Route> {
    let mut routes = vec![Route::host(door)];
    routes.extend(own.iter().cloned());
    if let Some(gw) = gateway {
        // A gateway outside the guest's subnet (a /32 pod) needs an on-link route.
        let covered = addr.contains(gw)
            || routes
                .iter()
                .any(|r| r.gateway.is_none() && r.dst.contains(gw));
        if !covered {
            routes.push(Route::host(gw));
        }
        routes.push(Route {
            dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0),
            gateway: Some(gw),
            metric: None,
        });
    }
    routes
}

/// Link-local addresses others give a meaning to: Calico's gateway, Kubernetes'
/// NodeLocal DNS, the cloud providers' time, DNS and metadata services, and ECS's task
/// metadata. A door never takes one.
pub const RESERVED_LINK_LOCAL: [Ipv4Addr; 6] = [
    Ipv4Addr::new(169, 254, 1, 1),
    Ipv4Addr::new(169, 254, 20, 10),
    Ipv4Addr::new(169, 254, 169, 123),
    Ipv4Addr::new(169, 254, 169, 253),
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
];

/// 169.254.1.0: RFC 3927 reserves the first and the last /24 of 169.254/16.
const DOOR_FIRST: u32 = 0xa9fe_0100;
/// How many door addresses there are: 169.254.1.0 to 169.254.254.255, reserved ones out.
const DOOR_COUNT: u32 = 254 * 256 - RESERVED_LINK_LOCAL.len() as u32;

/// The container's link-local address for talking to the guest at `guest`.
///
/// Door addresses are numbered from 169.254.1.0 upwards, skipping `RESERVED_LINK_LOCAL`.
/// The door of a guest address is the one numbered by its host part within its subnet
/// (for subnets of /16 to /30; the low 16 bits of the address for other sizes), so guests
/// with different addresses on one Docker network get different doors (for the first
/// 65018 host numbers of a /16: every network of /17 or smaller), and a restart picks the
/// same door again. An address already in use in the namespace (`taken`) is skipped for the
/// next free one.
pub fn door_address(guest: Ipv4Net, taken: &[Ipv4Addr]) -> Ipv4Addr {
    let bits = u32::from(guest.addr);
    let host = match guest.prefix {
        16..=30 => bits & !u32::from(guest.netmask()),
        _ => bits & 0xffff,
    };
    numbered_door(host, taken)
}

/// The door of a guest NIC that gets no IPv4 address (an IPv6-only NIC): numbered as in
/// `door_address` by the low 16 bits of the guest's IPv6 address (the host number Docker
/// and Calico hand out: `fd00:1::2` gets the door `172.19.0.2/24` would get), so it is as
/// stable across restarts, and skips the addresses in use in the namespace the same way.
/// The guest has no route to it; it is the source of the NIC's IPv4 routes, if any.
pub fn door_address6(guest: Ipv6Addr, taken: &[Ipv4Addr]) -> Ipv4Addr {
    numbered_door(u32::from(guest.segments()[7]), taken)
}

/// The door numbered `host` (modulo the number of doors), or the next free one after it.
fn numbered_door(host: u32, taken: &[Ipv4Addr]) -> Ipv4Addr {
    let mut n = host % DOOR_COUNT;
    loop {
        let candidate = nth_door(n);
        if !taken.contains(&candidate) {
            return candidate;
        }
        n = (n + 1) % DOOR_COUNT;
    }
}

/// The `n`th door address (`n < DOOR_COUNT`).
fn nth_door(n: u32) -> Ipv4Addr {
    let mut bits = DOOR_FIRST + n;
    // RESERVED_LINK_LOCAL is sorted: each one at or below the candidate pushes it up one.
    for reserved in RESERVED_LINK_LOCAL {
        if bits >= u32::from(reserved) {
            bits += 1;
        }
    }
    Ipv4Addr::from(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::netstate::{IpIfAddr, IpNeigh, IpRoute};
    use crate::testing::{MAC0, MAC1, Ns, docker_two_networks, ip, net, route};
    use std::net::Ipv4Addr;

    fn plan_for(state: &NetState, attach: Attach, selected: Option<&str>) -> Result<Plan> {
        plan(&PlanInput {
            attach: &attach,
            selected_network: selected.map(net),
            selected_network6: None,
            state,
            random_macs: &[[0xaa; 6], [0xbb; 6]],
            datapath: Datapath::Macvtap,
        })
    }

    #[test]
    fn a_point_to_point_address_or_an_address_on_two_links_is_refused_before_any_step() {
        let mut state = docker_two_networks();
        let eth0 = state.link("eth0").unwrap().index;
        let a = state.addrs.iter_mut().find(|a| a.index == eth0).unwrap();
        a.addr.peer = Some(ip("172.19.0.1"));
        let e = plan_for(&state, Attach::All, None).unwrap_err();
        assert_eq!(e.exit_code(), 65);
        assert!(
            e.to_string().contains("point-to-point (peer 172.19.0.1)"),
            "{e}"
        );

        let mut state = docker_two_networks();
        let eth1 = state.link("eth1").unwrap().index;
        let copy = state
            .addrs
            .iter()
            .find(|a| a.index == eth0)
            .unwrap()
            .addr
            .clone();
        state.addrs.push(crate::net::netstate::Addr {
            index: eth1,
            addr: copy,
        });
        let e = plan_for(&state, Attach::All, None).unwrap_err();
        assert_eq!(e.exit_code(), 65);
        assert!(
            e.to_string()
                .contains("172.19.0.2 is on both eth0 and eth1"),
            "{e}"
        );
    }

    #[test]
    fn one_docker_nic_becomes_a_guest_nic_with_its_mac_ip_and_router() {
        let state = Ns::new()
            .nic(
                7,
                "eth0",
                MAC0,
                &["172.19.0.2/24"],
                &[route("0.0.0.0/0", Some("172.19.0.1"))],
            )
            .0;
        let p = plan_for(&state, Attach::All, None).unwrap();
        assert_eq!(p.nics.len(), 1);
        let nic = &p.nics[0];
        assert_eq!(
            (nic.lower.as_str(), nic.tap.as_str(), nic.door.as_str()),
            ("eth0", "vmtap0", "vmlink0")
        );
        assert_eq!(
            (nic.mac, nic.addr, nic.mtu),
            (MAC0, Some(net("172.19.0.2/24")), 1450)
        );
        assert_eq!(nic.gateway, Some(ip("172.19.0.1")));
        let door = nic.door_addr;
        assert!(net("169.254.0.0/16").contains(door));
        assert_eq!(
            nic.guest_routes,
            vec![
                route(&format!("{door}/32"), None),
                route("0.0.0.0/0", Some("172.19.0.1"))
            ]
        );
        let record = Identity {
            lower: "eth0".into(),
            mac: MAC0,
            addrs: state.addrs_of(7),
            routes: state.routes_of(7),
            neighbours: vec![],
            addrs6: vec![],
            routes6: vec![],
            neighbours6: vec![],
            datapath: Datapath::Macvtap,
            arp_ignore: None,
        };
        let cmds: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            cmds,
            vec![
                "ip link add link eth0 name vmtap0 address 02:42:ac:13:00:02 mtu 1450 type macvtap mode bridge".to_string(),
                "ip link set vmtap0 addrgenmode none".into(),
                "ip link set vmtap0 alias 'vminit:nic eth0'".into(),
                "ip link add link eth0 name vmlink0 mtu 1450 up type macvlan mode bridge".into(),
                format!("ip link set vmlink0 alias '{}'", record.aliases()[0]),
                "ip route del default via 172.19.0.1 dev eth0".into(),
                "ip addr del 172.19.0.2/24 dev eth0".into(),
                "ip link set eth0 address aa:aa:aa:aa:aa:aa".into(),
                "ip link set vmtap0 allmulticast on up".into(),
                "ethtool -K vmlink0 tx off".into(),
                format!("ip addr add {door}/32 dev vmlink0"),
                format!("ip route add 172.19.0.2/32 dev vmlink0 src {door}"),
                format!("ip route add 172.19.0.0/24 dev vmlink0 src {door}"),
                format!("ip route add default via 172.19.0.1 dev vmlink0 onlink src {door}"),
            ]
        );
        assert_eq!(
            record.aliases(),
            [
                "vminit:door eth0 1/1 v1 02:42:ac:13:00:02;a 172.19.0.2/24 b=172.19.0.255;r 0.0.0.0/0 g=172.19.0.1"
            ]
        );
    }

    #[test]
    fn with_the_tap_datapath_the_door_serves_on_the_tap_and_tc_joins_it_to_the_nic_last() {
        let state = Ns::new()
            .nic(
                7,
                "eth0",
                MAC0,
                &["172.19.0.2/24"],
                &[route("0.0.0.0/0", Some("172.19.0.1"))],
            )
            .0;
        let p = plan(&PlanInput {
            attach: &Attach::All,
            selected_network: None,
            selected_network6: None,
            state: &state,
            random_macs: &[[0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xab]],
            datapath: Datapath::Tap,
        })
        .unwrap();
        let nic = &p.nics[0];
        assert_eq!(nic.serves_on(), "vmtap0");
        let door = nic.door_addr;
        let cmds: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            cmds[..2],
            [
                "ip tuntap add dev vmtap0 mode tap vnet_hdr && ip link set vmtap0 address aa:aa:aa:aa:aa:aa mtu 1450 up".to_string(),
                "ip link set vmtap0 alias 'vminit:nic eth0'".into(),
            ]
        );
        assert!(
            cmds[3].contains(";t;a 172.19.0.2/24"),
            "the record says tap: {}",
            cmds[3]
        );
        assert_eq!(
            cmds[4..],
            [
                "ip route del default via 172.19.0.1 dev eth0".to_string(),
                "ip addr del 172.19.0.2/24 dev eth0".into(),
                "ip link set eth0 address aa:aa:aa:aa:aa:ab".into(),
                "ethtool -K vmtap0 tx off".into(),
                format!("ip addr add {door}/32 dev vmtap0"),
                format!("ip route add 172.19.0.2/32 dev vmtap0 src {door}"),
                format!("ip route add 172.19.0.0/24 dev vmlink0 src {door}"),
                format!("ip route add default via 172.19.0.1 dev vmlink0 onlink src {door}"),
                "tc qdisc add dev vmtap0 ingress".into(),
                "tc filter add dev vmtap0 ingress prio 1 protocol all u32 match u32 0xaaaaaaaa 0xffffffff at -14 match u32 0xaaaa0000 0xffff0000 at -10".into(),
                "tc filter add dev vmtap0 ingress prio 2 protocol ip u32 match u32 0x05000000 0x0f000000 at 0 match u32 0x00110000 0x00ff0000 at 8 match u32 0x00000043 0x0000ffff at 20".into(),
                "tc filter add dev vmtap0 ingress prio 3 protocol ipv6 u32 match u32 0x00003a00 0x0000ff00 at 4 match u32 0x85000000 0xff000000 at 40".into(),
                "tc filter add dev vmtap0 ingress prio 4 protocol ipv6 u32 match u32 0x00001100 0x0000ff00 at 4 match u32 0x00000223 0x0000ffff at 40".into(),
                "tc filter add dev vmtap0 ingress prio 5 protocol all u32 match u32 0x01000000 0x01000000 at -14 action mirred egress mirror dev eth0 pass".into(),
                "tc filter add dev vmtap0 ingress prio 6 protocol all u32 match u32 0 0 action mirred egress redirect dev eth0".into(),
                "tc qdisc add dev eth0 ingress".into(),
                "tc filter add dev eth0 ingress prio 1 protocol all u32 match u32 0x0242ac13 0xffffffff at -14 match u32 0x00020000 0xffff0000 at -10 action mirred egress redirect dev vmtap0".into(),
                "tc filter add dev eth0 ingress prio 2 protocol all u32 match u32 0x01000000 0x01000000 at -14 action mirred egress mirror dev vmtap0 pass".into(),
            ]
        );
    }

    #[test]
    fn with_the_tap_datapath_a_macvlan_nic_keeps_its_mac() {
        let mut state = Ns::new().nic(7, "eth0", MAC0, &["10.1.0.7/24"], &[]).0;
        state.links[1].kind = Some("macvlan".into());
        let p = plan(&PlanInput {
            attach: &Attach::All,
            selected_network: None,
            selected_network6: None,
            state: &state,
            random_macs: &[[0xaa; 6]],
            datapath: Datapath::Tap,
        })
        .unwrap();
        assert!(!p.steps.iter().any(|s| matches!(s, Step::SetMac { .. })));
        assert!(p.steps.iter().any(|s| matches!(s, Step::AddTap { .. })));
    }

    #[test]
    fn on_a_macvlan_nic_only_the_link_holding_the_door_address_answers_arp_for_it() {
        let plan_with = |kind: &str, arp_ignore: u32, datapath: Datapath| {
            let mut state = Ns::new().nic(7, "eth0", MAC0, &["10.1.0.7/24"], &[]).0;
            state.links[1].kind = Some(kind.into());
            state.links[1].arp_ignore = Some(arp_ignore);
            plan(&PlanInput {
                attach: &Attach::All,
                selected_network: None,
                selected_network6: None,
                state: &state,
                random_macs: &[[0xaa; 6]],
                datapath,
            })
            .unwrap()
        };
        let quiet = |p: &Plan| -> Vec<Step> {
            p.steps
                .iter()
                .filter(|s| matches!(s, Step::SetArpIgnore { .. }))
                .cloned()
                .collect()
        };
        // macvtap: the NIC, before the guest's macvtap goes up; recorded and undone.
        let p = plan_with("macvlan", 0, Datapath::Macvtap);
        let set = Step::SetArpIgnore {
            dev: "eth0".into(),
            value: 1,
            old: Some(0),
        };
        assert_eq!(quiet(&p), std::slice::from_ref(&set));
        let at = |f: &dyn Fn(&Step) -> bool| p.steps.iter().position(f).unwrap();
        assert!(at(&|s| *s == set) < at(&|s| matches!(s, Step::SetUpAllMulticast { .. })));
        let Some(Step::SetAlias { alias, .. }) = p.steps.get(4) else {
            panic!("the record: {:?}", p.steps.get(4));
        };
        assert!(alias.contains(";i 0;"), "{alias}");
        assert_eq!(
            set.inverse().map(|s| s.to_string()).as_deref(),
            Some("sysctl -w net.ipv4.conf.eth0.arp_ignore=0")
        );
        // A NIC that answers only for its own addresses already is left as it is.
        assert!(quiet(&plan_with("macvlan", 2, Datapath::Macvtap)).is_empty());
        // The tap datapath: the door macvlan (the door address is on the tap); nothing to
        // record or put back, it goes with the door.
        let p = plan_with("macvlan", 0, Datapath::Tap);
        let set = Step::SetArpIgnore {
            dev: "vmlink0".into(),
            value: 1,
            old: None,
        };
        assert_eq!(quiet(&p), std::slice::from_ref(&set));
        assert_eq!(set.inverse(), None);
        // A veth is the lower link of the door and the guest's link: it does not hear them.
        for datapath in [Datapath::Macvtap, Datapath::Tap] {
            assert!(quiet(&plan_with("veth", 0, datapath)).is_empty());
        }
    }

    #[test]
    fn the_record_is_complete_before_the_first_change_to_the_nic() {
        let mut state = docker_two_networks();
        // Enough routes for a record longer than one alias.
        for i in 0..12 {
            state.routes.push(crate::net::netstate::RouteEntry {
                index: 7,
                route: KernelRoute::main(route(&format!("10.{i}.0.0/16"), Some("172.19.0.1"))),
            });
        }
        let p = plan_for(&state, Attach::All, None).unwrap();
        let eth0: Vec<&Step> = p
            .steps
            .iter()
            .filter(|s| s.to_string().contains("eth0"))
            .collect();
        let first_change = eth0
            .iter()
            .position(|s| matches!(s, Step::DelRoute { .. }))
            .unwrap();
        let aliases: Vec<&Step> = eth0[..first_change]
            .iter()
            .copied()
            .filter(|s| matches!(s, Step::SetAlias { .. }))
            .collect();
        assert!(
            aliases.len() > 1,
            "a long record needs carriers: {aliases:?}"
        );
        assert!(
            eth0[..first_change].iter().all(|s| matches!(
                s,
                Step::AddLink { .. } | Step::SetAlias { .. } | Step::NoAddrGen { .. }
            )),
            "only links, their aliases and the macvtap's addrgenmode before the first change: {eth0:?}"
        );
        assert!(
            p.steps
                .iter()
                .any(|s| matches!(s, Step::AddLink { name, up: false, .. } if name == "vmrec0.2")),
            "carriers stay down"
        );
    }

    #[test]
    fn each_nic_has_its_own_steps() {
        let p = plan_for(&docker_two_networks(), Attach::All, None).unwrap();
        let per: Vec<(&str, usize)> = p
            .per_nic()
            .map(|(nic, steps)| (nic.lower.as_str(), steps.make.len() + steps.take.len()))
            .collect();
        assert_eq!(per.iter().map(|(_, n)| n).sum::<usize>(), p.steps.len());
        for (nic, steps) in p.per_nic() {
            let all: Vec<&Step> = steps.make.iter().chain(steps.take).collect();
            assert!(
                all.iter().all(|s| s.to_string().contains(&nic.lower)
                    || s.to_string().contains(&nic.tap)
                    || s.to_string().contains(&nic.door)),
                "{}: {all:?}",
                nic.lower
            );
        }
    }

    /// QEMU starts once every NIC's guest link is made; the rest follows while it starts.
    /// So the first part must make the guest's link and nothing else (every step on it, the
    /// container's NIC untouched), for both datapaths.
    #[test]
    fn the_steps_before_qemu_starts_only_make_the_guests_link() {
        for datapath in [Datapath::Macvtap, Datapath::Tap] {
            let state = docker_two_networks();
            let random = [[2u8; 6], [3; 6]];
            let p = plan(&PlanInput {
                attach: &Attach::All,
                selected_network: None,
                selected_network6: None,
                state: &state,
                random_macs: &random,
                datapath,
            })
            .unwrap();
            for (nic, steps) in p.per_nic() {
                let on_tap = |s: &Step| match s {
                    Step::AddLink { name, up, .. } => *name == nic.tap && !up,
                    Step::AddTap { name, .. } => *name == nic.tap,
                    Step::NoAddrGen { dev } | Step::SetAlias { dev, .. } => *dev == nic.tap,
                    _ => false,
                };
                assert!(
                    !steps.make.is_empty() && steps.make.iter().all(on_tap),
                    "{datapath:?} {}: {:?}",
                    nic.lower,
                    steps.make
                );
                assert!(
                    !steps.take.iter().any(on_tap),
                    "{datapath:?} {}: the guest's link is made once: {:?}",
                    nic.lower,
                    steps.take
                );
            }
        }
    }

    #[test]
    fn the_new_container_mac_is_set_before_the_macvtap_with_the_old_one_goes_up() {
        let p = plan_for(&docker_two_networks(), Attach::All, None).unwrap();
        let set_mac = p
            .steps
            .iter()
            .position(|s| matches!(s, Step::SetMac { dev, .. } if dev == "eth0"))
            .unwrap();
        let tap_up = p
            .steps
            .iter()
            .position(|s| matches!(s, Step::SetUpAllMulticast { dev } if dev == "vmtap0"))
            .unwrap();
        assert!(set_mac < tap_up);
        assert!(
            p.steps.iter().any(|s| matches!(s, Step::AddLink { name, mac: Some(m), up: false, .. } if name == "vmtap0" && *m == MAC0)),
            "the macvtap is made down, with the NIC's MAC: {:?}",
            p.steps
        );
        let Step::SetMac { mac, .. } = &p.steps[set_mac] else {
            unreachable!()
        };
        assert_eq!(mac.0[0] & 0x03, 0x02, "unicast, locally administered");
    }

    #[test]
    fn two_nics_are_ordered_by_name_and_only_the_default_route_nic_gets_a_router() {
        let p = plan_for(&docker_two_networks(), Attach::All, None).unwrap();
        let names: Vec<&str> = p.nics.iter().map(|n| n.lower.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(p.nics[0].gateway, Some(ip("172.19.0.1")));
        assert_eq!(p.nics[1].gateway, None);
        assert!(p.nics[1].guest_routes.iter().all(|r| !r.is_default()));
        assert_ne!(p.nics[0].door_addr, p.nics[1].door_addr);
        assert_eq!(p.nics[1].addr, Some(net("172.20.0.5/16")));
    }

    #[test]
    fn attach_ifaces_picks_a_subset_in_the_given_order() {
        let p = plan_for(
            &docker_two_networks(),
            Attach::Only(vec!["eth1".into()]),
            None,
        )
        .unwrap();
        assert_eq!(p.nics.len(), 1);
        assert_eq!(p.nics[0].lower, "eth1");
        assert_eq!(p.nics[0].tap, "vmtap0");
        assert!(p.steps.iter().all(|s| !s.to_string().contains("eth0")));
    }

    #[test]
    fn an_unknown_interface_is_named_in_the_error() {
        let e = plan_for(
            &docker_two_networks(),
            Attach::Only(vec!["eth7".into()]),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Network(NetworkError::NoSuchInterface(ref n)) if n == "eth7"),
            "{e}"
        );
    }

    #[test]
    fn a_nic_without_ipv4_or_a_global_ipv6_address_is_an_error_naming_it() {
        let bare = Ns::new().nic(3, "eth0", MAC0, &[], &[]);
        let link_local_only = Ns::new()
            .nic(3, "eth0", MAC0, &[], &[])
            .addr6(3, "fe80::42:acff:fe13:2/64");
        for state in [bare.0, link_local_only.0] {
            let e = plan_for(&state, Attach::All, None).unwrap_err();
            assert!(
                matches!(e, Error::Network(NetworkError::NoAddress(ref n)) if n == "eth0"),
                "{e}"
            );
            assert!(e.to_string().contains("no IPv4 or IPv6 address"), "{e}");
        }
    }

    /// eth0 on a Docker IPv6-only network: fd00:1::2/64 (and the link-local address of its
    /// MAC), default route via fd00:1::1.
    fn ipv6_only_nic() -> Ns {
        Ns::new()
            .nic(3, "eth0", MAC0, &[], &[])
            .addr6(3, "fd00:1::2/64")
            .addr6(3, "fe80::42:acff:fe13:2/64")
            .route6(3, "::/0", Some("fd00:1::1"))
    }

    #[test]
    fn an_ipv6_only_nic_becomes_a_guest_nic_without_ipv4_and_gets_a_door_of_its_own() {
        let p = plan_for(&ipv6_only_nic().0, Attach::All, None).unwrap();
        let nic = &p.nics[0];
        assert_eq!((nic.mac, nic.addr, nic.gateway), (MAC0, None, None));
        assert!(nic.guest_routes.is_empty(), "no DHCPv4 routes");
        // Numbered by the IPv6 host part: fd00:1::2 gets the door of 172.19.0.2/24.
        assert_eq!(nic.door_addr, ip("169.254.1.3"));
        assert_eq!(nic.door_addr, door_address(net("172.19.0.2/24"), &[]));
        // Of IPv4, only the door's own address: no address leaves eth0, no route to a guest.
        let ipv4: Vec<String> = p
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s,
                    Step::DelAddr {
                        addr: IpIfAddr::V4(_),
                        ..
                    } | Step::AddAddr {
                        addr: IpIfAddr::V4(_),
                        ..
                    } | Step::DelRoute {
                        route: IpRoute::V4(_),
                        ..
                    } | Step::AddRoute {
                        route: IpRoute::V4(_),
                        ..
                    }
                )
            })
            .map(|s| s.to_string())
            .collect();
        assert_eq!(ipv4, ["ip addr add 169.254.1.3/32 dev vmlink0"]);
        // Its IPv6 address and default route go to the guest, as a dual-stack NIC's do.
        assert_eq!(p.v6.len(), 1);
        assert_eq!(p.v6[0].addr, "fd00:1::2/64".parse().unwrap());
        assert!(p.v6[0].gateways.iter().any(|g| g.default));
        let at = |pred: &dyn Fn(&Step) -> bool| p.steps.iter().position(pred).unwrap();
        let record = at(
            &|s| matches!(s, Step::SetAlias { alias, .. } if alias.contains(";a6 fd00:1::2/64")),
        );
        let release = at(
            &|s| matches!(s, Step::DelAddr { addr: IpIfAddr::V6(addr), .. } if addr.net.addr == "fd00:1::2".parse::<Ipv6Addr>().unwrap()),
        );
        let new_mac = at(&|s| matches!(s, Step::SetMac { .. }));
        let tap_up = at(&|s| matches!(s, Step::SetUpAllMulticast { .. }));
        assert!(record < release && release < new_mac && new_mac < tap_up);
    }

    #[test]
    fn an_ipv6_only_door_is_stable_and_avoids_addresses_in_use() {
        let guest = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let door = door_address6(guest("fd00:1::2"), &[]);
        assert_eq!(door, door_address6(guest("fd00:1::2"), &[]), "stable");
        assert_ne!(door, door_address6(guest("fd00:1::3"), &[]));
        assert_eq!(
            door_address6(guest("fd00:1::2"), &[door]),
            ip("169.254.1.4"),
            "the next free one"
        );
        // A Calico /128 from a block: the low bits pick it; reserved addresses are skipped.
        for host in [0, 1, 2, 0xffff] {
            let d = door_address6(Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0x1f, host), &[]);
            assert!(net("169.254.0.0/16").contains(d) && !RESERVED_LINK_LOCAL.contains(&d));
        }
    }

    #[test]
    fn with_a_dual_stack_nic_and_an_ipv6_only_one_each_family_has_its_own_router_nic() {
        // eth0: IPv4 with the IPv4 default route, and IPv6 without one; eth1: IPv6 only,
        // with the IPv6 default route.
        let state = Ns::new()
            .nic(
                7,
                "eth0",
                MAC0,
                &["172.19.0.2/24"],
                &[route("0.0.0.0/0", Some("172.19.0.1"))],
            )
            .addr6(7, "fd00:1::2/64")
            .nic(9, "eth1", MAC1, &[], &[])
            .addr6(9, "fd00:2::5/64")
            .route6(9, "::/0", Some("fd00:2::1"))
            .0;
        let p = plan_for(&state, Attach::All, None).unwrap();
        assert_eq!(p.nics[0].gateway, Some(ip("172.19.0.1")));
        assert_eq!((p.nics[1].addr, p.nics[1].gateway), (None, None));
        assert_ne!(p.nics[0].door_addr, p.nics[1].door_addr);
        let default6: Vec<(&str, bool)> =
            p.v6.iter()
                .map(|g| (g.lower.as_str(), g.gateways.iter().any(|gw| gw.default)))
                .collect();
        assert_eq!(default6, [("eth0", false), ("eth1", true)]);
    }

    #[test]
    fn selected_network_picks_the_address_per_nic_and_the_container_keeps_the_other() {
        let state = Ns::new()
            .nic(
                3,
                "eth0",
                MAC0,
                &["192.168.5.4/24", "10.1.2.3/16"],
                &[route("0.0.0.0/0", Some("10.1.0.1"))],
            )
            .0;
        let p = plan_for(&state, Attach::All, Some("10.1.0.0/16")).unwrap();
        assert_eq!(p.nics[0].addr, Some(net("10.1.2.3/16")));
        let dels: Vec<Ipv4Net> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::DelAddr {
                    addr: IpIfAddr::V4(addr),
                    ..
                } => Some(addr.net),
                _ => None,
            })
            .collect();
        assert_eq!(dels, [net("10.1.2.3/16")], "the other address stays");
        // The container's own traffic leaves from the address it kept.
        let mut moved = KernelRoute::main(route("0.0.0.0/0", Some("10.1.0.1")));
        moved.src = Some(ip("192.168.5.4"));
        moved.onlink = true;
        assert!(p.steps.contains(&Step::add_route("vmlink0", moved)));
        // Without SELECTED_NETWORK the first address goes to the VM.
        let p = plan_for(&state, Attach::All, None).unwrap();
        assert_eq!(p.nics[0].addr, Some(net("192.168.5.4/24")));
    }

    #[test]
    fn selected_network_matching_nothing_is_an_error() {
        let e = plan_for(&docker_two_networks(), Attach::All, Some("10.9.0.0/16")).unwrap_err();
        assert!(
            matches!(e, Error::Config { ref var, .. } if var == "SELECTED_NETWORK"),
            "{e}"
        );
    }

    #[test]
    fn a_slash_32_pod_gives_the_guest_an_on_link_route_to_its_gateway() {
        let state = Ns::new()
            .nic(
                3,
                "eth0",
                MAC0,
                &["10.244.1.7/32"],
                &[
                    route("169.254.1.1/32", None),
                    route("0.0.0.0/0", Some("169.254.1.1")),
                ],
            )
            .0;
        let p = plan_for(&state, Attach::All, None).unwrap();
        let nic = &p.nics[0];
        assert_eq!(nic.addr, Some(net("10.244.1.7/32")));
        assert_eq!(nic.gateway, Some(ip("169.254.1.1")));
        assert_eq!(
            nic.guest_routes,
            vec![
                route(&format!("{}/32", nic.door_addr), None),
                route("169.254.1.1/32", None),
                route("0.0.0.0/0", Some("169.254.1.1")),
            ]
        );
        assert_ne!(nic.door_addr, ip("169.254.1.1"));
    }

    #[test]
    fn an_off_subnet_gateway_without_a_route_gets_one() {
        let (routes, _) = guest_routes(
            net("10.0.0.5/32"),
            ip("169.254.9.9"),
            &[],
            Some(ip("10.0.0.1")),
        );
        assert!(routes.contains(&route("10.0.0.1/32", None)));
    }

    #[test]
    fn two_addresses_in_one_subnet_keep_the_second_for_the_container_in_order() {
        let state = Ns::new()
            .nic(
                3,
                "eth0",
                MAC0,
                &["172.19.0.2/24", "172.19.0.9/24", "172.19.0.10/24"],
                &[route("0.0.0.0/0", Some("172.19.0.1"))],
            )
            .0;
        let p = plan_for(&state, Attach::All, None).unwrap();
        assert_eq!(p.nics[0].addr, Some(net("172.19.0.2/24")));
        let changes: Vec<String> = p
            .steps
            .iter()
            .filter(|s| matches!(s, Step::DelAddr { dev, .. } | Step::AddAddr { dev, .. } if dev == "eth0"))
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            changes,
            [
                // The kernel would delete the secondaries with their primary: take them
                // off first, then put them back, in their order.
                "ip addr del 172.19.0.10/24 dev eth0",
                "ip addr del 172.19.0.9/24 dev eth0",
                "ip addr del 172.19.0.2/24 dev eth0",
                "ip addr add 172.19.0.9/24 brd 172.19.0.255 dev eth0",
                "ip addr add 172.19.0.10/24 brd 172.19.0.255 dev eth0",
            ]
        );
        // The container's routes leave from the first address it kept.
        assert!(p.steps.iter().any(
            |s| matches!(s, Step::AddRoute { dev, route: IpRoute::V4(route) } if dev == "vmlink0" && route.src == Some(ip("172.19.0.9")) && route.route.is_default())
        ));
        // Undone in reverse, the primary comes back first, then its secondaries in order.
        let undo: Vec<String> = p
            .steps
            .iter()
            .rev()
            .filter_map(Step::inverse)
            .filter(|s| matches!(s, Step::AddAddr { dev, .. } if dev == "eth0"))
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            undo,
            [
                "ip addr add 172.19.0.2/24 brd 172.19.0.255 dev eth0",
                "ip addr add 172.19.0.9/24 brd 172.19.0.255 dev eth0",
                "ip addr add 172.19.0.10/24 brd 172.19.0.255 dev eth0",
            ]
        );
    }

    #[test]
    fn a_secondary_guest_address_leaves_its_primary_alone() {
        let state = Ns::new()
            .nic(3, "eth0", MAC0, &["10.1.0.2/24", "10.1.0.7/24"], &[])
            .0;
        let p = plan_for(&state, Attach::All, Some("10.1.0.7/32")).unwrap();
        let changes: Vec<String> = p
            .steps
            .iter()
            .filter(|s| matches!(s, Step::DelAddr { dev, .. } | Step::AddAddr { dev, .. } if dev == "eth0"))
            .map(|s| s.to_string())
            .collect();
        assert_eq!(changes, ["ip addr del 10.1.0.7/24 dev eth0"]);
    }

    #[test]
    fn permanent_neighbours_are_forgotten_before_the_mac_changes_and_come_back_after() {
        let mut state = docker_two_networks();
        let gw = Neigh {
            addr: ip("172.19.0.1"),
            mac: Mac([2, 0, 0, 0, 0, 1]),
        };
        state.neighbours.push(crate::net::netstate::NeighEntry {
            index: 7,
            neigh: gw,
        });
        let p = plan_for(&state, Attach::All, None).unwrap();
        let del = p
            .steps
            .iter()
            .position(|s| matches!(s, Step::DelNeigh { neigh, .. } if *neigh == IpNeigh::V4(gw)))
            .unwrap();
        let set_mac = p
            .steps
            .iter()
            .position(|s| matches!(s, Step::SetMac { dev, .. } if dev == "eth0"))
            .unwrap();
        assert!(del < set_mac);
    }

    #[test]
    fn routes_of_other_tables_move_to_the_door_but_only_main_ones_reach_the_guest() {
        let mut state = docker_two_networks();
        let mut policy = KernelRoute::main(route("0.0.0.0/0", Some("172.19.0.254")));
        policy.table = 100;
        state.routes.push(crate::net::netstate::RouteEntry {
            index: 7,
            route: policy.clone(),
        });
        let p = plan_for(&state, Attach::All, None).unwrap();
        assert!(p.steps.contains(&Step::del_route("eth0", policy.clone())));
        assert!(p.steps.iter().any(
            |s| matches!(s, Step::AddRoute { dev, route: IpRoute::V4(route) } if dev == "vmlink0" && route.table == 100)
        ));
        assert_eq!(p.nics[0].gateway, Some(ip("172.19.0.1")));
        assert!(
            !p.nics[0]
                .guest_routes
                .iter()
                .any(|r| r.gateway == Some(ip("172.19.0.254")))
        );
    }

    #[test]
    fn routes_beyond_what_dhcp_option_121_holds_are_left_out_but_never_the_default() {
        let many: Vec<Route> = (0..60)
            .map(|i| route(&format!("10.{i}.0.0/16"), Some("172.19.0.254")))
            .collect();
        let (routes, left_out) = guest_routes(
            net("172.19.0.2/24"),
            ip("169.254.1.3"),
            &many,
            Some(ip("172.19.0.1")),
        );
        let size: usize = routes
            .iter()
            .map(|r| 1 + usize::from(r.dst.prefix).div_ceil(8) + 4)
            .sum();
        assert!(size <= 255, "{size}");
        assert!(left_out > 0 && left_out < 60, "{left_out}");
        assert_eq!(routes.len(), 60 - left_out + 2);
        assert_eq!(routes[0], route("169.254.1.3/32", None));
        assert_eq!(routes.last(), Some(&route("0.0.0.0/0", Some("172.19.0.1"))));
        // The ones kept are the first ones.
        assert_eq!(routes[1], many[0]);
    }

    #[test]
    fn door_addresses_follow_the_host_part_and_avoid_reserved_and_taken_ones() {
        let door = |addr: &str, taken: &[Ipv4Addr]| door_address(net(addr), taken);
        assert_eq!(door("172.19.0.0/24", &[]), ip("169.254.1.0"));
        assert_eq!(
            door("10.0.0.1/24", &[]),
            ip("169.254.1.2"),
            "skips 169.254.1.1"
        );
        assert_eq!(door("172.19.0.2/24", &[]), ip("169.254.1.3"));
        assert_eq!(
            door("172.19.0.2/24", &[ip("169.254.1.3")]),
            ip("169.254.1.4")
        );
        assert_eq!(
            door("172.19.0.2/24", &[]),
            door("172.19.0.2/24", &[]),
            "stable"
        );
        // x.y.1.10 and x.y.255.10 on one /16 used to share a door.
        assert_ne!(door("10.5.1.10/16", &[]), door("10.5.255.10/16", &[]));
        for reserved in RESERVED_LINK_LOCAL {
            let host = u32::from(reserved) - DOOR_FIRST;
            for addr in [host - 1, host, host + 1] {
                let guest = Ipv4Net::new(Ipv4Addr::from(0x0a05_0000 + addr), 16);
                assert_ne!(door_address(guest, &[]), reserved, "{guest}");
            }
        }
    }

    #[test]
    fn every_host_of_a_slash_17_gets_its_own_door() {
        let mut seen = std::collections::HashSet::new();
        for host in 1..(1u32 << 15) - 1 {
            let guest = Ipv4Net::new(Ipv4Addr::from(0xac13_0000 + host), 17);
            let door = door_address(guest, &[]);
            assert!(net("169.254.0.0/16").contains(door));
            assert!(!RESERVED_LINK_LOCAL.contains(&door));
            assert!(seen.insert(door), "{guest} shares {door}");
        }
    }

    #[test]
    fn every_change_is_undone_by_its_inverse() {
        let p = plan_for(&docker_two_networks(), Attach::All, None).unwrap();
        for step in &p.steps {
            match (step, step.inverse()) {
                (
                    Step::SetAlias { .. } | Step::TxChecksumOff { .. } | Step::NoAddrGen { .. },
                    undo,
                ) => {
                    assert!(undo.is_none())
                }
                (Step::AddRoute { dev, route, .. }, Some(undo)) => {
                    assert_eq!(
                        undo,
                        Step::DelRoute {
                            dev: dev.clone(),
                            route: route.clone()
                        }
                    )
                }
                (Step::AddLink { name, .. }, Some(undo)) => {
                    assert_eq!(undo, Step::DelLink { name: name.clone() })
                }
                (Step::SetUpAllMulticast { dev }, Some(undo)) => {
                    assert_eq!(undo, Step::SetDown { dev: dev.clone() })
                }
                (step, Some(undo)) => assert_eq!(undo.inverse().as_ref(), Some(step)),
                (step, None) => panic!("{step} has no inverse"),
            }
        }
    }

    fn link(name: &str, kind: Option<&str>, ethernet: bool) -> Link {
        Link {
            index: 1,
            name: name.into(),
            mac: None,
            mtu: 1500,
            kind: kind.map(str::to_string),
            alias: None,
            lower: None,
            ethernet,
            arp_ignore: Some(0),
            lower_netns: None,
            up: true,
        }
    }

    #[test]
    fn loopback_bridges_and_fallback_tunnels_are_not_nics() {
        assert!(is_infrastructure(&link("lo", None, false)));
        assert!(is_infrastructure(&link("tunl0", Some("ipip"), false)));
        assert!(is_infrastructure(&link("gretap0", Some("gretap"), true)));
        assert!(is_infrastructure(&link("br0", Some("bridge"), true)));
        assert!(!is_infrastructure(&link("eth0", Some("veth"), true)));
        assert!(!is_infrastructure(&link("eth1", Some("macvlan"), true)));
        assert!(!is_infrastructure(&link("ens3", None, true)));
    }

    /// The namespace after `plan` was applied to `state`: the guest NICs' lowers lost their
    /// addresses and routes, and vminit's links exist.
    fn taken_over(state: &NetState, plan: &Plan) -> NetState {
        let mut after = state.clone();
        for nic in &plan.nics {
            let index = state.link(&nic.lower).unwrap().index;
            after.addrs.retain(|a| a.index != index);
            after.routes.retain(|r| r.index != index);
            for (k, (name, kind)) in [(&nic.tap, "macvtap"), (&nic.door, "macvlan")]
                .into_iter()
                .enumerate()
            {
                let link_index = 100 + 2 * index + k as u32;
                after.links.push(Link {
                    index: link_index,
                    name: name.clone(),
                    mac: Some(nic.mac),
                    mtu: nic.mtu,
                    kind: Some(kind.into()),
                    alias: Some(format!("vminit:nic {}", nic.lower)),
                    lower: Some(index),
                    ethernet: true,
                    arp_ignore: Some(0),
                    lower_netns: None,
                    up: true,
                });
            }
            after.addrs.push(crate::net::netstate::Addr {
                index: 101 + 2 * index,
                addr: IfAddr::plain(Ipv4Net::new(nic.door_addr, 32)),
            });
        }
        after
    }

    fn changes(state: &NetState, attach: Attach, guest: &[NicPlan]) -> Changes {
        plan_changes(
            &PlanInput {
                attach: &attach,
                selected_network: None,
                selected_network6: None,
                state,
                random_macs: &[[0xcc; 6], [0xdd; 6]],
                datapath: Datapath::Macvtap,
            },
            guest,
        )
    }

    fn one_nic() -> NetState {
        Ns::new()
            .nic(
                7,
                "eth0",
                MAC0,
                &["172.19.0.2/24"],
                &[route("0.0.0.0/0", Some("172.19.0.1"))],
            )
            .0
    }

    /// `docker network connect`: the NICs of `more` (its loopback left out) join `now`, with
    /// their addresses and routes of both families.
    fn connect(now: &mut NetState, more: NetState) {
        now.links.extend(more.links.into_iter().skip(1));
        now.addrs.extend(more.addrs);
        now.routes.extend(more.routes);
        now.addrs6.extend(more.addrs6);
        now.routes6.extend(more.routes6);
    }

    /// eth1, `172.20.0.5/16` with a default route through `172.20.0.1`, connected to `now`.
    fn connect_eth1_with_a_gateway(now: &mut NetState) {
        let more = Ns::new()
            .nic(
                9,
                "eth1",
                MAC1,
                &["172.20.0.5/16"],
                &[route("0.0.0.0/0", Some("172.20.0.1"))],
            )
            .0;
        connect(now, more);
    }

    #[test]
    fn a_nic_connected_while_the_guest_runs_gets_the_next_slot_a_door_of_its_own_and_no_router() {
        let start = one_nic();
        let p = plan_for(&start, Attach::All, None).unwrap();
        let mut now = taken_over(&start, &p);
        // docker network connect: eth1 with its own subnet and a gateway route of its own.
        connect_eth1_with_a_gateway(&mut now);
        let c = changes(&now, Attach::All, &p.nics);
        assert!(
            c.gone.is_empty() && c.waiting.is_empty() && c.refused.is_empty(),
            "{c:?}"
        );
        assert_eq!(c.added.len(), 1);
        let (nic, steps) = &c.added[0];
        assert_eq!(
            (nic.lower.as_str(), nic.tap.as_str(), nic.door.as_str()),
            ("eth1", "vmtap1", "vmlink1")
        );
        assert_eq!((nic.mac, nic.addr), (MAC1, Some(net("172.20.0.5/16"))));
        assert_eq!(
            nic.gateway, None,
            "the guest has its router on eth0 already"
        );
        assert_ne!(nic.door_addr, p.nics[0].door_addr);
        assert!(matches!(&steps[0], Step::AddLink { name, .. } if name == "vmtap1"));
        assert!(matches!(&steps[3], Step::AddLink { name, .. } if name == "vmlink1"));
    }

    #[test]
    fn a_nic_with_the_default_route_gives_the_router_when_no_guest_nic_does() {
        let start = Ns::new().nic(7, "eth0", MAC0, &["172.19.0.2/24"], &[]).0;
        let p = plan_for(&start, Attach::All, None).unwrap();
        assert_eq!(p.nics[0].gateway, None);
        let mut now = taken_over(&start, &p);
        connect_eth1_with_a_gateway(&mut now);
        let c = changes(&now, Attach::All, &p.nics);
        assert_eq!(c.added[0].0.gateway, Some(ip("172.20.0.1")));
    }

    /// The subnet routes the plan puts on doors: `(door, subnet)`.
    fn door_subnets(p: &Plan) -> Vec<(String, String)> {
        p.steps
            .iter()
            .filter_map(|s| match s {
                Step::AddRoute {
                    dev,
                    route: IpRoute::V4(route),
                } if route.route.gateway.is_none() && route.route.dst.prefix < 32 => {
                    Some((dev.clone(), route.route.dst.to_string()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_door_routes_the_subnet_the_container_no_longer_reaches_and_no_other() {
        let one = plan_for(&one_nic(), Attach::All, None).unwrap();
        assert_eq!(
            door_subnets(&one),
            [("vmlink0".to_string(), "172.19.0.0/24".to_string())]
        );
        // The container keeps an address in the subnet: its kernel route stays.
        let two_addrs = Ns::new()
            .nic(7, "eth0", MAC0, &["172.19.0.2/24", "172.19.0.9/24"], &[])
            .0;
        let p = plan_for(&two_addrs, Attach::All, None).unwrap();
        assert_eq!(door_subnets(&p), []);
        // A /32 pod address has no subnet.
        let pod = Ns::new().nic(7, "eth0", MAC0, &["10.244.1.5/32"], &[]).0;
        assert_eq!(
            door_subnets(&plan_for(&pod, Attach::All, None).unwrap()),
            []
        );
        // Two NICs on one subnet: each NIC's is routed by the other already.
        let twins = Ns::new()
            .nic(7, "eth0", MAC0, &["172.19.0.2/24"], &[])
            .nic(9, "eth1", MAC1, &["172.19.0.3/24"], &[])
            .0;
        assert_eq!(
            door_subnets(&plan_for(&twins, Attach::All, None).unwrap()),
            []
        );
        // The NIC routes its subnet itself too (through a router): that route moves to
        // the door, and the door adds no other.
        let own = Ns::new()
            .nic(
                7,
                "eth0",
                MAC0,
                &["172.19.0.2/24"],
                &[route("172.19.0.0/24", Some("172.19.0.254"))],
            )
            .0;
        assert_eq!(
            door_subnets(&plan_for(&own, Attach::All, None).unwrap()),
            []
        );
    }

    #[test]
    fn when_the_router_nic_leaves_the_nic_now_holding_the_default_route_gives_the_router() {
        let start = docker_two_networks();
        let p = plan_for(&start, Attach::All, None).unwrap();
        let mut now = taken_over(&start, &p);
        // docker network disconnect of eth0's network: eth0 goes, and its tap and door with
        // it; Docker adds the default route through eth1's network's gateway, on the link
        // its route to that gateway leaves by: eth1's door.
        let eth0 = start.link("eth0").unwrap().index;
        let gone = [eth0, 100 + 2 * eth0, 101 + 2 * eth0];
        now.links.retain(|l| !gone.contains(&l.index));
        now.addrs.retain(|a| !gone.contains(&a.index));
        let door1 = now.link("vmlink1").unwrap().index;
        let without = changes(&now, Attach::All, &p.nics);
        assert_eq!(without.router, None, "no default route: nobody gives it");
        now.routes.push(crate::net::netstate::RouteEntry {
            index: door1,
            route: KernelRoute::main(route("0.0.0.0/0", Some("172.20.0.1"))),
        });
        let c = changes(&now, Attach::All, &p.nics);
        assert_eq!(c.gone, ["eth0"]);
        assert_eq!(c.router, Some(("eth1".to_string(), ip("172.20.0.1"))));
        let eth1 = p.nics[1].with_router(ip("172.20.0.1"));
        assert_eq!(eth1.gateway, Some(ip("172.20.0.1")));
        assert_eq!(
            eth1.guest_routes.iter().filter(|r| r.is_default()).count(),
            1,
            "{:?}",
            eth1.guest_routes
        );
        assert!(
            p.nics[1]
                .guest_routes
                .iter()
                .all(|r| eth1.guest_routes.contains(r)),
            "its other routes are kept"
        );
        // While the NIC that gives the guest its router stays, nothing moves.
        let mut both = taken_over(&start, &p);
        both.routes
            .extend(now.routes.iter().filter(|r| r.index == door1).cloned());
        assert_eq!(changes(&both, Attach::All, &p.nics).router, None);
    }

    #[test]
    fn a_joining_nic_is_taken_over_only_once_it_is_up() {
        let start = one_nic();
        let p = plan_for(&start, Attach::All, None).unwrap();
        let mut now = taken_over(&start, &p);
        let mut more = Ns::new().nic(9, "eth1", MAC1, &["10.9.0.2/24"], &[]).0;
        more.links.iter_mut().for_each(|l| l.up = false);
        connect(&mut now, more);
        let c = changes(&now, Attach::All, &p.nics);
        assert_eq!(
            c.waiting,
            ["eth1"],
            "its addresses are there, but it is down"
        );
        assert!(c.added.is_empty());
        now.links.iter_mut().for_each(|l| l.up = true);
        let c = changes(&now, Attach::All, &p.nics);
        assert!(c.waiting.is_empty());
        assert_eq!(c.added[0].0.lower, "eth1");
    }

    #[test]
    fn a_nic_without_ipv4_waits_and_attach_ifaces_still_decides() {
        let start = one_nic();
        let p = plan_for(&start, Attach::All, None).unwrap();
        let mut now = taken_over(&start, &p);
        let more = Ns::new()
            .nic(9, "eth1", MAC1, &[], &[])
            .nic(11, "eth2", Mac([2, 0, 0, 0, 0, 2]), &["10.9.0.2/24"], &[])
            .0;
        connect(&mut now, more);
        let c = changes(&now, Attach::All, &p.nics);
        assert_eq!(c.waiting, ["eth1"]);
        assert_eq!(c.added.len(), 1);
        assert_eq!(c.added[0].0.lower, "eth2");
        let only = changes(
            &now,
            Attach::Only(vec!["eth0".into(), "eth1".into()]),
            &p.nics,
        );
        assert!(only.added.is_empty(), "eth2 is not in ATTACH_IFACES");
        assert_eq!(only.waiting, ["eth1"]);
    }

    #[test]
    fn an_ipv6_only_nic_connected_while_the_guest_runs_is_added_and_one_without_an_address_waits() {
        let start = one_nic();
        let p = plan_for(&start, Attach::All, None).unwrap();
        let mut now = taken_over(&start, &p);
        let more = Ns::new()
            .nic(9, "eth1", MAC1, &[], &[])
            .addr6(9, "fd00:2::5/64")
            .route6(9, "::/0", Some("fd00:2::1"))
            .nic(11, "eth2", Mac([2, 0, 0, 0, 0, 2]), &[], &[])
            .0;
        connect(&mut now, more);
        let c = changes(&now, Attach::All, &p.nics);
        assert_eq!(c.waiting, ["eth2"]);
        assert_eq!(c.added.len(), 1);
        let (nic, _) = &c.added[0];
        assert_eq!(
            (nic.lower.as_str(), nic.addr, nic.gateway),
            ("eth1", None, None)
        );
        assert_ne!(nic.door_addr, p.nics[0].door_addr);
        assert_eq!(c.v6.len(), 1);
        assert!(
            !c.v6[0].gateways.iter().any(|g| g.default),
            "a NIC that joins later never gives the guest its IPv6 default route"
        );
    }

    #[test]
    fn a_nic_that_left_is_gone_and_a_new_one_of_the_same_name_is_new() {
        let start = docker_two_networks();
        let p = plan_for(&start, Attach::All, None).unwrap();
        let mut now = taken_over(&start, &p);
        // docker network disconnect: eth1 goes, and the kernel deletes what was stacked on it.
        now.links
            .retain(|l| !["eth1", "vmtap1", "vmlink1"].contains(&l.name.as_str()));
        let c = changes(&now, Attach::All, &p.nics);
        assert_eq!(c.gone, ["eth1"]);
        assert!(c.added.is_empty());
        // ...and connected again at once, under the same name.
        let again = Ns::new().nic(30, "eth1", MAC1, &["172.20.0.5/16"], &[]).0;
        now.links.extend(again.links.into_iter().skip(1));
        now.addrs.extend(again.addrs);
        let c = changes(&now, Attach::All, &p.nics);
        assert_eq!(c.gone, ["eth1"]);
        assert_eq!(c.added.len(), 1);
        assert_eq!(c.added[0].0.tap, "vmtap1", "the freed slot is used again");
    }

    #[test]
    fn two_nics_connected_at_once_get_different_slots_and_doors() {
        let start = one_nic();
        let p = plan_for(&start, Attach::All, None).unwrap();
        let mut now = taken_over(&start, &p);
        let more = Ns::new()
            .nic(9, "eth1", MAC1, &["10.8.0.5/24"], &[])
            .nic(11, "eth2", Mac([2, 0, 0, 0, 0, 2]), &["10.9.0.5/24"], &[])
            .0;
        connect(&mut now, more);
        let c = changes(&now, Attach::All, &p.nics);
        let slots: Vec<&str> = c.added.iter().map(|(n, _)| n.tap.as_str()).collect();
        assert_eq!(slots, ["vmtap1", "vmtap2"]);
        assert_ne!(c.added[0].0.door_addr, c.added[1].0.door_addr);
        let doors: Vec<Ipv4Addr> = c.added.iter().map(|(n, _)| n.door_addr).collect();
        assert!(!doors.contains(&p.nics[0].door_addr));
    }
}
