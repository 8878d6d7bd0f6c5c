//! The supervisor's decisions as a pure state machine: what to do about each signal,
//! child exit and deadline while the guest runs (no I/O; time is passed in).
//!
//! `docker stop` becomes an ACPI power-button press, then, after `STOP_TIMEOUT`, QMP
//! `quit`, then SIGKILL; a dead dnsmasq is restarted with backoff; the exit status is
//! QEMU's, or 137 when vminit had to stop it.

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

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Signal(Signal),
    QemuExited(Exit),
    DnsmasqExited(Exit),
    /// The power button could not be pressed (QMP not answering yet, e.g. `docker stop`
    /// right after the start, while QEMU still sets up its socket).
    PowerdownFailed,
    /// The kernel reported a change to the container's links, addresses or routes.
    NetworkChanged,
    /// The guest's NICs were brought in line with the container's; look again after this
    /// long (a new NIC is waiting for its address), if given.
    Reconciled {
        again_in: Option<Duration>,
        /// dnsmasq's configuration changed: it must be restarted to serve it.
        dnsmasq_changed: bool,
    },
    /// Time passed (a deadline may have been reached).
    Tick,
}

/// What to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Press the guest's ACPI power button (QMP `system_powerdown`).
    Powerdown,
    /// Ask QEMU to quit now (QMP `quit`), the guest's state is lost.
    Quit,
    /// SIGKILL QEMU.
    KillQemu,
    StartDnsmasq,
    /// SIGTERM dnsmasq (`true`: SIGKILL).
    StopDnsmasq {
        kill: bool,
    },
    /// Bring the guest's NICs in line with the container's (hot-plug, hot-unplug).
    Reconcile,
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

/// How long QEMU gets to act on `quit`, and dnsmasq on SIGTERM, before SIGKILL.
pub const GRACE: Duration = Duration::from_millis(800);
/// How soon to press the power button again when QMP did not answer.
const POWERDOWN_RETRY: Duration = Duration::from_millis(250);
const DNSMASQ_BACKOFF_MIN: Duration = Duration::from_millis(250);
const DNSMASQ_BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A dnsmasq that ran this long without dying resets the backoff.
const DNSMASQ_STABLE: Duration = Duration::from_secs(30);
/// How long to let a burst of network changes settle before following them: Docker adds a
/// NIC's link, MAC, address and routes in a few quick steps.
pub const SETTLE: Duration = Duration::from_millis(150);

/// The supervisor's decisions, as a pure state machine over events and time.
#[derive(Debug)]
pub struct Policy {
    stage: Stage,
    stop_timeout: Duration,
    deadline: Option<Instant>,
    /// When to try the power button again, while it could not be pressed.
    powerdown_retry: Option<Instant>,
    forced: bool,
    dnsmasq_running: bool,
    dnsmasq_started: Option<Instant>,
    dnsmasq_restart_at: Option<Instant>,
    dnsmasq_backoff: Duration,
    /// When to bring the guest's NICs in line with the container's.
    reconcile_at: Option<Instant>,
    /// dnsmasq is being stopped to be started again at once with a new configuration.
    dnsmasq_reconfiguring: bool,
}

impl Policy {
    /// A policy for a running QEMU, with dnsmasq running when `dnsmasq` is true.
    pub fn new(stop_timeout: Duration, dnsmasq: bool, now: Instant) -> Policy {
        Policy {
            stage: Stage::Running,
            stop_timeout,
            deadline: None,
            powerdown_retry: None,
            forced: false,
            dnsmasq_running: dnsmasq,
            dnsmasq_started: dnsmasq.then_some(now),
            dnsmasq_restart_at: None,
            dnsmasq_backoff: DNSMASQ_BACKOFF_MIN,
            reconcile_at: None,
            dnsmasq_reconfiguring: false,
        }
    }

    /// The next moment the policy wants a `Tick`, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.deadline,
            self.dnsmasq_restart_at,
            self.powerdown_retry,
            self.reconcile_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes in one event that happened at `now` and returns what to do about it, in order.
    ///
    /// Besides reacting to the event itself, every call also acts on the deadlines that have
    /// passed by `now` (the stop timeout, the grace after QMP `quit`, a pending power-button
    /// retry or dnsmasq restart); feed it `Event::Tick` when `next_deadline` is reached.
    /// The returned actions must be carried out in order; `Action::Exit` ends the run.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Signal(Signal::SIGTERM | Signal::SIGINT) => match self.stage {
                Stage::Running => {
                    self.stage = Stage::PoweringDown;
                    self.deadline = Some(now + self.stop_timeout);
                    actions.push(Action::Powerdown);
                }
                // A second request to stop means: now.
                Stage::PoweringDown => self.escalate(now, &mut actions),
                _ => {}
            },
            Event::Signal(Signal::SIGQUIT) => {
                if matches!(self.stage, Stage::Running | Stage::PoweringDown) {
                    self.escalate(now, &mut actions);
                }
            }
            Event::Signal(_) => {}
            Event::PowerdownFailed => {
                if self.stage == Stage::PoweringDown {
                    self.powerdown_retry = Some(now + POWERDOWN_RETRY);
                }
            }
            Event::QemuExited(exit) => {
                let status = if self.forced {
                    128 + Signal::SIGKILL as i32
                } else {
                    exit.status()
                };
                self.dnsmasq_restart_at = None;
                if self.dnsmasq_running {
                    self.stage = Stage::Exiting(status);
                    self.deadline = Some(now + GRACE);
                    actions.push(Action::StopDnsmasq { kill: false });
                } else {
                    self.stage = Stage::Exiting(status);
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
            } => {
                if let Some(wait) = again_in.filter(|_| self.stage == Stage::Running) {
                    let later = now + wait;
                    self.reconcile_at = Some(self.reconcile_at.map_or(later, |t| t.min(later)));
                }
                if dnsmasq_changed && self.stage == Stage::Running {
                    if self.dnsmasq_running {
                        self.dnsmasq_reconfiguring = true;
                        actions.push(Action::StopDnsmasq { kill: false });
                    } else {
                        // Not running (it died, a restart is pending): start it now.
                        self.dnsmasq_restart_at = Some(now);
                    }
                }
            }
            Event::DnsmasqExited(_) if self.dnsmasq_reconfiguring => {
                self.dnsmasq_reconfiguring = false;
                self.dnsmasq_running = false;
                if self.stage == Stage::Running {
                    self.dnsmasq_restart_at = Some(now);
                } else if let Stage::Exiting(status) = self.stage {
                    self.deadline = None;
                    actions.push(Action::Exit(status));
                }
            }
            Event::DnsmasqExited(_) => {
                self.dnsmasq_running = false;
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
                        self.dnsmasq_restart_at = Some(now + self.dnsmasq_backoff);
                        self.dnsmasq_backoff = (self.dnsmasq_backoff * 2).min(DNSMASQ_BACKOFF_MAX);
                    }
                }
            }
            Event::Tick => {}
        }
        if self.powerdown_retry.is_some_and(|t| now >= t) {
            self.powerdown_retry = None;
            if self.stage == Stage::PoweringDown {
                actions.push(Action::Powerdown);
            }
        }
        if self.reconcile_at.is_some_and(|t| now >= t) {
            self.reconcile_at = None;
            if self.stage == Stage::Running {
                actions.push(Action::Reconcile);
            }
        }
        if self.dnsmasq_restart_at.is_some_and(|t| now >= t) {
            self.dnsmasq_restart_at = None;
            self.dnsmasq_running = true;
            self.dnsmasq_started = Some(now);
            actions.push(Action::StartDnsmasq);
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
        self.dnsmasq_restart_at = Some(now + self.dnsmasq_backoff);
        self.dnsmasq_backoff = (self.dnsmasq_backoff * 2).min(DNSMASQ_BACKOFF_MAX);
    }

    fn escalate(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.forced = true;
        self.powerdown_retry = None;
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

    #[test]
    fn docker_stop_presses_the_power_button_and_waits() {
        let (mut p, t0) = start();
        assert_eq!(
            p.handle(Event::Signal(Signal::SIGTERM), t0),
            vec![Action::Powerdown]
        );
        assert_eq!(p.next_deadline(), Some(t0 + STOP));
        assert_eq!(p.handle(Event::Tick, t0 + STOP / 2), vec![]);
    }

    #[test]
    fn a_clean_poweroff_stops_dnsmasq_then_exits_with_qemus_status() {
        let (mut p, t0) = start();
        p.handle(Event::Signal(Signal::SIGTERM), t0);
        assert_eq!(
            p.handle(
                Event::QemuExited(Exit::Code(0)),
                t0 + Duration::from_secs(2)
            ),
            vec![Action::StopDnsmasq { kill: false }]
        );
        assert_eq!(
            p.handle(
                Event::DnsmasqExited(Exit::Signal(15)),
                t0 + Duration::from_secs(2)
            ),
            vec![Action::Exit(0)]
        );
    }

    #[test]
    fn a_guest_that_ignores_the_button_is_quit_then_killed() {
        let (mut p, t0) = start();
        p.handle(Event::Signal(Signal::SIGTERM), t0);
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
    fn a_power_button_qemu_could_not_take_is_pressed_again_until_the_deadline() {
        let (mut p, t0) = start();
        p.handle(Event::Signal(Signal::SIGTERM), t0);
        assert_eq!(p.handle(Event::PowerdownFailed, t0), vec![]);
        assert_eq!(p.next_deadline(), Some(t0 + POWERDOWN_RETRY));
        let t1 = t0 + POWERDOWN_RETRY;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::Powerdown]);
        // Pressed now: no more retries, the stop deadline stays where it was.
        assert_eq!(p.handle(Event::Tick, t1 + POWERDOWN_RETRY), vec![]);
        assert_eq!(p.next_deadline(), Some(t0 + STOP));
    }

    #[test]
    fn a_second_sigterm_or_sigint_escalates_at_once() {
        for second in [Signal::SIGTERM, Signal::SIGINT] {
            let (mut p, t0) = start();
            p.handle(Event::Signal(Signal::SIGINT), t0);
            assert_eq!(p.handle(Event::Signal(second), t0), vec![Action::Quit]);
        }
    }

    #[test]
    fn sigquit_quits_without_the_power_button() {
        let (mut p, t0) = start();
        assert_eq!(
            p.handle(Event::Signal(Signal::SIGQUIT), t0),
            vec![Action::Quit]
        );
    }

    #[test]
    fn other_signals_are_ignored() {
        let (mut p, t0) = start();
        for s in [
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
            Signal::SIGPIPE,
        ] {
            assert_eq!(p.handle(Event::Signal(s), t0), vec![], "{s}");
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
    fn dnsmasq_that_ignores_sigterm_at_exit_is_killed() {
        let (mut p, t0) = start();
        p.handle(Event::QemuExited(Exit::Code(0)), t0);
        assert_eq!(
            p.handle(Event::Tick, t0 + GRACE),
            vec![Action::StopDnsmasq { kill: true }]
        );
        assert_eq!(
            p.handle(Event::DnsmasqExited(Exit::Signal(9)), t0 + GRACE),
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
        };
        assert_eq!(p.handle(reconciled, t0), vec![]);
        assert_eq!(p.handle(Event::Tick, t0 + later), vec![Action::Reconcile]);
    }

    #[test]
    fn nothing_is_plugged_once_the_guest_is_stopping() {
        let (mut p, t0) = start();
        p.handle(Event::NetworkChanged, t0);
        p.handle(Event::Signal(Signal::SIGTERM), t0);
        assert_eq!(p.handle(Event::Tick, t0 + SETTLE), vec![]);
        assert_eq!(p.handle(Event::NetworkChanged, t0 + SETTLE), vec![]);
        assert_eq!(p.next_deadline(), Some(t0 + STOP));
    }
}
