//! One helper child that vminit supervises beside QEMU (dnsmasq, user mode's passts): restarted with
//! backoff when it dies, watched until it serves, restarted at once for a new
//! configuration, stopped once QEMU is gone.

use std::fmt;
use std::time::{Duration, Instant};

use super::Action;

/// A helper child, by what it is for. A new helper is a new variant here, an instance in
/// the policy (`Policy::new`), and its start and readiness check in `supervise::Effects`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Child {
    /// The guest's DHCP server and DNS forwarder.
    Dnsmasq,
    /// User mode: the passt of the guest NIC in this slot (its netdev, `Slot`'s number).
    Passt(usize),
}

impl fmt::Display for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Child::Dnsmasq => f.write_str("dnsmasq"),
            Child::Passt(slot) => write!(f, "passt of guest NIC {slot}"),
        }
    }
}

/// How long a helper gets to exit on SIGTERM before SIGKILL, once QEMU is gone.
pub const STOP_GRACE: Duration = Duration::from_millis(500);
/// How long a restarted helper gets to serve before it is killed and restarted.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How often to look whether a restarted helper serves.
pub(super) const POLL: Duration = Duration::from_millis(50);
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A helper that ran this long without dying resets the backoff.
pub(super) const STABLE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Serving, since it was started at `since` (at vminit's start it was waited for).
    Running { since: Instant },
    /// Dead, or its start failed: start it at `at`.
    RestartPending { at: Instant },
    /// Started again at `since`, not serving yet: look at `check_at`, give up at
    /// `give_up_at`.
    Starting {
        since: Instant,
        check_at: Instant,
        give_up_at: Instant,
    },
    /// Started at `since`, did not serve in time and was killed: its exit restarts it.
    GivenUp { since: Instant },
    /// Sent SIGTERM to be started again at once with a new configuration.
    Reconfiguring,
    /// Sent SIGTERM for good (QEMU is gone); SIGKILL at `kill_at`, if not sent yet.
    Stopping { kill_at: Option<Instant> },
    /// Gone for good.
    Stopped,
}

/// One supervised helper child: its state, its deadlines, its backoff.
#[derive(Debug)]
pub struct Helper {
    child: Child,
    state: State,
    /// The wait before the next restart after a crash.
    backoff: Duration,
}

impl Helper {
    /// A helper started (and waited for) at `now`.
    pub fn running(child: Child, now: Instant) -> Helper {
        Helper {
            child,
            state: State::Running { since: now },
            backoff: BACKOFF_MIN,
        }
    }

    pub fn child(&self) -> Child {
        self.child
    }

    /// Whether it is gone for good.
    pub fn stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// Whether vminit asked it to exit (SIGTERM), so its exit is no crash.
    pub fn stopping(&self) -> bool {
        matches!(self.state, State::Reconfiguring | State::Stopping { .. })
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::RestartPending { at } => Some(at),
            State::Starting {
                check_at,
                give_up_at,
                ..
            } => Some(check_at.min(give_up_at)),
            State::Stopping { kill_at } => kill_at,
            _ => None,
        }
    }

    /// It exited. A crash restarts it after the backoff (reset by a stable run); an exit
    /// vminit asked for restarts it at once while the guest runs (`guest_running`), and
    /// ends it otherwise.
    pub fn exited(&mut self, now: Instant, guest_running: bool) {
        match self.state {
            State::Running { since } | State::Starting { since, .. } | State::GivenUp { since } => {
                if now.duration_since(since) >= STABLE {
                    self.backoff = BACKOFF_MIN;
                }
                self.restart_later(now);
            }
            // Asked for: no backoff.
            State::Reconfiguring if guest_running => self.state = State::RestartPending { at: now },
            State::Reconfiguring | State::Stopping { .. } => self.state = State::Stopped,
            State::RestartPending { .. } | State::Stopped => {}
        }
    }

    /// Its start failed: try again later, as if it had exited at once.
    pub fn start_failed(&mut self, now: Instant) {
        if !matches!(self.state, State::Stopping { .. } | State::Stopped) {
            self.restart_later(now);
        }
    }

    /// It serves; whether it was being waited for (a late answer about one that is being
    /// replaced says nothing about its successor).
    pub fn ready(&mut self) -> bool {
        match self.state {
            State::Starting { since, .. } => {
                self.state = State::Running { since };
                true
            }
            _ => false,
        }
    }

    /// Its configuration changed: a running one is stopped to be started again at once, a
    /// dead one is started now; one stopped for good stays stopped.
    pub fn reconfigure(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.state {
            State::Running { .. }
            | State::Starting { .. }
            | State::GivenUp { .. }
            | State::Reconfiguring => {
                self.state = State::Reconfiguring;
                actions.push(self.sigterm());
            }
            State::RestartPending { .. } => self.state = State::RestartPending { at: now },
            State::Stopping { .. } | State::Stopped => {}
        }
    }

    /// Its files changed, and it reads them again when told: a serving one is told
    /// (`Action::Reload`); one not serving yet may have read them already, and is started
    /// again instead; one to be started reads them then. Whether the reload alone does it
    /// (false: wait for it to serve).
    pub fn reload(&mut self, now: Instant, actions: &mut Vec<Action>) -> bool {
        match self.state {
            State::Running { .. } => {
                actions.push(Action::Reload(self.child));
                true
            }
            State::Starting { .. } | State::GivenUp { .. } => {
                self.reconfigure(now, actions);
                false
            }
            State::RestartPending { .. } | State::Reconfiguring => false,
            State::Stopping { .. } | State::Stopped => true,
        }
    }

    /// QEMU is gone: SIGTERM, SIGKILL after `STOP_GRACE`; no more restarts.
    pub fn stop(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.state {
            State::Running { .. }
            | State::Starting { .. }
            | State::GivenUp { .. }
            | State::Reconfiguring => {
                self.state = State::Stopping {
                    kill_at: Some(now + STOP_GRACE),
                };
                actions.push(self.sigterm());
            }
            State::RestartPending { .. } => self.state = State::Stopped,
            State::Stopping { .. } | State::Stopped => {}
        }
    }

    /// Acts on the deadline passed by `now`: a restart, a readiness check or giving up on
    /// a start, the SIGKILL of a stop.
    pub fn tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.state {
            State::RestartPending { at } if now >= at => {
                self.state = State::Starting {
                    since: now,
                    check_at: now + POLL,
                    give_up_at: now + START_TIMEOUT,
                };
                actions.push(Action::Start(self.child));
            }
            State::Starting {
                since, give_up_at, ..
            } if now >= give_up_at => {
                self.state = State::GivenUp { since };
                actions.push(Action::Abandon(self.child));
            }
            State::Starting {
                since,
                check_at,
                give_up_at,
            } if now >= check_at => {
                self.state = State::Starting {
                    since,
                    check_at: now + POLL,
                    give_up_at,
                };
                actions.push(Action::Check(self.child));
            }
            State::Stopping { kill_at: Some(t) } if now >= t => {
                self.state = State::Stopping { kill_at: None };
                actions.push(Action::Signal {
                    child: self.child,
                    kill: true,
                });
            }
            _ => {}
        }
    }

    fn restart_later(&mut self, now: Instant) {
        self.state = State::RestartPending {
            at: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn sigterm(&self) -> Action {
        Action::Signal {
            child: self.child,
            kill: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Child = Child::Dnsmasq;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn tick(h: &mut Helper, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        h.tick(now, &mut actions);
        actions
    }

    /// Crashes it at `now` and ticks at its restart; returns when that was.
    fn crash_and_restart(h: &mut Helper, now: Instant) -> Instant {
        h.exited(now, true);
        let at = h.next_deadline().expect("a restart");
        assert_eq!(tick(h, at), vec![Action::Start(D)]);
        at
    }

    #[test]
    fn the_backoff_doubles_from_a_quarter_second_up_to_eight_seconds() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        let mut waits = Vec::new();
        let mut t = t0;
        for _ in 0..8 {
            let at = crash_and_restart(&mut h, t);
            waits.push((at - t).as_secs_f64());
            t = at;
        }
        assert_eq!(waits, vec![0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
    }

    #[test]
    fn a_run_of_thirty_seconds_resets_the_backoff() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        let t1 = crash_and_restart(&mut h, t0);
        let t2 = crash_and_restart(&mut h, t1);
        assert!(h.ready());
        // Shorter than STABLE: the backoff keeps growing.
        let t3 = crash_and_restart(&mut h, t2 + STABLE - secs(0.1));
        assert_eq!(t3 - (t2 + STABLE - secs(0.1)), BACKOFF_MIN * 4);
        // STABLE or longer: back to the minimum.
        h.exited(t3 + STABLE, true);
        assert_eq!(h.next_deadline(), Some(t3 + STABLE + BACKOFF_MIN));
    }

    #[test]
    fn a_started_helper_is_checked_every_50_ms_and_given_up_after_5_s() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        let t1 = crash_and_restart(&mut h, t0);
        let mut checks = 0;
        let given_up = loop {
            let t = h.next_deadline().expect("watched");
            match tick(&mut h, t).as_slice() {
                [Action::Check(D)] => checks += 1,
                [Action::Abandon(D)] => break t,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(given_up, t1 + START_TIMEOUT);
        assert_eq!(checks, 99);
        // Killed, not restarted until its exit is reaped.
        assert_eq!(h.next_deadline(), None);
        assert!(!h.stopping(), "its exit is a crash");
        h.exited(given_up, true);
        assert_eq!(h.next_deadline(), Some(given_up + BACKOFF_MIN * 2));
    }

    #[test]
    fn a_helper_that_serves_is_no_longer_watched_and_a_late_answer_is_ignored() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        assert!(!h.ready(), "not waited for");
        crash_and_restart(&mut h, t0);
        assert!(h.ready());
        assert_eq!(h.next_deadline(), None);
        assert!(!h.ready(), "said once");
    }

    #[test]
    fn a_failed_start_is_retried_after_the_grown_backoff() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        let t1 = crash_and_restart(&mut h, t0);
        h.start_failed(t1);
        assert_eq!(h.next_deadline(), Some(t1 + BACKOFF_MIN * 2));
    }

    #[test]
    fn a_new_configuration_stops_a_running_helper_and_restarts_it_without_backoff() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        // A grown backoff is not applied to a restart that was asked for.
        let t1 = crash_and_restart(&mut h, t0);
        let mut actions = Vec::new();
        h.reconfigure(t1, &mut actions);
        assert_eq!(
            actions,
            vec![Action::Signal {
                child: D,
                kill: false
            }]
        );
        assert!(h.stopping());
        assert_eq!(h.next_deadline(), None, "no readiness check of the old one");
        h.exited(t1, true);
        assert_eq!(tick(&mut h, t1), vec![Action::Start(D)]);
    }

    #[test]
    fn a_new_configuration_starts_a_dead_helper_now() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        h.exited(t0, true);
        let mut actions = Vec::new();
        h.reconfigure(t0, &mut actions);
        assert_eq!(actions, vec![]);
        assert_eq!(tick(&mut h, t0), vec![Action::Start(D)]);
    }

    #[test]
    fn a_helper_stopped_for_a_new_configuration_stays_down_once_the_guest_stops() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        h.reconfigure(t0, &mut Vec::new());
        h.exited(t0, false);
        assert!(h.stopped());
        assert_eq!(h.next_deadline(), None);
    }

    #[test]
    fn stopping_sends_sigterm_then_sigkill_after_the_grace() {
        for start in ["running", "starting", "given up", "reconfiguring"] {
            let t0 = Instant::now();
            let mut h = Helper::running(D, t0);
            match start {
                "running" => {}
                "starting" => {
                    crash_and_restart(&mut h, t0);
                }
                "given up" => {
                    let t1 = crash_and_restart(&mut h, t0);
                    tick(&mut h, t1 + START_TIMEOUT);
                }
                _ => h.reconfigure(t0, &mut Vec::new()),
            }
            let t = t0 + secs(10.0);
            let mut actions = Vec::new();
            h.stop(t, &mut actions);
            assert_eq!(
                actions,
                vec![Action::Signal {
                    child: D,
                    kill: false
                }],
                "{start}"
            );
            assert!(h.stopping());
            assert_eq!(h.next_deadline(), Some(t + STOP_GRACE), "{start}");
            assert_eq!(tick(&mut h, t + STOP_GRACE / 2), vec![], "{start}");
            assert_eq!(
                tick(&mut h, t + STOP_GRACE),
                vec![Action::Signal {
                    child: D,
                    kill: true
                }],
                "{start}"
            );
            assert_eq!(h.next_deadline(), None);
            h.exited(t + STOP_GRACE, false);
            assert!(h.stopped(), "{start}");
        }
    }

    #[test]
    fn a_helper_waiting_for_its_restart_is_not_restarted_once_stopped() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        h.exited(t0, true);
        let mut actions = Vec::new();
        h.stop(t0, &mut actions);
        assert_eq!(actions, vec![]);
        assert!(h.stopped());
        assert_eq!(tick(&mut h, t0 + BACKOFF_MAX), vec![]);
        h.start_failed(t0);
        h.reconfigure(t0, &mut actions);
        assert!(h.stopped(), "nothing starts it again");
    }

    #[test]
    fn a_crash_while_the_guest_powers_down_is_still_restarted() {
        let t0 = Instant::now();
        let mut h = Helper::running(D, t0);
        h.exited(t0, false);
        assert_eq!(tick(&mut h, t0 + BACKOFF_MIN), vec![Action::Start(D)]);
    }
}
