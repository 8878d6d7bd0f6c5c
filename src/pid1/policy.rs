//! The supervisor's decisions as a pure state machine: what to do about each signal,
//! child exit and deadline while the guest runs (no I/O; time is passed in).
//!
//! `docker stop` becomes an ACPI power-button press, pressed again every second until the
//! guest acts (a guest still booting does not listen yet), then, after `STOP_TIMEOUT`, QMP
//! `quit`, then SIGKILL; a dead dnsmasq is restarted with backoff, without waiting for it;
//! the exit status is QEMU's, or 137 when vminit had to stop it.
//!
//! The stop budget: with every QMP exchange bounded by `QMP_DEADLINE` and no press started
//! unless it ends before the stop deadline, the worst case from the stop signal to vminit's
//! exit is `STOP_TIMEOUT + GRACE + QEMU's death + DNSMASQ_STOP_GRACE + restoring the
//! network`: 8 + 0.8 + ~0.1 + 0.5 + ~0.05 = about 9.5 s, inside Docker's 10 s.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: the code, or 128 + the signal number.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// SIGRTMIN+3 as systemd, Docker and Podman number it (34 + 3: glibc's SIGRTMIN). musl,
/// which vminit is built with, reserves one more real-time signal, so its
/// `SIGRTMIN() + 3` would be a different signal.
pub const SIGRTMIN_PLUS_3: i32 = 37;

/// Signals that ask for a clean stop: `docker stop` (SIGTERM), Ctrl-C without a tty
/// (SIGINT), power failure (SIGPWR) and systemd's halt (SIGRTMIN+3).
pub fn is_stop_request(signo: i32) -> bool {
    [libc::SIGTERM, libc::SIGINT, libc::SIGPWR, SIGRTMIN_PLUS_3].contains(&signo)
}

/// Signals that ask to stop at once, without the power button.
pub fn is_stop_now(signo: i32) -> bool {
    signo == libc::SIGQUIT
}

/// A signal's name for messages: `SIGTERM`, `SIGRTMIN+3`, `signal 40`.
pub fn signal_name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(sig) => sig.to_string(),
        Err(_) if signo == SIGRTMIN_PLUS_3 => "SIGRTMIN+3".into(),
        Err(_) => format!("signal {signo}"),
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A signal, by number (real-time signals have no `Signal` value).
    Signal(i32),
    QemuExited(Exit),
    DnsmasqExited(Exit),
    /// The power button could not be pressed (QMP not answering yet, e.g. `docker stop`
    /// right after the start, while QEMU still sets up its socket).
    PowerdownFailed,
    /// A restarted dnsmasq serves (its pid file is written).
    DnsmasqReady,
    /// The kernel reported a change to the container's links, addresses or routes.
    NetworkChanged,
    /// The guest's NICs were brought in line with the container's; look again after this
    /// long (a new NIC is waiting for its address), if given.
    Reconciled {
        again_in: Option<Duration>,
        /// dnsmasq's configuration changed: it must be restarted to serve it.
        dnsmasq_changed: bool,
        /// New NICs are taken over and wait to be plugged into the guest: once dnsmasq
        /// serves them, so that the guest's first DHCP request is answered.
        plugs_pending: bool,
    },
    /// Time passed (a deadline may have been reached).
    Tick,
}

/// What to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Press the guest's ACPI power button (QMP `system_powerdown`), within `QMP_DEADLINE`.
    Powerdown,
    /// Ask QEMU to quit now (QMP `quit`, within `QMP_DEADLINE`); the guest's state is lost.
    Quit,
    /// SIGKILL QEMU.
    KillQemu,
    /// Spawn dnsmasq again; do not wait for it.
    StartDnsmasq,
    /// Look whether the restarted dnsmasq serves yet (answer with `DnsmasqReady`).
    CheckDnsmasq,
    /// SIGKILL a restarted dnsmasq that did not come up in time; its exit restarts it.
    AbandonDnsmasq,
    /// SIGTERM dnsmasq (`true`: SIGKILL).
    StopDnsmasq {
        kill: bool,
    },
    /// Bring the guest's NICs in line with the container's (hot-plug, hot-unplug).
    Reconcile,
    /// Plug the NICs taken over by the last reconciliations into the guest.
    Plug,
    Exit(i32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Running,
    /// Power button pressed; waiting for the guest until the deadline.
    PoweringDown,
    /// QMP quit sent; SIGKILL at the deadline.
    Quitting,
    /// SIGKILL sent; waiting for the kernel.
    Killing,
    /// QEMU is gone; waiting for dnsmasq, then exit with this status.
    Exiting(i32),
}

/// The longest one QMP exchange (connect, greeting, command, answer) may take.
pub const QMP_DEADLINE: Duration = Duration::from_millis(500);
/// How long QEMU gets to act on `quit` before SIGKILL (longer than `QMP_DEADLINE`, so the
/// `quit` exchange itself fits in it).
pub const GRACE: Duration = Duration::from_millis(800);
/// How long dnsmasq gets to exit on SIGTERM before SIGKILL.
pub const DNSMASQ_STOP_GRACE: Duration = Duration::from_millis(500);
/// How often the power button is pressed while the guest has not acted: a guest that was
/// still booting at the first press (ACPI not listening yet) sees a later one.
const PRESS_AGAIN: Duration = Duration::from_secs(1);
/// How soon to press the power button again when QMP did not take it.
const POWERDOWN_RETRY: Duration = Duration::from_millis(250);
const DNSMASQ_BACKOFF_MIN: Duration = Duration::from_millis(250);
const DNSMASQ_BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A dnsmasq that ran this long without dying resets the backoff.
const DNSMASQ_STABLE: Duration = Duration::from_secs(30);
/// How long a restarted dnsmasq gets to serve before it is killed and restarted.
pub const DNSMASQ_START_TIMEOUT: Duration = Duration::from_secs(5);
/// How often to look whether a restarted dnsmasq serves.
const DNSMASQ_POLL: Duration = Duration::from_millis(50);
/// How long to let a burst of network changes settle before following them: Docker adds a
/// NIC's link, MAC, address and routes in a few quick steps.
pub const SETTLE: Duration = Duration::from_millis(150);
/// The longest new NICs wait for the restarted dnsmasq before they are plugged in anyway
/// (the guest's DHCP client then asks again).
pub const PLUG_WAIT: Duration = Duration::from_secs(2);

/// The supervisor's decisions, as a pure state machine over events and time.
#[derive(Debug)]
pub struct Policy {
    stage: Stage,
    stop_timeout: Duration,
    deadline: Option<Instant>,
    /// When to press the power button again.
    press_at: Option<Instant>,
    forced: bool,
    dnsmasq_running: bool,
    dnsmasq_started: Option<Instant>,
    dnsmasq_restart_at: Option<Instant>,
    dnsmasq_backoff: Duration,
    /// While a restarted dnsmasq is not serving yet: when to give up on it, and when to
    /// look again.
    dnsmasq_ready_by: Option<Instant>,
    dnsmasq_check_at: Option<Instant>,
    /// When to bring the guest's NICs in line with the container's.
    reconcile_at: Option<Instant>,
    /// dnsmasq is being stopped to be started again at once with a new configuration.
    dnsmasq_reconfiguring: bool,
    /// When to plug the NICs taken over into the guest at the latest (sooner once dnsmasq
    /// serves).
    plug_at: Option<Instant>,
}

impl Policy {
    /// A policy for a running QEMU, with dnsmasq running when `dnsmasq` is true.
    pub fn new(stop_timeout: Duration, dnsmasq: bool, now: Instant) -> Policy {
        Policy {
            stage: Stage::Running,
            stop_timeout,
            deadline: None,
            press_at: None,
            forced: false,
            dnsmasq_running: dnsmasq,
            dnsmasq_started: dnsmasq.then_some(now),
            dnsmasq_restart_at: None,
            dnsmasq_backoff: DNSMASQ_BACKOFF_MIN,
            dnsmasq_ready_by: None,
            dnsmasq_check_at: None,
            reconcile_at: None,
            dnsmasq_reconfiguring: false,
            plug_at: None,
        }
    }

    /// The next moment the policy wants a `Tick`, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.deadline,
            self.dnsmasq_restart_at,
            self.press_at,
            self.dnsmasq_ready_by,
            self.dnsmasq_check_at,
            self.reconcile_at,
            self.plug_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes in one event that happened at `now` and returns what to do about it, in order.
    ///
    /// Besides reacting to the event itself, every call also acts on the deadlines that have
    /// passed by `now` (the stop timeout, the grace after QMP `quit`, the next power-button
    /// press, a dnsmasq restart or readiness check); feed it `Event::Tick` when
    /// `next_deadline` is reached. The returned actions must be carried out in order;
    /// `Action::Exit` ends the run.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Signal(sig) if is_stop_request(sig) => match self.stage {
                // A STOP_TIMEOUT too short for one press means: stop it now.
                Stage::Running if self.stop_timeout <= QMP_DEADLINE => {
                    self.escalate(now, &mut actions)
                }
                Stage::Running => {
                    self.stage = Stage::PoweringDown;
                    self.deadline = Some(now + self.stop_timeout);
                    self.press(now, &mut actions);
                }
                // A second request to stop means: now.
                Stage::PoweringDown => self.escalate(now, &mut actions),
                _ => {}
            },
            Event::Signal(sig) if is_stop_now(sig) => {
                if matches!(self.stage, Stage::Running | Stage::PoweringDown) {
                    self.escalate(now, &mut actions);
                }
            }
            Event::Signal(_) => {}
            Event::PowerdownFailed => {
                if self.stage == Stage::PoweringDown {
                    self.press_at = Some(now + POWERDOWN_RETRY);
                }
            }
            Event::QemuExited(exit) => {
                let status = if self.forced {
                    128 + Signal::SIGKILL as i32
                } else {
                    exit.status()
                };
                self.dnsmasq_restart_at = None;
                self.dnsmasq_ready_by = None;
                self.dnsmasq_check_at = None;
                self.press_at = None;
                self.stage = Stage::Exiting(status);
                if self.dnsmasq_running {
                    self.deadline = Some(now + DNSMASQ_STOP_GRACE);
                    actions.push(Action::StopDnsmasq { kill: false });
                } else {
                    self.deadline = None;
                    actions.push(Action::Exit(status));
                }
            }
            Event::NetworkChanged => {
                if self.stage == Stage::Running {
                    let settled = now + SETTLE;
                    self.reconcile_at = Some(self.reconcile_at.map_or(settled, |t| t.min(settled)));
                }
            }
            Event::Reconciled {
                again_in,
                dnsmasq_changed,
                plugs_pending,
            } => {
                if let Some(wait) = again_in.filter(|_| self.stage == Stage::Running) {
                    let later = now + wait;
                    self.reconcile_at = Some(self.reconcile_at.map_or(later, |t| t.min(later)));
                }
                if dnsmasq_changed && self.stage == Stage::Running {
                    // The dnsmasq being waited for, if any, is replaced: its pid file does
                    // not say the new configuration is served.
                    self.dnsmasq_ready_by = None;
                    self.dnsmasq_check_at = None;
                    if self.dnsmasq_running {
                        self.dnsmasq_reconfiguring = true;
                        actions.push(Action::StopDnsmasq { kill: false });
                    } else {
                        // Not running (it died, a restart is pending): start it now.
                        self.dnsmasq_restart_at = Some(now);
                    }
                }
                if plugs_pending && self.stage == Stage::Running {
                    // Without a dnsmasq to restart there is nothing to wait for.
                    let at = if dnsmasq_changed {
                        now + PLUG_WAIT
                    } else {
                        now
                    };
                    self.plug_at = Some(self.plug_at.map_or(at, |t| t.min(at)));
                }
            }
            Event::DnsmasqExited(_) if self.dnsmasq_reconfiguring => {
                self.dnsmasq_reconfiguring = false;
                self.dnsmasq_running = false;
                self.dnsmasq_ready_by = None;
                self.dnsmasq_check_at = None;
                if self.stage == Stage::Running {
                    // Asked for: no backoff.
                    self.dnsmasq_restart_at = Some(now);
                } else if let Stage::Exiting(status) = self.stage {
                    self.deadline = None;
                    actions.push(Action::Exit(status));
                }
            }
            Event::DnsmasqExited(_) => {
                self.dnsmasq_running = false;
                self.dnsmasq_ready_by = None;
                self.dnsmasq_check_at = None;
                match self.stage {
                    Stage::Exiting(status) => {
                        self.deadline = None;
                        actions.push(Action::Exit(status));
                    }
                    _ => {
                        let ran = self.dnsmasq_started.map(|t| now.duration_since(t));
                        if ran.is_some_and(|d| d >= DNSMASQ_STABLE) {
                            self.dnsmasq_backoff = DNSMASQ_BACKOFF_MIN;
                        }
                        self.restart_dnsmasq_later(now);
                    }
                }
            }
            Event::DnsmasqReady => {
                self.dnsmasq_ready_by = None;
                self.dnsmasq_check_at = None;
                if self.plug_at.is_some() {
                    self.plug_at = Some(now);
                }
            }
            Event::Tick => {}
        }
        if self.press_at.is_some_and(|t| now >= t) {
            self.press_at = None;
            // No press that could end after the stop deadline: the escalation must not wait.
            if self.stage == Stage::PoweringDown
                && self.deadline.is_some_and(|d| now + QMP_DEADLINE < d)
            {
                self.press(now, &mut actions);
            }
        }
        if self.reconcile_at.is_some_and(|t| now >= t) {
            self.reconcile_at = None;
            if self.stage == Stage::Running {
                actions.push(Action::Reconcile);
            }
        }
        if self.plug_at.is_some_and(|t| now >= t) {
            self.plug_at = None;
            if self.stage == Stage::Running {
                actions.push(Action::Plug);
            }
        }
        if self.dnsmasq_restart_at.is_some_and(|t| now >= t) {
            self.dnsmasq_restart_at = None;
            self.dnsmasq_running = true;
            self.dnsmasq_started = Some(now);
            self.dnsmasq_ready_by = Some(now + DNSMASQ_START_TIMEOUT);
            self.dnsmasq_check_at = Some(now + DNSMASQ_POLL);
            actions.push(Action::StartDnsmasq);
        } else if self.dnsmasq_ready_by.is_some_and(|t| now >= t) {
            self.dnsmasq_ready_by = None;
            self.dnsmasq_check_at = None;
            actions.push(Action::AbandonDnsmasq);
        } else if self.dnsmasq_check_at.is_some_and(|t| now >= t) {
            self.dnsmasq_check_at = Some(now + DNSMASQ_POLL);
            actions.push(Action::CheckDnsmasq);
        }
        if self.deadline.is_some_and(|t| now >= t) {
            match self.stage {
                Stage::PoweringDown => self.escalate(now, &mut actions),
                Stage::Quitting => {
                    self.stage = Stage::Killing;
                    self.deadline = None;
                    actions.push(Action::KillQemu);
                }
                Stage::Exiting(_) => {
                    self.deadline = None;
                    actions.push(Action::StopDnsmasq { kill: true });
                }
                Stage::Running | Stage::Killing => self.deadline = None,
            }
        }
        actions
    }

    /// The dnsmasq start failed: try again later, as if it had exited.
    pub fn dnsmasq_failed(&mut self, now: Instant) {
        self.dnsmasq_running = false;
        self.dnsmasq_ready_by = None;
        self.dnsmasq_check_at = None;
        self.restart_dnsmasq_later(now);
    }

    fn restart_dnsmasq_later(&mut self, now: Instant) {
        self.dnsmasq_restart_at = Some(now + self.dnsmasq_backoff);
        self.dnsmasq_backoff = (self.dnsmasq_backoff * 2).min(DNSMASQ_BACKOFF_MAX);
    }

    fn press(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.press_at = Some(now + PRESS_AGAIN);
        actions.push(Action::Powerdown);
    }

    fn escalate(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.forced = true;
        self.press_at = None;
        self.stage = Stage::Quitting;
        self.deadline = Some(now + GRACE);
        actions.push(Action::Quit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOP: Duration = Duration::from_secs(8);

    fn start() -> (Policy, Instant) {
        let t0 = Instant::now();
        (Policy::new(STOP, true, t0), t0)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn docker_stop_sigpwr_and_sigrtmin_3_press_the_power_button_and_wait() {
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGPWR, SIGRTMIN_PLUS_3] {
            let (mut p, t0) = start();
            assert_eq!(
                p.handle(Event::Signal(sig), t0),
                vec![Action::Powerdown],
                "{}",
                signal_name(sig)
            );
            assert_eq!(p.handle(Event::Tick, t0 + secs(0.5)), vec![]);
        }
        assert_eq!(signal_name(SIGRTMIN_PLUS_3), "SIGRTMIN+3");
        assert_eq!(signal_name(libc::SIGPWR), "SIGPWR");
    }

    #[test]
    fn the_button_is_pressed_every_second_until_a_press_could_overrun_the_deadline() {
        let (mut p, t0) = start();
        p.handle(Event::Signal(libc::SIGTERM), t0);
        let mut presses = vec![0.0];
        let mut t = t0;
        while let Some(next) = p.next_deadline() {
            if next >= t0 + STOP {
                break;
            }
            t = next;
            if p.handle(Event::Tick, t) == vec![Action::Powerdown] {
                presses.push((t - t0).as_secs_f64());
            }
        }
        assert_eq!(presses, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        assert!(t + QMP_DEADLINE <= t0 + STOP);
        assert_eq!(p.next_deadline(), Some(t0 + STOP));
        assert_eq!(p.handle(Event::Tick, t0 + STOP), vec![Action::Quit]);
    }

    #[test]
    fn a_press_the_guest_acts_on_ends_the_pressing() {
        let (mut p, t0) = start();
        p.handle(Event::Signal(libc::SIGTERM), t0);
        assert_eq!(
            p.handle(Event::QemuExited(Exit::Code(0)), t0 + secs(2.5)),
            vec![Action::StopDnsmasq { kill: false }]
        );
        assert_eq!(p.next_deadline(), Some(t0 + secs(2.5) + DNSMASQ_STOP_GRACE));
        assert_eq!(
            p.handle(Event::DnsmasqExited(Exit::Signal(15)), t0 + secs(2.6)),
            vec![Action::Exit(0)]
        );
    }

    #[test]
    fn a_guest_that_ignores_the_button_is_quit_then_killed() {
        let (mut p, t0) = start();
        p.handle(Event::Signal(libc::SIGTERM), t0);
        assert_eq!(p.handle(Event::Tick, t0 + STOP), vec![Action::Quit]);
        assert_eq!(
            p.handle(Event::Tick, t0 + STOP + GRACE),
            vec![Action::KillQemu]
        );
        // The forced stop is reported as a kill, whatever QEMU's own status.
        assert_eq!(
            p.handle(Event::QemuExited(Exit::Code(0)), t0 + STOP + GRACE),
            vec![Action::StopDnsmasq { kill: false }]
        );
        assert_eq!(
            p.handle(Event::DnsmasqExited(Exit::Code(0)), t0 + STOP + GRACE),
            vec![Action::Exit(137)]
        );
    }

    #[test]
    fn a_power_button_qemu_could_not_take_is_pressed_again_soon() {
        let (mut p, t0) = start();
        p.handle(Event::Signal(libc::SIGTERM), t0);
        assert_eq!(p.handle(Event::PowerdownFailed, t0), vec![]);
        assert_eq!(p.next_deadline(), Some(t0 + POWERDOWN_RETRY));
        let t1 = t0 + POWERDOWN_RETRY;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::Powerdown]);
        // Taken now: the next press comes a second later.
        assert_eq!(p.next_deadline(), Some(t1 + PRESS_AGAIN));
    }

    /// The stop budget, in the worst world: every QMP exchange times out after the full
    /// QMP_DEADLINE, the guest ignores every press, QEMU ignores `quit` and dies 0.1 s after
    /// SIGKILL, dnsmasq ignores SIGTERM. vminit still exits within Docker's 10 s stop timeout,
    /// leaving more than 0.3 s to restore the network.
    #[test]
    fn the_worst_stop_ends_within_dockers_ten_seconds() {
        let (mut p, t0) = start();
        let mut now = t0;
        let mut qemu_dies_at = None;
        let mut queue = vec![Event::Signal(libc::SIGTERM)];
        let exit_at = 'run: loop {
            if queue.is_empty() {
                let next = [p.next_deadline(), qemu_dies_at]
                    .into_iter()
                    .flatten()
                    .min();
                now = now.max(next.expect("the policy always has something to wait for"));
                if qemu_dies_at.is_some_and(|t| now >= t) {
                    qemu_dies_at = None;
                    queue.push(Event::QemuExited(Exit::Signal(9)));
                } else {
                    queue.push(Event::Tick);
                }
            }
            let event = queue.remove(0);
            for action in p.handle(event, now) {
                match action {
                    Action::Powerdown => {
                        now += QMP_DEADLINE;
                        queue.push(Event::PowerdownFailed);
                    }
                    Action::Quit => now += QMP_DEADLINE,
                    Action::KillQemu => qemu_dies_at = Some(now + secs(0.1)),
                    Action::StopDnsmasq { kill: true } => {
                        queue.push(Event::DnsmasqExited(Exit::Signal(9)))
                    }
                    Action::Exit(code) => {
                        assert_eq!(code, 137);
                        break 'run now;
                    }
                    _ => {}
                }
            }
        };
        let took = exit_at - t0;
        assert!(took <= secs(9.5), "{took:?}");
        assert!(took >= STOP + GRACE, "{took:?}");
    }

    #[test]
    fn a_stop_timeout_too_short_for_one_press_stops_qemu_at_once() {
        for stop in [Duration::ZERO, QMP_DEADLINE] {
            let t0 = Instant::now();
            let mut p = Policy::new(stop, false, t0);
            assert_eq!(
                p.handle(Event::Signal(libc::SIGTERM), t0),
                vec![Action::Quit]
            );
            assert_eq!(p.handle(Event::Tick, t0 + GRACE), vec![Action::KillQemu]);
        }
    }

    #[test]
    fn a_second_stop_request_escalates_at_once() {
        for second in [libc::SIGTERM, libc::SIGINT, libc::SIGPWR] {
            let (mut p, t0) = start();
            p.handle(Event::Signal(libc::SIGINT), t0);
            assert_eq!(p.handle(Event::Signal(second), t0), vec![Action::Quit]);
        }
    }

    #[test]
    fn sigquit_quits_without_the_power_button() {
        let (mut p, t0) = start();
        assert_eq!(
            p.handle(Event::Signal(libc::SIGQUIT), t0),
            vec![Action::Quit]
        );
    }

    #[test]
    fn other_signals_are_ignored() {
        let (mut p, t0) = start();
        for s in [
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
            libc::SIGPIPE,
            SIGRTMIN_PLUS_3 + 1,
        ] {
            assert_eq!(p.handle(Event::Signal(s), t0), vec![], "{}", signal_name(s));
        }
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn qemu_exiting_on_its_own_passes_its_status_through() {
        for (exit, status) in [
            (Exit::Code(0), 0),
            (Exit::Code(1), 1),
            (Exit::Code(255), 255),
            (Exit::Signal(9), 137),
            (Exit::Signal(6), 134),
        ] {
            let mut p = Policy::new(STOP, false, Instant::now());
            assert_eq!(
                p.handle(Event::QemuExited(exit), Instant::now()),
                vec![Action::Exit(status)]
            );
        }
    }

    #[test]
    fn a_dead_dnsmasq_is_restarted_with_growing_backoff() {
        let (mut p, t0) = start();
        assert_eq!(p.handle(Event::DnsmasqExited(Exit::Code(1)), t0), vec![]);
        assert_eq!(p.next_deadline(), Some(t0 + DNSMASQ_BACKOFF_MIN));
        let t1 = t0 + DNSMASQ_BACKOFF_MIN;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::StartDnsmasq]);
        assert_eq!(p.handle(Event::DnsmasqExited(Exit::Code(1)), t1), vec![]);
        assert_eq!(p.next_deadline(), Some(t1 + DNSMASQ_BACKOFF_MIN * 2));
    }

    #[test]
    fn a_restarted_dnsmasq_is_watched_until_it_serves_without_blocking() {
        let (mut p, t0) = start();
        p.handle(Event::DnsmasqExited(Exit::Code(1)), t0);
        let t1 = t0 + DNSMASQ_BACKOFF_MIN;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::StartDnsmasq]);
        assert_eq!(p.next_deadline(), Some(t1 + DNSMASQ_POLL));
        let t2 = t1 + DNSMASQ_POLL;
        assert_eq!(p.handle(Event::Tick, t2), vec![Action::CheckDnsmasq]);
        assert_eq!(p.handle(Event::DnsmasqReady, t2), vec![]);
        assert_eq!(p.next_deadline(), None, "nothing more to watch");
        // A signal meanwhile is handled at once, not after a wait for dnsmasq.
        assert_eq!(
            p.handle(Event::Signal(libc::SIGTERM), t2),
            vec![Action::Powerdown]
        );
    }

    #[test]
    fn a_restarted_dnsmasq_that_never_serves_is_killed_and_restarted_later() {
        let (mut p, t0) = start();
        p.dnsmasq_failed(t0);
        let t1 = t0 + DNSMASQ_BACKOFF_MIN;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::StartDnsmasq]);
        let t = loop {
            let t = p.next_deadline().unwrap();
            match p.handle(Event::Tick, t).as_slice() {
                [Action::CheckDnsmasq] => continue,
                [Action::AbandonDnsmasq] => break t,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(t, t1 + DNSMASQ_START_TIMEOUT);
        // It is reaped like any dead dnsmasq, and restarted after the grown backoff.
        assert_eq!(p.handle(Event::DnsmasqExited(Exit::Signal(9)), t), vec![]);
        assert_eq!(p.next_deadline(), Some(t + DNSMASQ_BACKOFF_MIN * 2));
    }

    #[test]
    fn dnsmasq_that_ignores_sigterm_at_exit_is_killed() {
        let (mut p, t0) = start();
        p.handle(Event::QemuExited(Exit::Code(0)), t0);
        assert_eq!(
            p.handle(Event::Tick, t0 + DNSMASQ_STOP_GRACE),
            vec![Action::StopDnsmasq { kill: true }]
        );
        assert_eq!(
            p.handle(
                Event::DnsmasqExited(Exit::Signal(9)),
                t0 + DNSMASQ_STOP_GRACE
            ),
            vec![Action::Exit(0)]
        );
    }

    #[test]
    fn no_restart_of_dnsmasq_once_qemu_is_gone() {
        let (mut p, t0) = start();
        p.handle(Event::DnsmasqExited(Exit::Code(1)), t0);
        assert_eq!(
            p.handle(Event::QemuExited(Exit::Code(0)), t0),
            vec![Action::Exit(0)]
        );
        assert_eq!(p.next_deadline(), None);
    }
    #[test]
    fn network_changes_are_followed_once_they_settle() {
        let (mut p, t0) = start();
        assert_eq!(p.handle(Event::NetworkChanged, t0), vec![]);
        assert_eq!(p.next_deadline(), Some(t0 + SETTLE));
        // More changes of the same burst do not push it further away.
        assert_eq!(p.handle(Event::NetworkChanged, t0 + SETTLE / 2), vec![]);
        assert_eq!(p.next_deadline(), Some(t0 + SETTLE));
        assert_eq!(p.handle(Event::Tick, t0 + SETTLE), vec![Action::Reconcile]);
        assert_eq!(p.handle(Event::Tick, t0 + SETTLE * 2), vec![]);
    }

    #[test]
    fn a_new_dnsmasq_configuration_restarts_dnsmasq_at_once() {
        let (mut p, t0) = start();
        let reconciled = Event::Reconciled {
            again_in: None,
            dnsmasq_changed: true,
            plugs_pending: false,
        };
        assert_eq!(
            p.handle(reconciled, t0),
            vec![Action::StopDnsmasq { kill: false }]
        );
        // No backoff: this exit was asked for.
        assert_eq!(
            p.handle(Event::DnsmasqExited(Exit::Signal(15)), t0),
            vec![Action::StartDnsmasq]
        );
    }

    #[test]
    fn a_nic_waiting_for_its_address_is_looked_at_again() {
        let (mut p, t0) = start();
        let later = Duration::from_millis(100);
        let reconciled = Event::Reconciled {
            again_in: Some(later),
            dnsmasq_changed: false,
            plugs_pending: false,
        };
        assert_eq!(p.handle(reconciled, t0), vec![]);
        assert_eq!(p.handle(Event::Tick, t0 + later), vec![Action::Reconcile]);
    }

    #[test]
    fn nothing_is_plugged_once_the_guest_is_stopping() {
        let (mut p, t0) = start();
        p.handle(Event::NetworkChanged, t0);
        p.handle(Event::Signal(libc::SIGTERM), t0);
        assert_eq!(p.handle(Event::Tick, t0 + SETTLE), vec![]);
        assert_eq!(p.handle(Event::NetworkChanged, t0 + SETTLE), vec![]);
        for ms in [200, 400, 2000] {
            let actions = p.handle(Event::Tick, t0 + Duration::from_millis(ms));
            assert!(!actions.contains(&Action::Reconcile), "{actions:?}");
        }
    }

    fn plugs(dnsmasq_changed: bool) -> Event {
        Event::Reconciled {
            again_in: None,
            dnsmasq_changed,
            plugs_pending: true,
        }
    }

    #[test]
    fn new_nics_are_plugged_in_once_the_restarted_dnsmasq_serves_them() {
        let (mut p, t0) = start();
        assert_eq!(
            p.handle(plugs(true), t0),
            vec![Action::StopDnsmasq { kill: false }]
        );
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(
            p.handle(Event::DnsmasqExited(Exit::Signal(15)), t1),
            vec![Action::StartDnsmasq]
        );
        // Not before it serves.
        let t2 = t1 + DNSMASQ_POLL;
        assert_eq!(p.handle(Event::Tick, t2), vec![Action::CheckDnsmasq]);
        assert_eq!(p.handle(Event::DnsmasqReady, t2), vec![Action::Plug]);
        assert_eq!(p.handle(Event::Tick, t2 + PLUG_WAIT), vec![]);
    }

    #[test]
    fn new_nics_are_plugged_in_without_waiting_when_dnsmasq_has_nothing_new() {
        let (mut p, t0) = start();
        assert_eq!(p.handle(plugs(false), t0), vec![Action::Plug]);
    }

    #[test]
    fn a_dnsmasq_that_does_not_come_up_does_not_hold_new_nics_back() {
        let (mut p, t0) = start();
        p.handle(plugs(true), t0);
        p.handle(Event::DnsmasqExited(Exit::Signal(15)), t0);
        let mut t = t0;
        while t < t0 + PLUG_WAIT {
            t += DNSMASQ_POLL;
            let actions = p.handle(Event::Tick, t);
            assert_eq!(
                actions.contains(&Action::Plug),
                t >= t0 + PLUG_WAIT,
                "{actions:?} at {:?}",
                t - t0
            );
        }
    }

    #[test]
    fn the_pid_file_of_the_dnsmasq_being_replaced_does_not_plug_new_nics() {
        let (mut p, t0) = start();
        // A dnsmasq restarted after a crash is still being waited for...
        p.handle(Event::DnsmasqExited(Exit::Code(1)), t0);
        let t1 = t0 + DNSMASQ_BACKOFF_MIN;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::StartDnsmasq]);
        // ...when new NICs change its configuration: no more checks of that one.
        assert_eq!(
            p.handle(plugs(true), t1),
            vec![Action::StopDnsmasq { kill: false }]
        );
        assert_eq!(p.handle(Event::Tick, t1 + DNSMASQ_POLL), vec![]);
    }

    #[test]
    fn nics_waiting_to_be_plugged_stay_out_once_the_guest_is_stopping() {
        let (mut p, t0) = start();
        p.handle(plugs(true), t0);
        p.handle(Event::Signal(libc::SIGTERM), t0);
        let actions = p.handle(Event::Tick, t0 + PLUG_WAIT);
        assert!(!actions.contains(&Action::Plug), "{actions:?}");
    }
}
