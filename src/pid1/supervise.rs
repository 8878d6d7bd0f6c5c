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

    /// The signals waiting to be read, by number, left waiting: for a wait that a request
    /// to stop must end while the supervisor, which reads and acts on them, has not started.
    #[allow(unsafe_code)]
    pub fn waiting(&self) -> Vec<i32> {
        // SAFETY: `set` is a sigset_t this function owns; sigemptyset and sigpending write
        // into it and sigismember only reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigpending(&mut set) != 0 {
                return Vec::new();
            }
            (1..=libc::SIGRTMAX())
                .filter(|&s| libc::sigismember(&set, s) == 1)
                .collect()
        }
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
        if let Some(status) = dispatch(queue, &mut policy, &mut children, effects) {
            return status;
        }
    }
}

/// Hands the events to the policy in order and carries out its actions; what the effects
/// report back (a power button QMP did not take) joins the queue. The exit status, once the
/// policy says exit.
fn dispatch(
    mut queue: VecDeque<Event>,
    policy: &mut Policy,
    children: &mut Children,
    effects: &mut dyn Effects,
) -> Option<i32> {
    while let Some(event) = queue.pop_front() {
        for action in policy.handle(event, Instant::now()) {
            log::debug!("action {action:?}");
            match carry_out(action, children, effects) {
                ControlFlow::Break(status) => return Some(status),
                ControlFlow::Continue(then) => queue.extend(then),
            }
        }
    }
    None
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
        Action::Reload(child) => {
            if let Some(pid) = children.pid(child) {
                log::info!("{child} (pid {pid}) reads its hosts and options again (SIGHUP)");
                effects.signal(pid, Signal::SIGHUP);
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

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: Pid = Pid::from_raw(10);
    const DNSMASQ: Pid = Pid::from_raw(11);
    const D: Child = Child::Dnsmasq;

    /// Effects that record what they were asked to do, and answer as told.
    #[derive(Default)]
    struct Recorder {
        done: Vec<String>,
        /// What QMP answers to the power button.
        powerdown_taken: bool,
        /// The pid the next start gives; `None`: the start fails.
        next_pid: Option<Pid>,
    }

    impl Effects for Recorder {
        fn powerdown(&mut self) -> bool {
            self.done.push("powerdown".into());
            self.powerdown_taken
        }
        fn quit(&mut self) {
            self.done.push("quit".into());
        }
        fn start(&mut self, child: Child) -> Option<Pid> {
            self.done.push(format!("start {child}"));
            self.next_pid.take()
        }
        fn ready(&mut self, child: Child) -> bool {
            self.done.push(format!("ready {child}?"));
            true
        }
        fn reconcile(&mut self) -> Event {
            self.done.push("reconcile".into());
            Event::Reconciled {
                again_in: None,
                reconfigured: Vec::new(),
                reloaded: Vec::new(),
                plugs_pending: false,
            }
        }
        fn plug(&mut self) -> Event {
            self.done.push("plug".into());
            Event::Reconciled {
                again_in: None,
                reconfigured: Vec::new(),
                reloaded: Vec::new(),
                plugs_pending: false,
            }
        }
        fn signal(&mut self, pid: Pid, signal: Signal) {
            self.done.push(format!("{signal} {pid}"));
        }
    }

    fn supervisor() -> (Policy, Children, Recorder) {
        let children = Children::new(QEMU, &[(D, DNSMASQ)]);
        let policy = Policy::new(Duration::from_secs(8), &children.helpers(), Instant::now());
        (policy, children, Recorder::default())
    }

    fn dispatch_one(
        event: Event,
        policy: &mut Policy,
        children: &mut Children,
        effects: &mut Recorder,
    ) -> Option<i32> {
        dispatch(VecDeque::from([event]), policy, children, effects)
    }

    #[test]
    fn a_new_configuration_stops_the_helper_by_its_pid_and_its_successor_is_known_by_its_own() {
        let (mut policy, mut children, mut fx) = supervisor();
        let reconfigured = Event::Reconciled {
            again_in: None,
            reconfigured: vec![D],
            reloaded: Vec::new(),
            plugs_pending: false,
        };
        assert_eq!(
            dispatch_one(reconfigured, &mut policy, &mut children, &mut fx),
            None
        );
        assert_eq!(fx.done, ["SIGTERM 11"]);
        fx.next_pid = Some(Pid::from_raw(12));
        let exited = children.reaped(DNSMASQ, Exit::Signal(15)).expect("ours");
        assert!(policy.stopping(D), "logged as stopped, not as a crash");
        dispatch_one(exited, &mut policy, &mut children, &mut fx);
        assert_eq!(fx.done, ["SIGTERM 11", "start dnsmasq"]);
        assert_eq!(children.pid(D), Some(Pid::from_raw(12)));
    }

    #[test]
    fn qemus_exit_stops_the_helpers_and_vminit_exits_once_they_are_reaped() {
        let (mut policy, mut children, mut fx) = supervisor();
        let gone = children.reaped(QEMU, Exit::Code(3)).expect("QEMU");
        assert_eq!(
            dispatch_one(gone, &mut policy, &mut children, &mut fx),
            None
        );
        assert_eq!(fx.done, ["SIGTERM 11"]);
        let stopped = children.reaped(DNSMASQ, Exit::Signal(15)).expect("ours");
        assert_eq!(
            dispatch_one(stopped, &mut policy, &mut children, &mut fx),
            Some(3)
        );
    }

    #[test]
    fn a_failed_start_and_a_power_button_qmp_did_not_take_are_reported_back() {
        let (_, mut children, mut fx) = supervisor();
        assert_eq!(
            carry_out(Action::Start(D), &mut children, &mut fx),
            ControlFlow::Continue(Some(Event::StartFailed(D)))
        );
        assert_eq!(
            carry_out(Action::Powerdown, &mut children, &mut fx),
            ControlFlow::Continue(Some(Event::PowerdownFailed))
        );
        fx.powerdown_taken = true;
        assert_eq!(
            carry_out(Action::Powerdown, &mut children, &mut fx),
            ControlFlow::Continue(None)
        );
        assert_eq!(
            carry_out(Action::Check(D), &mut children, &mut fx),
            ControlFlow::Continue(Some(Event::Ready(D)))
        );
        assert_eq!(
            carry_out(Action::Exit(137), &mut children, &mut fx),
            ControlFlow::Break(137)
        );
    }

    #[test]
    fn signals_reach_the_pid_the_action_names_and_no_reaped_one() {
        let (_, mut children, mut fx) = supervisor();
        let _ = carry_out(Action::KillQemu, &mut children, &mut fx);
        let _ = carry_out(Action::Abandon(D), &mut children, &mut fx);
        let _ = carry_out(
            Action::Signal {
                child: D,
                kill: false,
            },
            &mut children,
            &mut fx,
        );
        assert_eq!(fx.done, ["SIGKILL 10", "SIGKILL 11", "SIGTERM 11"]);
        children.reaped(DNSMASQ, Exit::Code(1));
        let _ = carry_out(
            Action::Signal {
                child: D,
                kill: true,
            },
            &mut children,
            &mut fx,
        );
        let _ = carry_out(Action::Abandon(D), &mut children, &mut fx);
        assert_eq!(fx.done.len(), 3, "{:?}", fx.done);
    }

    #[test]
    fn what_an_effect_reports_back_reaches_the_policy_in_the_same_dispatch() {
        let (mut policy, mut children, mut fx) = supervisor();
        let sent = Instant::now();
        let stop = Event::Signal(libc::SIGTERM);
        assert_eq!(
            dispatch_one(stop, &mut policy, &mut children, &mut fx),
            None
        );
        assert_eq!(fx.done, ["powerdown"]);
        // QMP did not take it: pressed again in a quarter second, not in a second.
        let next = policy.next_deadline().expect("a press");
        assert!(
            next < sent + Duration::from_millis(500),
            "{:?}",
            next - sent
        );
    }

    #[test]
    fn sigchld_is_no_event_and_every_other_signal_is() {
        assert_eq!(signal_event(libc::SIGCHLD), None);
        for signo in [libc::SIGTERM, libc::SIGQUIT, libc::SIGHUP, 37] {
            assert_eq!(signal_event(signo), Some(Event::Signal(signo)));
        }
    }
}
