//! One vminit per network namespace: a lock held for vminit's whole life.
//!
//! A second vminit in the same network namespace (`docker exec vm /vminit sh`) would take
//! the running guest's links for leftovers of a killed run and tear them down. The lock is
//! an abstract Unix socket, `@vminit` in `ss -xl`: abstract socket names belong to the
//! network namespace — exactly what vminit changes, and what survives a container restart
//! in a Kubernetes pod, whose filesystem is new (a lock file would be lost there, or left
//! stale by a SIGKILL) — and the kernel frees the name when the last descriptor on it
//! closes, however its holder died.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, socket};

use crate::error::{Error, Result};

/// The abstract socket's name (without the leading NUL byte).
pub const NAME: &[u8] = b"vminit";

/// The lock, held while this value lives.
#[derive(Debug)]
pub struct Lock {
    _socket: OwnedFd,
}

impl Lock {
    /// Keeps the lock across `exec`: the debug shell that replaces vminit holds it then.
    /// (Children vminit spawns never get it: they keep only the descriptors they are given;
    /// see `spawn`.)
    pub fn keep_across_exec(&self) -> Result<()> {
        fcntl(&self._socket, FcntlArg::F_SETFD(FdFlag::empty()))
            .map(drop)
            .map_err(|e| Error::os("keep the lock socket across exec", e))
    }
}

/// Takes the lock of this network namespace, or reports that another vminit holds it.
/// The descriptor is close-on-exec (see `Lock::keep_across_exec`).
pub fn acquire() -> Result<Lock> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::os("create the lock socket", e))?;
    let addr = UnixAddr::new_abstract(NAME).map_err(|e| Error::os("name the lock socket", e))?;
    // bind(2) to "\0vminit": fails with EADDRINUSE while any process holds the name.
    match bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) => Ok(Lock { _socket: fd }),
        Err(Errno::EADDRINUSE) => Err(Error::AlreadyRunning),
        Err(e) => Err(Error::os("bind the lock socket @vminit", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_held_until_dropped_and_is_per_network_namespace() {
        // A thread of its own in a new network namespace (root only): nothing else holds
        // the name there.
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (root)");
            let first = acquire().expect("a fresh namespace is free");
            assert!(matches!(acquire(), Err(Error::AlreadyRunning)));
            // Another namespace is not affected.
            let other = std::thread::spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
                acquire().map(drop).is_ok()
            });
            assert!(other.join().unwrap(), "another namespace has its own lock");
            drop(first);
            // Released when the last descriptor closes. Other tests of this process fork
            // children (dnsmasq) at any moment, and a child holds a copy of the
            // close-on-exec descriptor until its exec: allow it that moment.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while let Err(e) = acquire() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "released when the holder closes it: {e}"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
        .join()
        .unwrap();
    }
}
