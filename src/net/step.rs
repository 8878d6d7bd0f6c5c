//! One change to the network namespace, as data (pure).
//!
//! A plan is a list of steps; `apply` carries them out over netlink and undoes them with
//! `Step::inverse`. Steps that remove something carry all of it, so that their inverse
//! puts it back exactly. `Display` prints the `ip` command each step equals, which is also
//! what vminit logs.

use std::fmt;

use crate::net::netstate::{
    IfAddr, IfAddr6, KernelRoute, KernelRoute6, Neigh, Neigh6, RT_TABLE_MAIN, RTPROT_BOOT,
};
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
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    DelRoute {
        dev: String,
        route: KernelRoute,
    },
    AddRoute {
        dev: String,
        route: KernelRoute,
    },
    DelAddr {
        dev: String,
        addr: IfAddr,
    },
    AddAddr {
        dev: String,
        addr: IfAddr,
    },
    /// Forgets a permanent neighbour entry (a MAC change would flush it anyway).
    DelNeigh {
        dev: String,
        neigh: Neigh,
    },
    AddNeigh {
        dev: String,
        neigh: Neigh,
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
    /// (Boxed: an IPv6 route is the largest thing a step carries.)
    DelRoute6 {
        dev: String,
        route: Box<KernelRoute6>,
    },
    AddRoute6 {
        dev: String,
        route: Box<KernelRoute6>,
    },
    DelAddr6 {
        dev: String,
        addr: IfAddr6,
    },
    AddAddr6 {
        dev: String,
        addr: IfAddr6,
    },
    DelNeigh6 {
        dev: String,
        neigh: Neigh6,
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
    AddNeigh6 {
        dev: String,
        neigh: Neigh6,
    },
}

impl Step {
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
            Step::AddLink { name, .. } => Step::DelLink { name },
            Step::DelRoute6 { dev, route } => Step::AddRoute6 { dev, route },
            Step::AddRoute6 { dev, route } => Step::DelRoute6 { dev, route },
            Step::DelAddr6 { dev, addr } => Step::AddAddr6 { dev, addr },
            Step::AddAddr6 { dev, addr } => Step::DelAddr6 { dev, addr },
            Step::DelNeigh6 { dev, neigh } => Step::AddNeigh6 { dev, neigh },
            Step::AddNeigh6 { dev, neigh } => Step::DelNeigh6 { dev, neigh },
            // Deleting a link cannot be undone; only recovery deletes links. An alias and
            // the offload setting go with the link.
            Step::DelLink { .. }
            | Step::SetAlias { .. }
            | Step::TxChecksumOff { .. }
            | Step::NoAddrGen { .. }
            | Step::SetUpAllMulticast { .. } => {
                return None;
            }
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::DelRoute { dev, route } => {
                write!(f, "ip route del {}", route.route)?;
                write_table(f, route)?;
                write!(f, " dev {dev}")
            }
            Step::AddRoute { dev, route } => {
                write!(f, "ip route add {}", route.route)?;
                write_table(f, route)?;
                write!(f, " dev {dev}")?;
                if route.onlink {
                    write!(f, " onlink")?;
                }
                if let Some(src) = route.src {
                    write!(f, " src {src}")?;
                }
                if route.protocol != RTPROT_BOOT {
                    write!(f, " proto {}", route.protocol)?;
                }
                for (metric, value) in &route.metrics {
                    write!(f, " metric-{metric} {value}")?;
                }
                Ok(())
            }
            Step::DelAddr { dev, addr } => write!(f, "ip addr del {} dev {dev}", addr.net),
            Step::AddAddr { dev, addr } => {
                write!(f, "ip addr add {}", addr.net)?;
                if let Some(brd) = addr.broadcast {
                    write!(f, " brd {brd}")?;
                }
                write!(f, " dev {dev}")?;
                if let Some(label) = &addr.label {
                    write!(f, " label {label}")?;
                }
                if let Some((valid, preferred)) = addr.lifetime {
                    write!(f, " valid_lft {valid} preferred_lft {preferred}")?;
                }
                Ok(())
            }
            Step::DelNeigh { dev, neigh } => write!(f, "ip neigh del {} dev {dev}", neigh.addr),
            Step::AddNeigh { dev, neigh } => write!(
                f,
                "ip neigh add {} lladdr {} nud permanent dev {dev}",
                neigh.addr, neigh.mac
            ),
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
            Step::DelRoute6 { dev, route } => {
                write!(f, "ip -6 route del {}", route.route)?;
                if route.table != RT_TABLE_MAIN {
                    write!(f, " table {}", route.table)?;
                }
                write!(f, " dev {dev}")
            }
            Step::AddRoute6 { dev, route } => {
                write!(f, "ip -6 route add {}", route.route)?;
                if route.table != RT_TABLE_MAIN {
                    write!(f, " table {}", route.table)?;
                }
                write!(f, " dev {dev}")?;
                if route.onlink {
                    write!(f, " onlink")?;
                }
                if let Some(src) = route.src {
                    write!(f, " src {src}")?;
                }
                if route.protocol != RTPROT_BOOT {
                    write!(f, " proto {}", route.protocol)?;
                }
                match route.pref {
                    1 => write!(f, " pref high")?,
                    3 => write!(f, " pref low")?,
                    _ => {}
                }
                for (metric, value) in &route.metrics {
                    write!(f, " metric-{metric} {value}")?;
                }
                Ok(())
            }
            Step::DelAddr6 { dev, addr } => write!(f, "ip -6 addr del {} dev {dev}", addr.net),
            Step::AddAddr6 { dev, addr } => {
                write!(f, "ip -6 addr add {} dev {dev}", addr.net)?;
                if addr.flags & 0x02 != 0 {
                    write!(f, " nodad")?;
                }
                if addr.flags & 0x200 != 0 {
                    write!(f, " noprefixroute")?;
                }
                if let Some(metric) = addr.metric {
                    write!(f, " metric {metric}")?;
                }
                if let Some(proto) = addr.protocol {
                    write!(f, " proto {proto}")?;
                }
                if let Some((valid, preferred)) = addr.lifetime {
                    write!(f, " valid_lft {valid} preferred_lft {preferred}")?;
                }
                Ok(())
            }
            Step::NoAddrGen { dev } => write!(f, "ip link set {dev} addrgenmode none"),
            Step::SetUpAllMulticast { dev } => {
                write!(f, "ip link set {dev} allmulticast on up")
            }
            Step::DelNeigh6 { dev, neigh } => {
                write!(f, "ip -6 neigh del {} dev {dev}", neigh.addr)
            }
            Step::AddNeigh6 { dev, neigh } => {
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
        }
    }
}

fn write_table(f: &mut fmt::Formatter<'_>, route: &KernelRoute) -> fmt::Result {
    if route.table != RT_TABLE_MAIN {
        write!(f, " table {}", route.table)?;
    }
    if route.tos != 0 {
        write!(f, " tos {}", route.tos)?;
    }
    Ok(())
}
