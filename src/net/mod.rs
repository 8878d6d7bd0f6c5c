//! The container's network namespace: its state as data, the changes vminit makes to it as
//! data, and the kernel interfaces that read and change it.
//!
//! Pure: `types` (MACs, networks, routes), `arp` (the health check's ARP probe and its reply), `netstate` (the namespace as data), `step` (one
//! change and its inverse), `discover6` (IPv6 netlink answers -> state), `netlink::message`
//! and `netlink::message6` (the rtnetlink requests, each with its `ip` command), `tc` (a tc
//! ingress filter as data) and `netlink::tc` (its requests).
//! Touch the system: `netlink` (the blocking rtnetlink client and the `Rtnetlink` seam),
//! `discover` (netlink dumps -> `NetState`), `apply` (steps -> netlink, with rollback),
//! `monitor` (the kernel's change notifications), `ethtool` (`ethtool -K DEV tx off`), `tun`
//! (the tap datapath's taps on /dev/net/tun).
//!
//! The bottom folder: it imports no other folder.

pub mod apply;
pub mod arp;
pub mod discover;
pub mod discover6;
pub mod ethtool;
pub mod monitor;
pub mod netlink;
pub mod netstate;
pub mod step;
pub mod tc;
pub mod tun;
pub mod types;
