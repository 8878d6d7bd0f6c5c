//! One change to the network namespace, as data (pure).
//!
//! A plan is a list of steps; `apply` carries them out over netlink and undoes them with
//! `Step::inverse`. Steps that remove something carry all of it, so that their inverse
//! puts it back exactly. `Display` prints the `ip` command each step equals, which is also
//! what vminit logs.

use std::fmt;

use crate::net::netstate::{
    ICMPV6_ROUTER_PREF_HIGH, ICMPV6_ROUTER_PREF_LOW, IFA_F_NODAD, IFA_F_NOPREFIXROUTE, IpIfAddr,
    IpNeigh, IpRoute, RT_TABLE_MAIN, RTPROT_BOOT,
};
use crate::net::tc::Filter;
use crate::net::types::Mac;

/// The two kinds of MAC-based virtual links vminit creates, both in bridge mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacLinkKind {
    /// A macvtap: the guest's NIC, read and written through /dev/tapN.
    Macvtap,
    /// A macvlan: the container's own door to the guest on the same lower device (and,
    /// down, a carrier of the identity record).
    Macvlan,
}

/// One change to the network namespace. `Display` prints the equivalent `ip` command.
///
/// Addresses, routes and neighbours are one step each for both families: what a step does
/// with them is the same (add it, or delete it, on one link); the family decides only the
/// request and the command's words.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    DelRoute {
        dev: String,
        route: IpRoute,
    },
    AddRoute {
        dev: String,
        route: IpRoute,
    },
    DelAddr {
        dev: String,
        addr: IpIfAddr,
    },
    AddAddr {
        dev: String,
        addr: IpIfAddr,
    },
    /// Forgets a permanent neighbour entry (a MAC change would flush it anyway).
    DelNeigh {
        dev: String,
        neigh: IpNeigh,
    },
    AddNeigh {
        dev: String,
        neigh: IpNeigh,
    },
    SetMac {
        dev: String,
        mac: Mac,
        old: Mac,
    },
    AddLink {
        kind: MacLinkKind,
        name: String,
        lower: String,
        mac: Option<Mac>,
        mtu: u32,
        /// Created up (a door, a guest NIC) or down (a record carrier).
        up: bool,
    },
    DelLink {
        name: String,
    },
    SetAlias {
        dev: String,
        alias: String,
    },
    /// TX checksum offload off on dnsmasq's side (old DHCP clients drop partial checksums).
    TxChecksumOff {
        dev: String,
    },
    /// No IPv6 addresses of its own for a link (the guest's macvtap would otherwise give
    /// itself the guest's link-local address): set while the link is down.
    NoAddrGen {
        dev: String,
    },
    /// Up, passing every multicast frame of the network on: the guest's own multicast
    /// groups (the solicited-node groups IPv6 neighbour discovery asks in) are not known to
    /// the container's side of a macvtap, whose filter would drop them.
    SetUpAllMulticast {
        dev: String,
    },
    /// Down (the undo of `SetUpAllMulticast`): the guest's macvtap goes down before its
    /// NIC gets its MAC back, which a sibling macvlan NIC refuses while an up macvtap holds it.
    SetDown {
        dev: String,
    },
    /// The guest's tap (the tap datapath): a tap device on `/dev/net/tun`, held open for
    /// QEMU, given `mac` and `mtu` and brought up.
    AddTap {
        name: String,
        mac: Mac,
        mtu: u32,
    },
    /// `arp_ignore` of a link: 1 answers ARP requests only for the link's own addresses.
    /// `old` is what the link had, put back by the inverse; `None` for a link of vminit's
    /// own, whose setting goes with it.
    SetArpIgnore {
        dev: String,
        value: u32,
        old: Option<u32>,
    },
    /// An ingress qdisc, where a link's tc filters hang.
    AddIngress {
        dev: String,
    },
    /// Deletes a link's ingress qdisc, and its filters with it.
    DelIngress {
        dev: String,
    },
    /// A tc filter on a link's ingress qdisc (it goes with the qdisc).
    AddFilter {
        dev: String,
        filter: Filter,
    },
}

impl Step {
    /// `ip [-6] addr add ADDR dev DEV`
    pub fn add_addr(dev: impl Into<String>, addr: impl Into<IpIfAddr>) -> Step {
        Step::AddAddr {
            dev: dev.into(),
            addr: addr.into(),
        }
    }

    /// `ip [-6] addr del ADDR dev DEV`
    pub fn del_addr(dev: impl Into<String>, addr: impl Into<IpIfAddr>) -> Step {
        Step::DelAddr {
            dev: dev.into(),
            addr: addr.into(),
        }
    }

    /// `ip [-6] route add ROUTE dev DEV`
    pub fn add_route(dev: impl Into<String>, route: impl Into<IpRoute>) -> Step {
        Step::AddRoute {
            dev: dev.into(),
            route: route.into(),
        }
    }

    /// `ip [-6] route del ROUTE dev DEV`
    pub fn del_route(dev: impl Into<String>, route: impl Into<IpRoute>) -> Step {
        Step::DelRoute {
            dev: dev.into(),
            route: route.into(),
        }
    }

    /// `ip [-6] neigh add ADDR lladdr MAC nud permanent dev DEV`
    pub fn add_neigh(dev: impl Into<String>, neigh: impl Into<IpNeigh>) -> Step {
        Step::AddNeigh {
            dev: dev.into(),
            neigh: neigh.into(),
        }
    }

    /// `ip [-6] neigh del ADDR dev DEV`
    pub fn del_neigh(dev: impl Into<String>, neigh: impl Into<IpNeigh>) -> Step {
        Step::DelNeigh {
            dev: dev.into(),
            neigh: neigh.into(),
        }
    }

    /// The step that undoes this one, for rollback. `None` when nothing needs undoing.
    pub fn inverse(&self) -> Option<Step> {
        Some(match self.clone() {
            Step::DelRoute { dev, route } => Step::AddRoute { dev, route },
            Step::AddRoute { dev, route } => Step::DelRoute { dev, route },
            Step::DelAddr { dev, addr } => Step::AddAddr { dev, addr },
            Step::AddAddr { dev, addr } => Step::DelAddr { dev, addr },
            Step::DelNeigh { dev, neigh } => Step::AddNeigh { dev, neigh },
            Step::AddNeigh { dev, neigh } => Step::DelNeigh { dev, neigh },
            Step::SetMac { dev, mac, old } => Step::SetMac {
                dev,
                mac: old,
                old: mac,
            },
            Step::AddLink { name, .. } | Step::AddTap { name, .. } => Step::DelLink { name },
            Step::AddIngress { dev } => Step::DelIngress { dev },
            Step::SetUpAllMulticast { dev } => Step::SetDown { dev },
            Step::SetArpIgnore {
                dev,
                value,
                old: Some(old),
            } => Step::SetArpIgnore {
                dev,
                value: old,
                old: Some(value),
            },
            // Deleting a link cannot be undone; only recovery deletes links. An alias and
            // the offload setting go with the link.
            Step::DelLink { .. }
            | Step::SetAlias { .. }
            | Step::TxChecksumOff { .. }
            | Step::NoAddrGen { .. }
            | Step::SetDown { .. }
            | Step::DelIngress { .. }
            | Step::SetArpIgnore { old: None, .. }
            | Step::AddFilter { .. } => {
                return None;
            }
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::DelRoute { dev, route } => match route {
                IpRoute::V4(route) => {
                    write!(f, "ip route del {}", route.route)?;
                    write_table(f, route.table, route.tos)?;
                    write!(f, " dev {dev}")
                }
                IpRoute::V6(route) => {
                    write!(f, "ip -6 route del {}", route.route)?;
                    write_table(f, route.table, 0)?;
                    write!(f, " dev {dev}")
                }
            },
            Step::AddRoute { dev, route } => match route {
                IpRoute::V4(route) => {
                    write!(f, "ip route add {}", route.route)?;
                    write_table(f, route.table, route.tos)?;
                    write!(f, " dev {dev}")?;
                    write_route_options(f, route.onlink, route.src, route.protocol)?;
                    write_metrics(f, &route.metrics)
                }
                IpRoute::V6(route) => {
                    write!(f, "ip -6 route add {}", route.route)?;
                    write_table(f, route.table, 0)?;
                    write!(f, " dev {dev}")?;
                    write_route_options(f, route.onlink, route.src, route.protocol)?;
                    match route.pref {
                        ICMPV6_ROUTER_PREF_HIGH => write!(f, " pref high")?,
                        ICMPV6_ROUTER_PREF_LOW => write!(f, " pref low")?,
                        _ => {}
                    }
                    write_metrics(f, &route.metrics)
                }
            },
            Step::DelAddr { dev, addr } => match addr {
                IpIfAddr::V4(addr) => write!(f, "ip addr del {} dev {dev}", addr.net),
                IpIfAddr::V6(addr) => write!(f, "ip -6 addr del {} dev {dev}", addr.net),
            },
            Step::AddAddr { dev, addr } => match addr {
                IpIfAddr::V4(addr) => {
                    write!(f, "ip addr add {}", addr.net)?;
                    if let Some(brd) = addr.broadcast {
                        write!(f, " brd {brd}")?;
                    }
                    write!(f, " dev {dev}")?;
                    if let Some(label) = &addr.label {
                        write!(f, " label {label}")?;
                    }
                    write_lifetime(f, addr.lifetime)
                }
                IpIfAddr::V6(addr) => {
                    write!(f, "ip -6 addr add {} dev {dev}", addr.net)?;
                    if addr.flags & IFA_F_NODAD != 0 {
                        write!(f, " nodad")?;
                    }
                    if addr.flags & IFA_F_NOPREFIXROUTE != 0 {
                        write!(f, " noprefixroute")?;
                    }
                    if let Some(metric) = addr.metric {
                        write!(f, " metric {metric}")?;
                    }
                    if let Some(proto) = addr.protocol {
                        write!(f, " proto {proto}")?;
                    }
                    write_lifetime(f, addr.lifetime)
                }
            },
            Step::DelNeigh { dev, neigh } => match neigh {
                IpNeigh::V4(neigh) => write!(f, "ip neigh del {} dev {dev}", neigh.addr),
                IpNeigh::V6(neigh) => write!(f, "ip -6 neigh del {} dev {dev}", neigh.addr),
            },
            Step::AddNeigh { dev, neigh } => match neigh {
                IpNeigh::V4(neigh) => write!(
                    f,
                    "ip neigh add {} lladdr {} nud permanent dev {dev}",
                    neigh.addr, neigh.mac
                ),
                IpNeigh::V6(neigh) => {
                    write!(
                        f,
                        "ip -6 neigh add {} lladdr {} nud permanent",
                        neigh.addr, neigh.mac
                    )?;
                    if neigh.router {
                        write!(f, " router")?;
                    }
                    write!(f, " dev {dev}")
                }
            },
            Step::SetMac { dev, mac, .. } => write!(f, "ip link set {dev} address {mac}"),
            Step::AddLink {
                kind,
                name,
                lower,
                mac,
                mtu,
                up,
            } => {
                let kind = match kind {
                    MacLinkKind::Macvtap => "macvtap",
                    MacLinkKind::Macvlan => "macvlan",
                };
                write!(f, "ip link add link {lower} name {name}")?;
                if let Some(mac) = mac {
                    write!(f, " address {mac}")?;
                }
                write!(f, " mtu {mtu}")?;
                if *up {
                    write!(f, " up")?;
                }
                write!(f, " type {kind} mode bridge")
            }
            Step::DelLink { name } => write!(f, "ip link del {name}"),
            Step::SetAlias { dev, alias } => write!(f, "ip link set {dev} alias '{alias}'"),
            Step::TxChecksumOff { dev } => write!(f, "ethtool -K {dev} tx off"),
            Step::NoAddrGen { dev } => write!(f, "ip link set {dev} addrgenmode none"),
            Step::SetUpAllMulticast { dev } => {
                write!(f, "ip link set {dev} allmulticast on up")
            }
            Step::SetDown { dev } => write!(f, "ip link set {dev} down"),
            Step::AddTap { name, mac, mtu } => write!(
                f,
                "ip tuntap add dev {name} mode tap vnet_hdr && ip link set {name} address {mac} mtu {mtu} up"
            ),
            Step::SetArpIgnore { dev, value, .. } => {
                write!(f, "sysctl -w net.ipv4.conf.{dev}.arp_ignore={value}")
            }
            Step::AddIngress { dev } => write!(f, "tc qdisc add dev {dev} ingress"),
            Step::DelIngress { dev } => write!(f, "tc qdisc del dev {dev} ingress"),
            Step::AddFilter { dev, filter } => write!(f, "tc filter add dev {dev} {filter}"),
        }
    }
}

/// ` table T` and ` tos X`, when not the defaults.
fn write_table(f: &mut fmt::Formatter<'_>, table: u32, tos: u8) -> fmt::Result {
    if table != RT_TABLE_MAIN {
        write!(f, " table {table}")?;
    }
    if tos != 0 {
        write!(f, " tos {tos}")?;
    }
    Ok(())
}

/// ` onlink`, ` src S` and ` proto P`, as `ip route add` takes them.
fn write_route_options(
    f: &mut fmt::Formatter<'_>,
    onlink: bool,
    src: Option<impl fmt::Display>,
    protocol: u8,
) -> fmt::Result {
    if onlink {
        write!(f, " onlink")?;
    }
    if let Some(src) = src {
        write!(f, " src {src}")?;
    }
    if protocol != RTPROT_BOOT {
        write!(f, " proto {protocol}")?;
    }
    Ok(())
}

fn write_metrics(f: &mut fmt::Formatter<'_>, metrics: &[(u16, u32)]) -> fmt::Result {
    for (metric, value) in metrics {
        write!(f, " metric-{metric} {value}")?;
    }
    Ok(())
}

fn write_lifetime(f: &mut fmt::Formatter<'_>, lifetime: Option<(u32, u32)>) -> fmt::Result {
    if let Some((valid, preferred)) = lifetime {
        write!(f, " valid_lft {valid} preferred_lft {preferred}")?;
    }
    Ok(())
}
