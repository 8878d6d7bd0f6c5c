//! The stop sequence: `docker stop` becomes power-button presses until `STOP_TIMEOUT`, then
//! QMP `quit`, then SIGKILL; and the exit status, QEMU's or 137 when vminit had to stop it.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Action, Exit};

/// SIGRTMIN+3 as systemd, Docker and Podman number it (34 + 3: glibc's SIGRTMIN). musl,
/// which vminit is built with, reserves one more real-time signal, so its
/// `SIGRTMIN() + 3` would be a different signal.
pub const SIGRTMIN_PLUS_3: i32 = 37;

/// The longest one QMP exchange (connect, greeting, command, answer) may take.
pub const QMP_DEADLINE: Duration = Duration::from_millis(500);
/// How long QEMU gets to act on `quit` before SIGKILL (longer than `QMP_DEADLINE`, so the
/// `quit` exchange itself fits in it).
pub const GRACE: Duration = Duration::from_millis(800);
/// How often the power button is pressed while the guest has not acted: a guest that was
/// still booting at the first press (ACPI not listening yet) sees a later one.
pub(super) const PRESS_AGAIN: Duration = Duration::from_secs(1);
/// How soon to press the power button again when QMP did not take it.
pub(super) const POWERDOWN_RETRY: Duration = Duration::from_millis(250);

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The guest runs; nobody asked it to stop.
    Running,
    /// Power button pressed; waiting for the guest until `deadline`, pressing again at
    /// `press_at`.
    PoweringDown {
        deadline: Instant,
        press_at: Option<Instant>,
    },
    /// QMP quit sent; SIGKILL at `kill_at`.
    Quitting { kill_at: Instant },
    /// SIGKILL sent; waiting for the kernel.
    Killing,
    /// QEMU is gone; vminit exits with this status once its helpers are gone.
    Gone(i32),
    /// The exit status was handed out.
    Done,
}

/// QEMU's way from running to gone, with its deadlines.
#[derive(Debug)]
pub struct Stop {
    stop_timeout: Duration,
    stage: Stage,
    /// vminit stopped QEMU itself: the exit status says so (137).
    forced: bool,
}

impl Stop {
    pub fn new(stop_timeout: Duration) -> Stop {
        Stop {
            stop_timeout,
            stage: Stage::Running,
            forced: false,
        }
    }

    /// Whether the guest runs and nobody asked it to stop.
    pub fn guest_running(&self) -> bool {
        self.stage == Stage::Running
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self.stage {
            Stage::PoweringDown { deadline, press_at } => {
                Some(press_at.map_or(deadline, |p| p.min(deadline)))
            }
            Stage::Quitting { kill_at } => Some(kill_at),
            _ => None,
        }
    }

    /// A signal: a request to stop presses the power button (a second one, or SIGQUIT,
    /// stops QEMU now); any other is ignored.
    pub fn signal(&mut self, signo: i32, now: Instant, actions: &mut Vec<Action>) {
        if is_stop_request(signo) {
            match self.stage {
                // A STOP_TIMEOUT too short for one press means: stop it now.
                Stage::Running if self.stop_timeout <= QMP_DEADLINE => self.escalate(now, actions),
                Stage::Running => self.press(now + self.stop_timeout, now, actions),
                // A second request to stop means: now.
                Stage::PoweringDown { .. } => self.escalate(now, actions),
                _ => {}
            }
        } else if is_stop_now(signo)
            && matches!(self.stage, Stage::Running | Stage::PoweringDown { .. })
        {
            self.escalate(now, actions);
        }
    }

    /// QMP did not take the power button: press it again soon.
    pub fn powerdown_failed(&mut self, now: Instant) {
        if let Stage::PoweringDown { press_at, .. } = &mut self.stage {
            *press_at = Some(now + POWERDOWN_RETRY);
        }
    }

    /// QEMU exited: the exit status is its own, or 137 when vminit had to stop it.
    pub fn qemu_exited(&mut self, exit: Exit) {
        let status = if self.forced {
            128 + Signal::SIGKILL as i32
        } else {
            exit.status()
        };
        self.stage = Stage::Gone(status);
    }

    /// Acts on the deadlines passed by `now`: the next press, the stop timeout, the grace
    /// after `quit`.
    pub fn tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.stage {
            Stage::PoweringDown { deadline, press_at } => {
                if press_at.is_some_and(|t| now >= t) {
                    // No press that could end after the stop deadline: the escalation must
                    // not wait.
                    if now + QMP_DEADLINE < deadline {
                        self.press(deadline, now, actions);
                    } else {
                        self.stage = Stage::PoweringDown {
                            deadline,
                            press_at: None,
                        };
                    }
                }
                if now >= deadline {
                    self.escalate(now, actions);
                }
            }
            Stage::Quitting { kill_at } if now >= kill_at => {
                self.stage = Stage::Killing;
                actions.push(Action::KillQemu);
            }
            _ => {}
        }
    }

    /// Once QEMU is gone (and the helpers too, the caller's part): `Exit`, once.
    pub fn finish(&mut self) -> Option<Action> {
        let Stage::Gone(status) = self.stage else {
            return None;
        };
        self.stage = Stage::Done;
        Some(Action::Exit(status))
    }

    fn press(&mut self, deadline: Instant, now: Instant, actions: &mut Vec<Action>) {
        self.stage = Stage::PoweringDown {
            deadline,
            press_at: Some(now + PRESS_AGAIN),
        };
        actions.push(Action::Powerdown);
    }

    fn escalate(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.forced = true;
        self.stage = Stage::Quitting {
            kill_at: now + GRACE,
        };
        actions.push(Action::Quit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOP: Duration = Duration::from_secs(8);

    fn run(stop: &mut Stop, event: impl FnOnce(&mut Stop, &mut Vec<Action>)) -> Vec<Action> {
        let mut actions = Vec::new();
        event(stop, &mut actions);
        actions
    }

    fn signal(stop: &mut Stop, signo: i32, now: Instant) -> Vec<Action> {
        run(stop, |s, a| s.signal(signo, now, a))
    }

    fn tick(stop: &mut Stop, now: Instant) -> Vec<Action> {
        run(stop, |s, a| s.tick(now, a))
    }

    #[test]
    fn a_running_guest_has_no_deadline_and_ignores_other_signals() {
        let mut stop = Stop::new(STOP);
        let t0 = Instant::now();
        assert_eq!(signal(&mut stop, libc::SIGHUP, t0), vec![]);
        assert_eq!(tick(&mut stop, t0 + STOP * 2), vec![]);
        assert_eq!(stop.next_deadline(), None);
        assert!(stop.guest_running());
    }

    #[test]
    fn the_first_request_presses_and_sets_both_deadlines() {
        let mut stop = Stop::new(STOP);
        let t0 = Instant::now();
        assert_eq!(
            signal(&mut stop, libc::SIGTERM, t0),
            vec![Action::Powerdown]
        );
        assert!(!stop.guest_running());
        assert_eq!(stop.next_deadline(), Some(t0 + PRESS_AGAIN));
        // A press QMP did not take is retried sooner than the next regular press.
        stop.powerdown_failed(t0);
        assert_eq!(stop.next_deadline(), Some(t0 + POWERDOWN_RETRY));
    }

    #[test]
    fn no_press_starts_that_could_end_after_the_stop_deadline() {
        let mut stop = Stop::new(STOP);
        let t0 = Instant::now();
        signal(&mut stop, libc::SIGTERM, t0);
        // 7.6 s: a press would end at 8.1 s, after the deadline: none, and the next wake-up
        // is the deadline itself.
        let late = t0 + STOP - QMP_DEADLINE + Duration::from_millis(100);
        stop.powerdown_failed(late - POWERDOWN_RETRY);
        assert_eq!(tick(&mut stop, late), vec![]);
        assert_eq!(stop.next_deadline(), Some(t0 + STOP));
        assert_eq!(tick(&mut stop, t0 + STOP), vec![Action::Quit]);
    }

    #[test]
    fn quit_is_followed_by_sigkill_after_the_grace_and_nothing_after() {
        let mut stop = Stop::new(STOP);
        let t0 = Instant::now();
        assert_eq!(signal(&mut stop, libc::SIGQUIT, t0), vec![Action::Quit]);
        assert_eq!(stop.next_deadline(), Some(t0 + GRACE));
        assert_eq!(tick(&mut stop, t0 + GRACE / 2), vec![]);
        assert_eq!(tick(&mut stop, t0 + GRACE), vec![Action::KillQemu]);
        assert_eq!(stop.next_deadline(), None);
        // Signals while QEMU is being killed change nothing.
        assert_eq!(signal(&mut stop, libc::SIGTERM, t0 + GRACE), vec![]);
        assert_eq!(signal(&mut stop, libc::SIGQUIT, t0 + GRACE), vec![]);
    }

    #[test]
    fn the_exit_status_is_qemus_unless_vminit_stopped_it_and_is_handed_out_once() {
        let mut clean = Stop::new(STOP);
        clean.qemu_exited(Exit::Code(3));
        assert_eq!(clean.finish(), Some(Action::Exit(3)));
        assert_eq!(clean.finish(), None);

        let mut forced = Stop::new(STOP);
        signal(&mut forced, libc::SIGQUIT, Instant::now());
        forced.qemu_exited(Exit::Code(0));
        assert_eq!(forced.finish(), Some(Action::Exit(137)));
    }

    #[test]
    fn nothing_is_pressed_or_quit_once_qemu_is_gone() {
        let mut stop = Stop::new(STOP);
        let t0 = Instant::now();
        signal(&mut stop, libc::SIGTERM, t0);
        stop.qemu_exited(Exit::Code(0));
        assert_eq!(stop.next_deadline(), None);
        assert_eq!(tick(&mut stop, t0 + STOP), vec![]);
        assert_eq!(signal(&mut stop, libc::SIGTERM, t0 + STOP), vec![]);
        assert_eq!(stop.finish(), Some(Action::Exit(0)));
    }
}
