//! Creates the guest's tap for the tap datapath: `/dev/net/tun` opened and bound to a new
//! tap device, the descriptor kept open without CLOEXEC for QEMU.
//!
//! The device lives as long as a descriptor does (it is not persistent): when vminit and
//! QEMU are gone, so is the tap, and with it its tc filters.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `ip tuntap add dev NAME mode tap vnet_hdr`, the device held by the returned descriptor
/// (opened without CLOEXEC: QEMU inherits it). `tun` is the tun device (`/dev/net/tun`).
pub fn open_tap(tun: &Path, name: &str) -> io::Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // No O_CREAT: a missing node must never become a regular file.
    let fd = open(tun, OFlag::O_RDWR, Mode::empty()).map_err(io::Error::from)?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads (and writes back the name into) a `struct ifreq`; `req` has
    // its layout (16-byte name, flags in the union) and lives until the call returns.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Whether a tap can be made here: `/dev/net/tun` opens read-write. Its error otherwise.
pub fn probe(tun: &Path) -> io::Result<()> {
    open(tun, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map(drop)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_has_the_kernels_ifreq_size() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn a_name_the_kernel_cannot_hold_is_refused_before_any_open() {
        let e = open_tap(Path::new("/nonexistent"), "a-name-far-too-long").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
