//! PID 1's supervisor: one signalfd loop that waits, reaps every child, and hands what
//! happened to the policy.
//!
//! The decisions are pure (`policy::Policy`: the stop sequence, the helper children's
//! restarts, hot-plug; which child a pid is: `children::Children`); `run` only polls, reaps,
//! feeds the policy events and carries out its actions through `Effects`.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::net::monitor::Monitor;
use crate::pid1::children::Children;
use crate::pid1::policy::{self, Action, Child, Event, Exit, Policy};

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
    /// Spawns the helper without waiting for it to serve.
    fn start(&mut self, child: Child) -> Option<Pid>;
    /// Whether the helper last started serves.
    fn ready(&mut self, child: Child) -> bool;
    /// Brings the guest's NICs in line with the container's (hot-plug and hot-unplug);
    /// says what follows: `Event::Reconciled`.
    fn reconcile(&mut self) -> Event;
    /// Plugs the NICs the reconciliations took over into the guest; says what follows
    /// (`Event::Reconciled`: dnsmasq stops serving a NIC that QEMU refused).
    fn plug(&mut self) -> Event;

    /// Sends `signal` to a child (QEMU or a helper), not reaped yet.
    fn signal(&mut self, pid: Pid, signal: Signal) {
        if let Err(e) = kill(pid, signal) {
            log::debug!("kill {pid} {signal}: {e}");
        }
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

/// Runs until the policy says exit; returns the exit status. `helpers` are the helper
/// children started with QEMU, serving.
pub fn run(
    signals: &Signals,
    mut monitor: Option<&mut Monitor>,
    qemu: Pid,
    helpers: &[(Child, Pid)],
    stop_timeout: Duration,
    effects: &mut dyn Effects,
) -> i32 {
    let mut children = Children::new(qemu, helpers);
    let mut policy = Policy::new(stop_timeout, &children.helpers(), Instant::now());
    loop {
        wait(signals, monitor.as_deref(), policy.next_deadline(), effects);
        effects.on_wakeup(Instant::now());
        let mut queue = VecDeque::new();
        if let Some(m) = monitor.as_deref_mut()
            && m.drain()
        {
            log::debug!("the container's network changed");
            queue.push_back(Event::NetworkChanged);
        }
        queue.extend(signals.pending().into_iter().filter_map(signal_event));
        // SIGCHLDs coalesce: reap everything there is, whoever it was.
        for (pid, exit) in reap_all() {
            let event = children.reaped(pid, exit);
            log_reaped(pid, exit, event.as_ref(), &policy);
            queue.extend(event);
        }
        queue.push_back(Event::Tick);
        // Effects can report back (a power button QMP did not take), as further events.
        while let Some(event) = queue.pop_front() {
            for action in policy.handle(event, Instant::now()) {
                log::debug!("action {action:?}");
                match carry_out(action, &mut children, effects) {
                    ControlFlow::Break(status) => return status,
                    ControlFlow::Continue(then) => queue.extend(then),
                }
            }
        }
    }
}

/// Waits until a signal, a network change or a watched descriptor is ready, or the next
/// deadline (the policy's or the effects') has passed.
fn wait(
    signals: &Signals,
    monitor: Option<&Monitor>,
    deadline: Option<Instant>,
    effects: &dyn Effects,
) {
    let deadline = deadline.into_iter().chain(effects.next_wakeup()).min();
    let timeout = match deadline {
        None => PollTimeout::NONE,
        Some(t) => {
            let ms = t.saturating_duration_since(Instant::now()).as_millis();
            PollTimeout::try_from(ms.min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX)
        }
    };
    let mut fds = vec![PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN)];
    if let Some(m) = monitor {
        fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
    }
    fds.extend(
        effects
            .watched_fds()
            .into_iter()
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
    );
    match poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => log::warn!("poll: {e}"),
    }
}

/// A signal as the policy's event; SIGCHLD is none (the loop reaps after every wake-up).
fn signal_event(signo: i32) -> Option<Event> {
    log::debug!("signal {}", policy::signal_name(signo));
    if signo == libc::SIGCHLD {
        return None;
    }
    if policy::is_stop_request(signo) || policy::is_stop_now(signo) {
        log::info!("received {}", policy::signal_name(signo));
    }
    Some(Event::Signal(signo))
}

fn log_reaped(pid: Pid, exit: Exit, event: Option<&Event>, policy: &Policy) {
    match event {
        Some(Event::QemuExited(_)) => log::info!("QEMU (pid {pid}) exited: {}", describe(exit)),
        Some(&Event::ChildExited(child, _)) if policy.stopping(child) => {
            log::info!("{child} (pid {pid}) stopped")
        }
        Some(Event::ChildExited(child, _)) => {
            log::warn!(
                "{child} (pid {pid}) exited: {}; restarting it",
                describe(exit)
            )
        }
        _ => log::debug!("reaped pid {pid}: {}", describe(exit)),
    }
}

/// Carries out one action: `Break` with the exit status, or what it reports back.
fn carry_out(
    action: Action,
    children: &mut Children,
    effects: &mut dyn Effects,
) -> ControlFlow<i32, Option<Event>> {
    let then = match action {
        Action::Powerdown => (!effects.powerdown()).then_some(Event::PowerdownFailed),
        Action::Quit => {
            effects.quit();
            None
        }
        Action::KillQemu => {
            log::warn!("QEMU did not quit; sending SIGKILL");
            effects.signal(children.qemu(), Signal::SIGKILL);
            None
        }
        Action::Start(child) => match effects.start(child) {
            Some(pid) => {
                log::info!("{child} restarted, pid {pid}");
                children.started(child, pid);
                None
            }
            None => Some(Event::StartFailed(child)),
        },
        Action::Check(child) => effects.ready(child).then(|| {
            log::info!("{child} serves again");
            Event::Ready(child)
        }),
        Action::Abandon(child) => {
            if let Some(pid) = children.pid(child) {
                log::warn!(
                    "{child} (pid {pid}) did not serve within {:?}; killing it",
                    policy::START_TIMEOUT
                );
                effects.signal(pid, Signal::SIGKILL);
            }
            None
        }
        Action::Signal { child, kill } => {
            if let Some(pid) = children.pid(child) {
                let signal = if kill {
                    Signal::SIGKILL
                } else {
                    Signal::SIGTERM
                };
                effects.signal(pid, signal);
            }
            None
        }
        Action::Reconcile => Some(effects.reconcile()),
        Action::Plug => Some(effects.plug()),
        Action::Exit(status) => return ControlFlow::Break(status),
    };
    ControlFlow::Continue(then)
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
