//! Raw Ethernet frames on one interface (`AF_PACKET`): what vminit's IPv6 announcements are
//! sent with and the guest's solicitations read from. The frames themselves are built and
//! read by pure code (`ndp`, `dhcp6`, `announce`); this module only moves bytes.
//!
//! Needs `CAP_NET_RAW`, which Docker gives every container by default.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::ipv6::ndp::ETHERTYPE_IPV6;
use crate::net::types::Mac;

/// An `AF_PACKET` socket bound to one interface, receiving its IPv6 frames (non-blocking).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    index: u32,
}

impl PacketSocket {
    /// Whether packet sockets can be had here (`CAP_NET_RAW`): one is opened, for no protocol
    /// and unbound, so it receives nothing, and handed back to be closed when nothing waits
    /// for it. Closing a packet socket waits for an RCU grace period (the kernel's
    /// `packet_release` calls `synchronize_net`): 8 to 20 ms here, which a close on the boot's
    /// path would add to every dual-stack boot.
    pub fn probe() -> io::Result<OwnedFd> {
        PacketSocket::socket_for(0)
    }

    /// `socket(AF_PACKET, SOCK_RAW, ETHERTYPE)`, not bound yet.
    fn socket_for(ethertype: u16) -> io::Result<OwnedFd> {
        let protocol = ethertype.to_be();
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(protocol),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new, valid descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// `socket(AF_PACKET, SOCK_RAW, ETH_P_IPV6)` bound to the interface `index`.
    pub fn open(index: u32) -> io::Result<PacketSocket> {
        PacketSocket::open_for(index, ETHERTYPE_IPV6)
    }

    /// `socket(AF_PACKET, SOCK_RAW, ETHERTYPE)` bound to the interface `index`: its frames
    /// of that type (`ETH_P_ARP` for the health check's probes).
    pub fn open_for(index: u32, ethertype: u16) -> io::Result<PacketSocket> {
        let protocol = ethertype.to_be();
        let fd = PacketSocket::socket_for(ethertype)?;
        let mut addr = sockaddr_ll(index);
        addr.sll_protocol = protocol;
        // SAFETY: `addr` is a valid sockaddr_ll and its exact size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, index })
    }

    /// Receives frames sent to the Ethernet multicast address `group` too (a macvlan passes a
    /// sibling's multicast frames only for groups someone on it joined); for as long as the
    /// socket lives.
    pub fn join(&self, group: Mac) -> io::Result<()> {
        // struct packet_mreq { int mr_ifindex; unsigned short mr_type, mr_alen;
        //                      unsigned char mr_address[8]; }
        let mut mreq = libc::packet_mreq {
            mr_ifindex: self.index as i32,
            mr_type: libc::PACKET_MR_MULTICAST as u16,
            mr_alen: 6,
            mr_address: [0; 8],
        };
        mreq.mr_address[..6].copy_from_slice(&group.0);
        self.setsockopt(libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
    }

    /// Keeps only frames whose Ethernet source is `mac`, in the kernel (a classic BPF
    /// filter), so that nothing else on a busy network wakes vminit up.
    pub fn only_from(&self, mac: Mac) -> io::Result<()> {
        let m = mac.0;
        let hi = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
        let lo = u32::from(u16::from_be_bytes([m[4], m[5]]));
        let code = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        let filter = [
            // ld [6]: the first four bytes of the source MAC
            code(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 6),
            code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 3, hi),
            // ldh [10]: its last two bytes
            code(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 0, 0, 10),
            code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, lo),
            code(libc::BPF_RET | libc::BPF_K, 0, 0, 0x0004_0000),
            code(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        ];
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        self.setsockopt(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
    }

    fn setsockopt<T>(&self, level: i32, name: i32, value: &T) -> io::Result<()> {
        // SAFETY: `value` points to a live `T` of the size passed, which is what the option
        // expects (the callers pass the kernel's structure for it).
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast::<libc::c_void>(),
                size_of::<T>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sends one whole Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the buffer is valid for `frame.len()` bytes.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<libc::c_void>(),
                frame.len(),
                0,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The next frame that arrived on the interface (not one it sent), or `None` when there
    /// is none waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let mut from = sockaddr_ll(0);
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is valid for its length; `from` and `len` describe a writable
            // sockaddr_ll.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    0,
                    (&raw mut from).cast::<libc::sockaddr>(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                return Ok(Some(n as usize));
            }
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A `sockaddr_ll` for the interface `index`, everything else zero.
fn sockaddr_ll(index: u32) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: 0,
        sll_ifindex: index as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}
