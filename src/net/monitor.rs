//! Tells the supervisor when the container's network changes: an rtnetlink socket that
//! listens to the kernel's link, address and route notifications (`ip monitor link address
//! route`), non-blocking, for the signalfd loop to poll beside its signals.
//!
//! It only says *that* something changed; what changed is read again from the namespace
//! (`discover`), so that coalesced or lost notifications cannot mislead.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A socket subscribed to the network changes vminit follows.
pub struct Monitor {
    socket: Socket,
}

impl Monitor {
    /// `ip monitor link address route`: links (a NIC arrives or leaves), IPv4 and IPv6
    /// addresses (Docker adds them just after the link; an IPv6-only NIC has only the latter)
    /// and IPv4 and IPv6 routes (a default route moves).
    pub fn open() -> io::Result<Monitor> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, 0))?;
        for group in [
            libc::RTNLGRP_LINK,
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV6_IFADDR,
            libc::RTNLGRP_IPV4_ROUTE,
            libc::RTNLGRP_IPV6_ROUTE,
        ] {
            socket.add_membership(group)?;
        }
        socket.set_non_blocking(true)?;
        Ok(Monitor { socket })
    }

    /// Reads every notification waiting, without blocking; whether there was one. A full
    /// socket buffer (`ENOBUFS`: notifications were lost) counts as a change too.
    pub fn drain(&mut self) -> bool {
        let mut changed = false;
        loop {
            let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
            match self.socket.recv(&mut buf, 0) {
                Ok(0) => return changed,
                Ok(_) => changed = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return changed,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Err(e) => {
                    log::warn!("network monitor: {e}");
                    return changed;
                }
            }
        }
    }
}

impl AsFd for Monitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
