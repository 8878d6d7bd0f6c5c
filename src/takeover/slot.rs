//! A guest NIC's place, and every name that belongs to it (pure).
//!
//! The Nth guest NIC owns its links (`vmtapN`, `vmlinkN`, the record carriers `vmrecN.K`),
//! its QEMU objects (netdev `netN`, device `nicN`, the hot-plugged descriptors `tapN.Q`) and
//! its dnsmasq tag (`vmN`). They are all made here, from the number, and never read back
//! out of a name: what a name's slot is, the one who made it knows.

use std::fmt;

/// The place of one guest NIC: 0 for the first NIC at start; a NIC connected while the guest
/// runs takes the lowest free one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub usize);

impl Slot {
    /// The link that carries the guest's traffic (a macvtap; a tap with the tap datapath).
    pub fn tap(self) -> String {
        format!("vmtap{}", self.0)
    }

    /// The container's door to the guest, which also holds the record's first part.
    pub fn door(self) -> String {
        format!("vmlink{}", self.0)
    }

    /// The down link that carries part `k` (2, 3, …) of a long identity record.
    pub fn record(self, k: usize) -> String {
        format!("vmrec{}.{k}", self.0)
    }

    /// Whether `name` is one of the links this slot makes: its tap, door or a record carrier.
    pub fn owns_link(self, name: &str) -> bool {
        name == self.tap()
            || name == self.door()
            || name
                .strip_prefix(&format!("vmrec{}.", self.0))
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
    }

    /// QEMU's network backend (`-netdev tap,id=…`).
    pub fn netdev(self) -> String {
        format!("net{}", self.0)
    }

    /// QEMU's guest NIC (`-device virtio-net-pci,id=…`).
    pub fn device(self) -> String {
        format!("nic{}", self.0)
    }

    /// The PCIe root port this NIC sits on under the `q35` machine (`-device
    /// pcie-root-port,id=…`), whose root bus hot-plugs nothing: one per slot.
    pub fn root_port(self) -> String {
        format!("port{}", self.0)
    }

    /// The name QMP `getfd` gives the descriptor of queue `queue` (0, 1, …) of a
    /// hot-plugged NIC's tap.
    pub fn fd_name(self, queue: usize) -> String {
        format!("tap{}.{queue}", self.0)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_makes_every_name_of_its_nic() {
        let s = Slot(3);
        assert_eq!(
            [
                s.tap(),
                s.door(),
                s.record(2),
                s.netdev(),
                s.device(),
                s.fd_name(1),
            ],
            ["vmtap3", "vmlink3", "vmrec3.2", "net3", "nic3", "tap3.1"]
        );
    }

    #[test]
    fn a_slot_owns_only_its_own_links() {
        let s = Slot(1);
        for name in ["vmtap1", "vmlink1", "vmrec1.2", "vmrec1.10"] {
            assert!(s.owns_link(name), "{name}");
        }
        for name in [
            "vmtap10",
            "vmlink11",
            "vmrec10.2",
            "vmrec1.",
            "vmrec1.x",
            "eth1",
            "vmtap",
        ] {
            assert!(!s.owns_link(name), "{name}");
        }
    }
}
