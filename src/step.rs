//! One change to the network namespace, as data (pure).
//!
//! A plan is a list of steps; `apply` carries them out over netlink and undoes them with
//! `Step::inverse`. Steps that remove something carry all of it, so that their inverse
//! puts it back exactly. `Display` prints the `ip` command each step equals, which is also
//! what vminit logs.

use std::fmt;

use crate::netstate::{IfAddr, KernelRoute, Neigh, RT_TABLE_MAIN, RTPROT_BOOT};
use crate::types::Mac;

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
            // Deleting a link cannot be undone; only recovery deletes links. An alias and
            // the offload setting go with the link.
            Step::DelLink { .. } | Step::SetAlias { .. } | Step::TxChecksumOff { .. } => {
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
