//! IPv4 DHCP and DNS for the guest: the container's resolvers, what the guest is told about
//! names, dnsmasq's configuration and dnsmasq as a supervised process.
//!
//! Pure: `resolv` (resolv.conf text), `dns` (the guest's resolvers and which NIC announces
//! what), `dnsmasq` (dnsmasq.conf from the plan).
//! Touches the system: `dhcp_server` (dnsmasq started, waited for, restarted, stopped).
//!
//! Imports `net`, `pid1`, `takeover` and `vm`.

pub mod dhcp_server;
pub mod dns;
pub mod dnsmasq;
pub mod resolv;
