//! Starts children with the signal state a normal process expects; execs the debug shell.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// How a child starts.
pub struct SpawnOptions<'a> {
    /// The signal mask vminit had before it blocked everything for its signalfd.
    pub mask: SigSet,
    /// Descriptors above stderr the child keeps (QEMU's tap fds); every other one is closed,
    /// including any PID 1 itself inherited.
    pub keep: &'a [RawFd],
    /// Put the child in its own process group, so a Ctrl-C on the console's terminal
    /// does not reach it (dnsmasq); QEMU stays in the foreground group to read the tty.
    pub own_group: bool,
}

/// Starts `argv[0]` with `argv[1..]`. Returns its pid; vminit reaps it later.
pub fn spawn(argv: &[OsString], opts: &SpawnOptions) -> Result<Pid> {
    let program = argv[0].to_string_lossy().into_owned();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let mask = opts.mask;
    let mut keep: Vec<RawFd> = opts.keep.to_vec();
    keep.sort_unstable();
    let own_group = opts.own_group;
    // SAFETY: the closure runs in the child between fork and exec. It only makes
    // async-signal-safe system calls (sigprocmask, signal, close, setpgid) on data
    // captured by value before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Rust std and vminit change these; a child must start as if from a shell.
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&mask), None)?;
            signal(Signal::SIGPIPE, SigHandler::SigDfl)?;
            close_all_but(&keep);
            if own_group {
                libc::setpgid(0, 0);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| Error::Program {
        what: program,
        source,
    })?;
    // The std handle is dropped without waiting: the supervisor reaps by pid.
    Ok(Pid::from_raw(child.id() as i32))
}

/// Closes every descriptor above 2 except `keep` (sorted), with close_range(2) between them.
/// Async-signal-safe: no allocation.
fn close_all_but(keep: &[RawFd]) {
    let mut low: libc::c_uint = 3;
    for &fd in keep.iter().chain(std::iter::once(&RawFd::MAX)) {
        let fd = fd as libc::c_uint;
        if fd > low {
            // SAFETY: close_range only closes descriptors; the range excludes those kept.
            unsafe { libc::syscall(libc::SYS_close_range, low, fd - 1, 0) };
        }
        low = low.max(fd.saturating_add(1));
    }
}

/// Replaces vminit with a shell (debug mode), with the original signal mask.
pub fn exec_shell(argv: &[OsString], mask: SigSet) -> Error {
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&mask), None);
    // SAFETY: resetting a disposition to its default has no memory-safety impact.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let source = Command::new(&argv[0]).args(&argv[1..]).exec();
    Error::Program {
        what: argv[0].to_string_lossy().into_owned(),
        source,
    }
}
