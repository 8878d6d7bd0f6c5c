//! Starts children with the signal state a normal process expects, only the descriptors
//! they are given and, for QEMU, no privileges; execs the debug shell.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, pthread_sigmask, signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
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
    /// Start with no capabilities and `no_new_privs` (QEMU, unless `QEMU_CAPS=keep`).
    pub drop_privileges: bool,
}

/// Starts `argv[0]` with `argv[1..]`. Returns its pid; vminit reaps it later.
pub fn spawn(argv: &[OsString], opts: &SpawnOptions) -> Result<Pid> {
    start(command(argv, opts), argv)
}

/// Like `spawn`, with the child's stderr going to `stderr` (a pipe vminit reads, so that a
/// tool's complaint ends up in vminit's one-line error).
pub fn spawn_with_stderr(argv: &[OsString], opts: &SpawnOptions, stderr: OwnedFd) -> Result<Pid> {
    let mut cmd = command(argv, opts);
    cmd.stderr(Stdio::from(stderr));
    start(cmd, argv)
}

fn start(mut cmd: Command, argv: &[OsString]) -> Result<Pid> {
    let child = cmd.spawn().map_err(|source| Error::Program {
        what: argv[0].to_string_lossy().into_owned(),
        source,
    })?;
    // The std handle is dropped without waiting: the supervisor reaps by pid.
    Ok(Pid::from_raw(child.id() as i32))
}

fn command(argv: &[OsString], opts: &SpawnOptions) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let mask = opts.mask;
    let mut keep: Vec<RawFd> = opts.keep.to_vec();
    keep.sort_unstable();
    let own_group = opts.own_group;
    let drop_privileges = opts.drop_privileges;
    // SAFETY: the closure runs in the child between fork and exec. It only makes
    // async-signal-safe system calls (sigprocmask, signal, close_range, open, getdents64,
    // fcntl, setpgid, prctl, capset) on data captured by value before the fork and on the
    // stack; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Rust std and vminit change these; a child must start as if from a shell.
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&mask), None)?;
            signal(Signal::SIGPIPE, SigHandler::SigDfl)?;
            only_these_fds_across_exec(&keep);
            if own_group {
                libc::setpgid(0, 0);
            }
            if drop_privileges {
                drop_all_privileges()?;
            }
            Ok(())
        });
    }
    cmd
}

/// Makes every descriptor above 2 except `keep` (sorted) close at exec, and `keep` stay
/// open across it. Marking instead of closing keeps std's own exec-error pipe working
/// until the exec. Three ways, each a fallback for the one before (close_range is missing
/// before Linux 5.9, CLOSE_RANGE_CLOEXEC before 5.11, and seccomp profiles of older
/// container runtimes refuse it with EPERM): close_range, the list in /proc/self/fd, every
/// number up to RLIMIT_NOFILE. Async-signal-safe: no allocation.
fn only_these_fds_across_exec(keep: &[RawFd]) {
    for &fd in keep {
        // SAFETY: clearing FD_CLOEXEC on a descriptor the caller owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    if cloexec_by_range(keep).is_ok() || cloexec_by_listing(keep).is_ok() {
        return;
    }
    cloexec_by_number(keep);
}

/// close_range(2) with CLOSE_RANGE_CLOEXEC over the gaps between the kept descriptors.
fn cloexec_by_range(keep: &[RawFd]) -> io::Result<()> {
    let mut low: libc::c_uint = 3;
    for &fd in keep.iter().chain(std::iter::once(&RawFd::MAX)) {
        let fd = fd as libc::c_uint;
        if fd > low {
            // SAFETY: close_range only changes descriptor flags; the range excludes `keep`.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    low,
                    fd - 1,
                    libc::CLOSE_RANGE_CLOEXEC,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        low = low.max(fd.saturating_add(1));
    }
    Ok(())
}

/// FD_CLOEXEC on every descriptor listed in /proc/self/fd (read with getdents64 into a
/// stack buffer: opendir would allocate).
fn cloexec_by_listing(keep: &[RawFd]) -> io::Result<()> {
    // SAFETY: open of a constant NUL-terminated path.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 4096];
    let result = loop {
        // SAFETY: getdents64 writes at most buf.len() bytes into buf.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            break Err(io::Error::last_os_error());
        }
        if n == 0 {
            break Ok(());
        }
        for fd in dirent_numbers(&buf[..n as usize]) {
            if fd > 2 && fd != dir && keep.binary_search(&fd).is_err() {
                // SAFETY: setting FD_CLOEXEC on an open descriptor.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    };
    // SAFETY: closing the directory descriptor opened above.
    unsafe { libc::close(dir) };
    result
}

/// The names of the `linux_dirent64` records in `buf` that are numbers (descriptors in
/// /proc/self/fd; `.` and `..` are not). Allocates nothing.
fn dirent_numbers(buf: &[u8]) -> impl Iterator<Item = RawFd> + '_ {
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    const NAME: usize = 19;
    let mut at = 0;
    std::iter::from_fn(move || {
        while at + NAME < buf.len() {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 {
                return None;
            }
            let name = &buf[at + NAME..(at + reclen).min(buf.len())];
            at += reclen;
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
                let fd = name.iter().try_fold(0 as RawFd, |n, &d| {
                    n.checked_mul(10)?.checked_add(RawFd::from(d - b'0'))
                });
                if let Some(fd) = fd {
                    return Some(fd);
                }
            }
        }
        None
    })
}

/// FD_CLOEXEC on every number from 3 up to the descriptor limit: the last resort, without
/// /proc.
fn cloexec_by_number(keep: &[RawFd]) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct passed.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(RawFd::MAX as libc::rlim_t) as RawFd
    } else {
        1024
    };
    for fd in 3..max {
        if keep.binary_search(&fd).is_err() {
            // SAFETY: F_SETFD on a number that may not be open fails with EBADF, harmlessly.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// QEMU parses guest-controlled device traffic; it gets no privilege to misuse.
/// `prctl(PR_SET_NO_NEW_PRIVS)`: no exec can grant privileges again. Every capability out
/// of the bounding set (this needs CAP_SETPCAP, which Docker grants by default; without
/// it the empty permitted set and no_new_privs still keep them out) and the ambient set.
/// Then effective, permitted and inheritable sets empty. Exec'ing as root recomputes the
/// permitted set from the bounding set, and no_new_privs caps it at the (empty) permitted
/// set before exec: QEMU starts as root with no capability at all. Async-signal-safe.
fn drop_all_privileges() -> io::Result<()> {
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for cap in 0..64 {
        // SAFETY: as above; EINVAL for numbers past the last capability is expected.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: as above.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and two data structs (version 3), both on the stack.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// Stops a child: SIGTERM, then SIGKILL when it is still there after `grace`; reaps it (a
/// child another wait reaped already is simply gone).
pub fn stop_and_reap(pid: Pid, grace: Duration) {
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                sleep(Duration::from_millis(5))
            }
            Ok(WaitStatus::StillAlive) => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return;
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn cloexec(fd: RawFd) -> bool {
        // SAFETY: F_GETFD on a descriptor this test owns.
        unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
    }

    /// These tests change flags of every descriptor of the test process: one at a time.
    static FD_TABLE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Opens /dev/null without CLOEXEC, as an inherited descriptor would be.
    fn inherited() -> std::os::fd::OwnedFd {
        nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn the_proc_listing_fallback_marks_every_descriptor_but_the_kept_ones() {
        let _one = FD_TABLE.lock().unwrap();
        let (a, b, c) = (inherited(), inherited(), inherited());
        let mut keep = [b.as_raw_fd()];
        keep.sort_unstable();
        assert!(!cloexec(a.as_raw_fd()) && !cloexec(c.as_raw_fd()));
        cloexec_by_listing(&keep).unwrap();
        assert!(cloexec(a.as_raw_fd()) && cloexec(c.as_raw_fd()));
        assert!(!cloexec(b.as_raw_fd()));
    }

    #[test]
    fn the_last_resort_marks_every_number_up_to_the_limit() {
        let _one = FD_TABLE.lock().unwrap();
        let (a, b) = (inherited(), inherited());
        cloexec_by_number(&[b.as_raw_fd()]);
        assert!(cloexec(a.as_raw_fd()) && !cloexec(b.as_raw_fd()));
    }

    #[test]
    fn dirent_records_yield_only_numeric_names() {
        let record = |name: &str| {
            let reclen = (19 + name.len() + 1).div_ceil(8) * 8;
            let mut r = vec![0u8; reclen];
            r[16..18].copy_from_slice(&(reclen as u16).to_ne_bytes());
            r[19..19 + name.len()].copy_from_slice(name.as_bytes());
            r
        };
        let buf: Vec<u8> = [".", "..", "0", "17", "x1", "1024"]
            .iter()
            .flat_map(|n| record(n))
            .collect();
        assert_eq!(dirent_numbers(&buf).collect::<Vec<_>>(), vec![0, 17, 1024]);
    }
}
