//! PID 1's supervisor: one signalfd loop that reaps every child, turns `docker stop`
//! into an ACPI power-button press, restarts dnsmasq, and decides the exit status.
//!
//! The decisions are a pure state machine (`policy::Policy`); `run` only feeds it events
//! and carries out its actions.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::net::monitor::Monitor;
use crate::pid1::policy::{self, Action, Event, Exit, Policy};

/// Signals that stay unblocked: a bug in vminit must crash it, not hang it.
const CRASH_SIGNALS: [Signal; 7] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

/// The blocked signal set and its signalfd, created before anything else runs.
pub struct Signals {
    pub fd: SignalFd,
    /// The mask vminit started with; children get it back.
    pub original: SigSet,
}

impl Signals {
    pub fn block() -> nix::Result<Signals> {
        let mut set = SigSet::all();
        for s in CRASH_SIGNALS {
            set.remove(s);
        }
        let mut original = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut original))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Signals { fd, original })
    }

    /// Reads every pending signal without waiting, by number (real-time signals such as
    /// SIGRTMIN+3 have no `Signal` value).
    pub fn pending(&self) -> Vec<i32> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            out.push(info.ssi_signo as i32);
        }
        out
    }
}

/// The effects the loop needs, so that it can be driven by the real world or a test.
/// Each returns within `policy::QMP_DEADLINE` or at once.
pub trait Effects {
    /// Presses the power button; false when QMP could not be reached.
    fn powerdown(&mut self) -> bool;
    fn quit(&mut self);
    /// Spawns dnsmasq without waiting for it to serve.
    fn start_dnsmasq(&mut self) -> Option<Pid>;
    /// Whether the dnsmasq last started serves.
    fn dnsmasq_ready(&mut self) -> bool;
    /// Brings the guest's NICs in line with the container's (hot-plug and hot-unplug);
    /// says what follows: `Event::Reconciled`.
    fn reconcile(&mut self) -> Event;
    /// Plugs the NICs the reconciliations took over into the guest; says what follows
    /// (`Event::Reconciled`: dnsmasq stops serving a NIC that QEMU refused).
    fn plug(&mut self) -> Event;

    /// A child the loop does not know of was reaped; true when the effects knew it (the
    /// user mode's passts).
    fn reaped(&mut self, _pid: Pid, _exit: Exit) -> bool {
        false
    }

    /// More descriptors the loop waits on beside the signalfd and the monitor (the IPv6
    /// announcements' sockets).
    fn watched_fds(&self) -> Vec<BorrowedFd<'_>> {
        Vec::new()
    }

    /// When the loop must wake up for them at the latest.
    fn next_wakeup(&self) -> Option<Instant> {
        None
    }

    /// Called after every wake-up: reads what is ready on them, sends what is due.
    fn on_wakeup(&mut self, _now: Instant) {}
}

/// Runs until the policy says exit; returns the exit status.
pub fn run(
    signals: &Signals,
    mut monitor: Option<&mut Monitor>,
    qemu: Pid,
    mut dnsmasq: Option<Pid>,
    stop_timeout: Duration,
    effects: &mut dyn Effects,
) -> i32 {
    let mut policy = Policy::new(stop_timeout, dnsmasq.is_some(), Instant::now());
    let mut stopping_dnsmasq = false;
    loop {
        let deadline = match (policy.next_deadline(), effects.next_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(t) => {
                let ms = t.saturating_duration_since(Instant::now()).as_millis();
                PollTimeout::try_from(ms.min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut events = Vec::new();
        {
            let mut fds = vec![PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN)];
            if let Some(m) = monitor.as_deref() {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            let watched = effects.watched_fds();
            fds.extend(
                watched
                    .into_iter()
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
            );
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => log::warn!("poll: {e}"),
            }
        }
        effects.on_wakeup(Instant::now());
        if let Some(m) = monitor.as_deref_mut()
            && m.drain()
        {
            log::debug!("the container's network changed");
            events.push(Event::NetworkChanged);
        }
        for sig in signals.pending() {
            log::debug!("signal {}", policy::signal_name(sig));
            if sig == libc::SIGCHLD {
                continue;
            }
            if policy::is_stop_request(sig) || policy::is_stop_now(sig) {
                log::info!("received {}", policy::signal_name(sig));
            }
            events.push(Event::Signal(sig));
        }
        // SIGCHLDs coalesce: reap everything there is, whoever it was.
        for (pid, exit) in reap_all() {
            if pid == qemu {
                log::info!("QEMU (pid {pid}) exited: {}", describe(exit));
                events.push(Event::QemuExited(exit));
            } else if Some(pid) == dnsmasq {
                dnsmasq = None;
                events.push(Event::DnsmasqExited(exit));
                if stopping_dnsmasq {
                    log::info!("dnsmasq (pid {pid}) stopped");
                } else {
                    log::warn!(
                        "dnsmasq (pid {pid}) exited: {}; restarting it",
                        describe(exit)
                    );
                }
            } else if !effects.reaped(pid, exit) {
                log::debug!("reaped pid {pid}: {}", describe(exit));
            }
        }
        events.push(Event::Tick);
        // Effects can report back (a power button QMP did not take), as further events.
        let mut queue = std::collections::VecDeque::from(events);
        while let Some(event) = queue.pop_front() {
            for action in policy.handle(event, Instant::now()) {
                log::debug!("action {action:?}");
                match action {
                    Action::Powerdown => {
                        if !effects.powerdown() {
                            queue.push_back(Event::PowerdownFailed);
                        }
                    }
                    Action::Quit => effects.quit(),
                    Action::KillQemu => {
                        log::warn!("QEMU did not quit; sending SIGKILL");
                        let _ = kill(qemu, Signal::SIGKILL);
                    }
                    Action::StartDnsmasq => match effects.start_dnsmasq() {
                        Some(pid) => {
                            log::info!("dnsmasq restarted, pid {pid}");
                            dnsmasq = Some(pid);
                            stopping_dnsmasq = false;
                        }
                        None => policy.dnsmasq_failed(Instant::now()),
                    },
                    Action::CheckDnsmasq => {
                        if effects.dnsmasq_ready() {
                            log::info!("dnsmasq serves again");
                            queue.push_back(Event::DnsmasqReady);
                        }
                    }
                    Action::AbandonDnsmasq => {
                        if let Some(pid) = dnsmasq {
                            log::warn!(
                                "dnsmasq (pid {pid}) did not serve within {:?}; killing it",
                                policy::DNSMASQ_START_TIMEOUT
                            );
                            let _ = kill(pid, Signal::SIGKILL);
                        }
                    }
                    Action::Reconcile => queue.push_back(effects.reconcile()),
                    Action::Plug => queue.push_back(effects.plug()),
                    Action::StopDnsmasq { kill: hard } => {
                        stopping_dnsmasq = true;
                        if let Some(pid) = dnsmasq {
                            let sig = if hard {
                                Signal::SIGKILL
                            } else {
                                Signal::SIGTERM
                            };
                            let _ = kill(pid, sig);
                        }
                    }
                    Action::Exit(code) => return code,
                }
            }
        }
    }
}

/// Reaps every child that has exited, without blocking.
pub fn reap_all() -> Vec<(Pid, Exit)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => out.push((pid, Exit::Signal(sig as i32))),
            Ok(WaitStatus::StillAlive) | Err(_) => return out,
            Ok(_) => {}
        }
    }
}

pub fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exit code {c}"),
        Exit::Signal(s) => match Signal::try_from(s) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {s}"),
        },
    }
}
