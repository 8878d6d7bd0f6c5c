//! Finds each IPv6 gateway's MAC and link-local address from the container, before the
//! takeover: what a router advertisement that speaks for the gateway must carry.
//!
//! The MAC comes from the kernel's own neighbour discovery (a UDP datagram to the gateway's
//! discard port makes the kernel ask; the answer lands in the neighbour table). A gateway the
//! container names by a link-local address (Calico's `fe80::ecee:eeff:feee:eeee`) is then
//! known. For a global gateway (Docker's `fd00:1::1`), an echo request to all nodes, in a frame
//! sent to the gateway's MAC only, is answered by the gateway alone, from its link-local
//! address (or, while the container's own link-local address is still tentative, the gateway's
//! neighbour solicitation for it comes from there). Failing that, the address the kernel
//! derives from the MAC (EUI-64) is tried.
//! What does not answer within the time given is reported, and not announced.

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ipv6::announce::Learned;
use crate::ipv6::ndp;
use crate::ipv6::packet::PacketSocket;
use crate::net::discover6;
use crate::net::netlink::Netlink;
use crate::net::netstate::NetState;
use crate::net::types::{Mac, is_link_local6};
use crate::takeover::plan6::Guest6;

/// How long all gateways together may take to answer. A Docker network's bridge gets its
/// addresses when its first container is attached, and answers only once its duplicate
/// address detection is over, about a second later.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// What the echo probe leaves of the time for the derived address.
const ECHO_RESERVE: Duration = Duration::from_millis(500);
/// How often the echo probe is sent again (the gateway's addresses may still be tentative).
const ECHO_AGAIN: Duration = Duration::from_millis(250);
/// The discard port: what the datagram that starts neighbour discovery is sent to.
const DISCARD: u16 = 9;

/// The gateways of `guests` that answered, with their link-local addresses and MACs. One
/// that did not is named in a warning; the guest gets no route through it. `stop` is asked
/// between polls: its error (a stop signal that arrived) ends the wait at once.
pub fn learn(
    nl: &mut Netlink,
    state: &NetState,
    guests: &[Guest6],
    stop: &dyn Fn() -> Result<()>,
) -> Result<Vec<Learned>> {
    let deadline = Instant::now() + TIMEOUT;
    let mut learned = Vec::new();
    for guest in guests {
        let Some(link) = state.link(&guest.lower) else {
            continue;
        };
        let own_ll = state
            .addrs6
            .iter()
            .find(|a| a.index == link.index && a.addr.net.is_link_local())
            .map(|a| a.addr.net.addr);
        for g in &guest.gateways {
            log::info!(
                "{}: asking the IPv6 gateway {} for its link-local address and MAC (up to {TIMEOUT:?})",
                guest.lower,
                g.gateway
            );
            let start = Instant::now();
            match find(nl, link.index, guest.mac, own_ll, g.gateway, deadline, stop)? {
                Some((link_local, mac)) => {
                    log::info!(
                        "{}: IPv6 gateway {} is {link_local} at {mac} (found in {} ms)",
                        guest.lower,
                        g.gateway,
                        start.elapsed().as_millis()
                    );
                    learned.push(Learned {
                        lower: guest.lower.clone(),
                        gateway: g.gateway,
                        link_local,
                        mac,
                    });
                }
                None => log::warn!(
                    "{}: the IPv6 gateway {} did not answer neighbour discovery within {TIMEOUT:?}: the guest gets {}'s IPv6 address but no route through it",
                    guest.lower,
                    g.gateway,
                    guest.lower
                ),
            }
        }
    }
    Ok(learned)
}

/// The link-local address and MAC of `gateway`, seen from the interface `index` (whose MAC is
/// `own_mac` and link-local address `own_ll`).
fn find(
    nl: &mut Netlink,
    index: u32,
    own_mac: Mac,
    own_ll: Option<Ipv6Addr>,
    gateway: Ipv6Addr,
    deadline: Instant,
    stop: &dyn Fn() -> Result<()>,
) -> Result<Option<(Ipv6Addr, Mac)>> {
    let start = Instant::now();
    let Some(mac) = resolve(nl, index, gateway, deadline, stop)? else {
        return Ok(None);
    };
    log::debug!("{gateway} is at {mac} ({} ms)", start.elapsed().as_millis());
    if is_link_local6(gateway) {
        return Ok(Some((gateway, mac)));
    }
    // The echo gets most of the time; what is left goes to the derived address.
    let echo_deadline = deadline.checked_sub(ECHO_RESERVE).unwrap_or(deadline);
    if let Some(src) = own_ll
        && let Some(ll) = echo(index, own_mac, src, mac, echo_deadline, stop)?
    {
        return Ok(Some((ll, mac)));
    }
    let derived = mac.link_local();
    Ok((resolve(nl, index, derived, deadline, stop)? == Some(mac)).then_some((derived, mac)))
}

/// The MAC the kernel's neighbour discovery finds for `addr` on the interface `index`.
fn resolve(
    nl: &mut Netlink,
    index: u32,
    addr: Ipv6Addr,
    deadline: Instant,
    stop: &dyn Fn() -> Result<()>,
) -> Result<Option<Mac>> {
    let mut asked = false;
    loop {
        let known = nl
            .neighbours6()
            .map_err(|e| Error::os("read the IPv6 neighbour table", e))?
            .iter()
            .filter_map(discover6::neigh6_known)
            .find(|(i, a, _)| *i == index && *a == addr)
            .map(|(_, _, mac)| mac);
        if known.is_some() || Instant::now() >= deadline {
            return Ok(known);
        }
        if !asked {
            asked = true;
            // The kernel asks (a neighbour solicitation) before it sends the datagram.
            let scope = if is_link_local6(addr) { index } else { 0 };
            if let Err(e) = UdpSocket::bind("[::]:0")
                .and_then(|s| s.send_to(&[], SocketAddrV6::new(addr, DISCARD, 0, scope)))
            {
                log::debug!("neighbour discovery of {addr}: {e}");
            }
        }
        stop()?;
        sleep(Duration::from_millis(2));
    }
}

/// The link-local source of the echo reply of the node with `mac` (see `ndp::echo_probe`).
fn echo(
    index: u32,
    own_mac: Mac,
    own_ll: Ipv6Addr,
    mac: Mac,
    deadline: Instant,
    stop: &dyn Fn() -> Result<()>,
) -> Result<Option<Ipv6Addr>> {
    let socket = PacketSocket::open(index).map_err(raw_socket_error)?;
    if let Err(e) = socket.only_from(mac) {
        log::debug!("packet filter: {e}");
    }
    let id = (std::process::id() as u16) ^ 0x7636;
    let probe = ndp::echo_probe(own_mac, mac, own_ll, id);
    let mut buf = vec![0u8; 2048];
    let mut sent = Instant::now() - ECHO_AGAIN;
    loop {
        if sent.elapsed() >= ECHO_AGAIN {
            socket
                .send(&probe)
                .map_err(|e| Error::os("send an IPv6 echo request to the gateway", e))?;
            sent = Instant::now();
        }
        while let Some(n) = socket
            .recv(&mut buf)
            .map_err(|e| Error::os("read the gateway's echo reply", e))?
        {
            if let Some(ll) = ndp::echo_answer(&buf[..n], mac, own_ll, id) {
                return Ok(Some(ll));
            }
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        stop()?;
        sleep(Duration::from_millis(1));
    }
}

/// A packet socket that cannot be opened: without `CAP_NET_RAW` the IPv6 identity cannot be
/// announced.
pub fn raw_socket_error(e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => Error::Unavailable {
            what: format!("cannot open a packet socket for the guest's IPv6 announcements ({e})"),
            hint: "hint: keep Docker's default NET_RAW capability (do not --cap-drop NET_RAW), or give the container --cap-add NET_RAW".into(),
        },
        _ => Error::os("open a packet socket for the guest's IPv6 announcements", e),
    }
}
