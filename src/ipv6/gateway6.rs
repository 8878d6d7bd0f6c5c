//! Finds each IPv6 gateway's MAC and link-local address on its container NIC: what a router
//! advertisement that speaks for the gateway must carry. At boot this runs while QEMU starts,
//! after the takeover (the guest cannot use it before it has booted), so it speaks as the
//! container NIC is then, with raw frames on it: its MAC now (a random one the takeover gave
//! it) and the link-local address derived from that MAC, which nobody else holds.
//!
//! A neighbour solicitation for the gateway, from that address and with that MAC (never from
//! the unspecified address: a gateway whose address is still tentative would take that for
//! another node's duplicate address detection and give its address up), is answered by the
//! gateway's advertisement from its MAC. A gateway the container names by a link-local
//! address (Calico's `fe80::ecee:eeff:feee:eeee`) is then known. For a global gateway
//! (Docker's `fd00:1::1`), an echo request to all nodes, in a frame sent to the gateway's MAC
//! only, is answered by the gateway alone, from its link-local address (or its neighbour
//! solicitation for our address comes from there). Failing that, the address the kernel
//! derives from the MAC (EUI-64) is tried. Each is asked again every 250 ms: a gateway whose
//! address is tentative ignores solicitations until its duplicate address detection is over.
//! What does not answer within the time given is reported, and not announced.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, Result};
use crate::ipv6::announce::Learned;
use crate::ipv6::ndp;
use crate::ipv6::packet::PacketSocket;
use crate::net::netstate::NetState;
use crate::net::types::{Mac, is_link_local6};
use crate::takeover::plan6::Guest6;

/// How long all gateways together may take to answer. A Docker network's bridge gets its
/// addresses when its first container is attached, and answers only once its duplicate
/// address detection is over, about a second later.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// What the echo probe leaves of the time for the derived address.
const ECHO_RESERVE: Duration = Duration::from_millis(500);
/// How often a question is asked again (the gateway's addresses may still be tentative).
const AGAIN: Duration = Duration::from_millis(250);
/// How long one wait for frames lasts at most: `stop` is asked between waits.
const POLL: Duration = Duration::from_millis(20);

/// The gateways of `guests` that answered, with their link-local addresses and MACs, found
/// on each guest's container NIC as `state` (read just before) shows it. One that did not
/// answer is named in a warning; the guest gets no route through it. `stop` is asked between
/// waits: when it says so, the gateways found so far are returned at once.
pub fn learn(state: &NetState, guests: &[Guest6], stop: &dyn Fn() -> bool) -> Result<Vec<Learned>> {
    let deadline = Instant::now() + TIMEOUT;
    let mut learned = Vec::new();
    for guest in guests {
        let Some((link, own_mac)) = state
            .link(&guest.lower)
            .and_then(|l| l.mac.map(|mac| (l, mac)))
        else {
            continue;
        };
        if guest.gateways.is_empty() {
            continue;
        }
        let asker = Asker::open(link.index, own_mac)?;
        for g in &guest.gateways {
            log::info!(
                "{}: asking the IPv6 gateway {} for its link-local address and MAC (up to {TIMEOUT:?})",
                guest.lower,
                g.gateway
            );
            let start = Instant::now();
            match asker.find(g.gateway, deadline, stop)? {
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
                None if stop() => return Ok(learned),
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

/// Raw frames on one container NIC, sent from its MAC and the link-local address derived
/// from it.
struct Asker {
    socket: PacketSocket,
    mac: Mac,
    addr: Ipv6Addr,
}

impl Asker {
    fn open(index: u32, mac: Mac) -> Result<Asker> {
        let socket = PacketSocket::open(index).map_err(raw_socket_error)?;
        let addr = mac.link_local();
        // A gateway that does not know our MAC asks for it there (a macvlan or a physical
        // NIC passes a group's frames only when someone joined it).
        socket
            .join(ndp::multicast_mac(ndp::solicited_node(addr)))
            .map_err(raw_socket_error)?;
        Ok(Asker { socket, mac, addr })
    }

    /// The link-local address and MAC of `gateway`, `None` if it did not answer in time.
    fn find(
        &self,
        gateway: Ipv6Addr,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<(Ipv6Addr, Mac)>> {
        let start = Instant::now();
        let Some(mac) = self.resolve(gateway, deadline, stop)? else {
            return Ok(None);
        };
        log::debug!("{gateway} is at {mac} ({} ms)", start.elapsed().as_millis());
        if is_link_local6(gateway) {
            return Ok(Some((gateway, mac)));
        }
        // The echo gets most of the time; what is left goes to the derived address.
        let echo_deadline = deadline.checked_sub(ECHO_RESERVE).unwrap_or(deadline);
        let id = (std::process::id() as u16) ^ 0x7636;
        let probe = ndp::echo_probe(self.mac, mac, self.addr, id);
        let addr = self.addr;
        if let Some(ll) = self.ask(&probe, echo_deadline, stop, &|frame| {
            ndp::echo_answer(frame, mac, addr, id)
        })? {
            return Ok(Some((ll, mac)));
        }
        let derived = mac.link_local();
        Ok((self.resolve(derived, deadline, stop)? == Some(mac)).then_some((derived, mac)))
    }

    /// The MAC that answers a neighbour solicitation for `target`.
    fn resolve(
        &self,
        target: Ipv6Addr,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Mac>> {
        let group = ndp::multicast_mac(ndp::solicited_node(target));
        let probe = ndp::solicitation(self.mac, group, self.addr, target);
        self.ask(&probe, deadline, stop, &|frame| {
            ndp::advertiser_of(frame, target)
        })
    }

    /// Sends `probe` every `AGAIN` until a frame that arrives gives `answer`, the deadline
    /// passes or `stop` says so.
    fn ask<T>(
        &self,
        probe: &[u8],
        deadline: Instant,
        stop: &dyn Fn() -> bool,
        answer: &dyn Fn(&[u8]) -> Option<T>,
    ) -> Result<Option<T>> {
        let mut buf = vec![0u8; 2048];
        let mut sent: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if sent.is_none_or(|t| now >= t + AGAIN) {
                self.socket.send(probe).map_err(|e| {
                    Error::os("send a neighbour discovery probe to the IPv6 gateway", e)
                })?;
                sent = Some(now);
            }
            while let Some(n) = self
                .socket
                .recv(&mut buf)
                .map_err(|e| Error::os("read the IPv6 gateway's answer", e))?
            {
                if let Some(found) = answer(&buf[..n]) {
                    return Ok(Some(found));
                }
            }
            if now >= deadline || stop() {
                return Ok(None);
            }
            let wait = POLL.min(deadline - now);
            let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            // At most `POLL` (20 ms), so it fits; at least 1 ms, so this is no busy loop.
            let timeout = PollTimeout::from(wait.as_millis().clamp(1, 20) as u16);
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(Error::os(
                        "wait for the IPv6 gateway's answer",
                        io::Error::from(e),
                    ));
                }
            }
        }
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
