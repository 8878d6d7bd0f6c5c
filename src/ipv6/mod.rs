//! What vminit tells the guest about IPv6 itself (dnsmasq does IPv4 only): router
//! advertisements and DHCPv6 for one client per door, and the gateway facts they carry.
//!
//! Pure: `ndp` (neighbour-discovery frames as bytes), `dhcp6` (a one-client DHCPv6 server),
//! `announce` (what each door tells the guest, by whom and when).
//! Touch the system: `packet` (raw frames on one interface), `announcer` (the doors' sockets),
//! `gateway6` (each IPv6 gateway's MAC, learned on the container NIC while QEMU starts).
//!
//! Imports `net`, `takeover` and `vm` (the seed's NIC descriptions).

pub mod announce;
pub mod announcer;
pub mod dhcp6;
pub mod gateway6;
pub mod ndp;
pub mod packet;
pub mod relay;
