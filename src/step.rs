//! One change to the network namespace, as data (pure).
//!
//! A plan is a list of steps; `apply` carries them out over netlink and undoes them with
//! `Step::inverse`. `Display` prints the `ip` command each step equals, which is also what
//! vminit logs.

use std::fmt;
use std::net::Ipv4Addr;

use crate::types::{Ipv4Net, Mac, Route};

/// The two kinds of MAC-based virtual links vminit creates, both in bridge mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacLinkKind {
    /// A macvtap: the guest's NIC, read and written through /dev/tapN.
    Macvtap,
    /// A macvlan: the container's own door to the guest on the same lower device.
    Macvlan,
}

/// One change to the network namespace. `Display` prints the equivalent `ip` command.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    DelRoute {
        dev: String,
        route: Route,
    },
    /// `onlink` tells the kernel not to check that the gateway is on a connected subnet
    /// (the container's side of a NIC no longer has the subnet's address).
    AddRoute {
        dev: String,
        route: Route,
        src: Option<Ipv4Addr>,
        onlink: bool,
    },
    /// `broadcast`: the address has (or gets back) its subnet's broadcast address.
    DelAddr {
        dev: String,
        addr: Ipv4Net,
        broadcast: bool,
    },
    AddAddr {
        dev: String,
        addr: Ipv4Net,
        broadcast: bool,
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
            Step::DelRoute { dev, route } => Step::AddRoute {
                dev,
                route,
                src: None,
                onlink: false,
            },
            Step::AddRoute { dev, route, .. } => Step::DelRoute { dev, route },
            Step::DelAddr {
                dev,
                addr,
                broadcast,
            } => Step::AddAddr {
                dev,
                addr,
                broadcast,
            },
            Step::AddAddr {
                dev,
                addr,
                broadcast,
            } => Step::DelAddr {
                dev,
                addr,
                broadcast,
            },
            Step::SetMac { dev, mac, old } => Step::SetMac {
                dev,
                mac: old,
                old: mac,
            },
            Step::AddLink { name, .. } => Step::DelLink { name },
            // Deleting a link cannot be undone; only recovery deletes links.
            Step::DelLink { .. } | Step::SetAlias { .. } | Step::TxChecksumOff { .. } => {
                return None;
            }
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::DelRoute { dev, route } => write!(f, "ip route del {route} dev {dev}"),
            Step::AddRoute {
                dev,
                route,
                src,
                onlink,
            } => {
                write!(f, "ip route add {route} dev {dev}")?;
                if *onlink {
                    write!(f, " onlink")?;
                }
                match src {
                    Some(s) => write!(f, " src {s}"),
                    None => Ok(()),
                }
            }
            Step::DelAddr { dev, addr, .. } => write!(f, "ip addr del {addr} dev {dev}"),
            Step::AddAddr {
                dev,
                addr,
                broadcast,
            } => {
                let brd = if *broadcast { " brd +" } else { "" };
                write!(f, "ip addr add {addr}{brd} dev {dev}")
            }
            Step::SetMac { dev, mac, .. } => write!(f, "ip link set {dev} address {mac}"),
            Step::AddLink {
                kind,
                name,
                lower,
                mac,
                mtu,
            } => {
                let kind = match kind {
                    MacLinkKind::Macvtap => "macvtap",
                    MacLinkKind::Macvlan => "macvlan",
                };
                write!(f, "ip link add link {lower} name {name}")?;
                if let Some(mac) = mac {
                    write!(f, " address {mac}")?;
                }
                write!(f, " mtu {mtu} up type {kind} mode bridge")
            }
            Step::DelLink { name } => write!(f, "ip link del {name}"),
            Step::SetAlias { dev, alias } => write!(f, "ip link set {dev} alias '{alias}'"),
            Step::TxChecksumOff { dev } => write!(f, "ethtool -K {dev} tx off"),
        }
    }
}
