//! The supervisor's decisions, pure (no I/O; time is passed in): what to do about each
//! signal, child exit, network change and deadline while the guest runs.
//!
//! Three kinds of small machines, each with its own deadlines: the stop sequence (`stop`:
//! `docker stop` becomes an ACPI power-button press, pressed again every second until the
//! guest acts, then, after `STOP_TIMEOUT`, QMP `quit`, then SIGKILL; the exit status is
//! QEMU's, or 137 when vminit had to stop it), one per helper child (`helper`: dnsmasq,
//! restarted with backoff without waiting for it), and hot-plug (`hotplug`). `Policy`
//! routes each event to the machine it concerns and collects their actions.
//!
//! The stop budget: with every QMP exchange bounded by `QMP_DEADLINE` and no press started
//! unless it ends before the stop deadline, the worst case from the stop signal to vminit's
//! exit is `STOP_TIMEOUT + GRACE + QEMU's death + STOP_GRACE + restoring the network`:
//! 8 + 0.8 + ~0.1 + 0.5 + ~0.05 = about 9.5 s, inside Docker's 10 s. The helpers are
//! stopped together, so their number does not add to it.

pub mod helper;
pub mod hotplug;
pub mod stop;

use std::time::{Duration, Instant};

pub use helper::{Child, START_TIMEOUT, STOP_GRACE};
pub use stop::{QMP_DEADLINE, is_stop_now, is_stop_request, signal_name};

use helper::Helper;
use hotplug::Hotplug;
use stop::Stop;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A signal, by number (real-time signals have no `Signal` value).
    Signal(i32),
    QemuExited(Exit),
    ChildExited(Child, Exit),
    /// The power button could not be pressed (QMP not answering yet, e.g. `docker stop`
    /// right after the start, while QEMU still sets up its socket).
    PowerdownFailed,
    /// A helper could not be started again.
    StartFailed(Child),
    /// A restarted helper serves (dnsmasq: its pid file is written).
    Ready(Child),
    /// The kernel reported a change to the container's links, addresses or routes.
    NetworkChanged,
    /// The guest's NICs were brought in line with the container's; look again after this
    /// long (a new NIC is waiting for its address), if given.
    Reconciled {
        again_in: Option<Duration>,
        /// The helpers whose configuration changed: each must be restarted to serve it.
        reconfigured: Vec<Child>,
        /// The helpers that read their changed files again when told (dnsmasq: SIGHUP).
        reloaded: Vec<Child>,
        /// New NICs are taken over and wait to be plugged into the guest: once the helpers
        /// reconfigured for them serve, so that the guest's first DHCP request is answered.
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
    /// Spawn the helper again; do not wait for it.
    Start(Child),
    /// Look whether the restarted helper serves yet (answer with `Event::Ready`).
    Check(Child),
    /// SIGKILL a restarted helper that did not come up in time; its exit restarts it.
    Abandon(Child),
    /// Tell the helper to read its files again (dnsmasq: SIGHUP).
    Reload(Child),
    /// SIGTERM the helper (`kill`: SIGKILL).
    Signal {
        child: Child,
        kill: bool,
    },
    /// Bring the guest's NICs in line with the container's (hot-plug, hot-unplug).
    Reconcile,
    /// Plug the NICs taken over by the last reconciliations into the guest.
    Plug,
    Exit(i32),
}

/// The supervisor's decisions: the stop sequence, one machine per helper child, hot-plug.
#[derive(Debug)]
pub struct Policy {
    stop: Stop,
    helpers: Vec<Helper>,
    hotplug: Hotplug,
}

impl Policy {
    /// A policy for a running QEMU and the helper children started (and served) with it.
    pub fn new(stop_timeout: Duration, helpers: &[Child], now: Instant) -> Policy {
        Policy {
            stop: Stop::new(stop_timeout),
            helpers: helpers.iter().map(|&c| Helper::running(c, now)).collect(),
            hotplug: Hotplug::default(),
        }
    }

    /// The next moment the policy wants a `Tick`, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let helpers = self.helpers.iter().filter_map(Helper::next_deadline);
        [self.stop.next_deadline(), self.hotplug.next_deadline()]
            .into_iter()
            .flatten()
            .chain(helpers)
            .min()
    }

    /// Whether vminit asked `child` to exit, so that its exit is no crash.
    pub fn stopping(&self, child: Child) -> bool {
        self.helpers
            .iter()
            .any(|h| h.child() == child && h.stopping())
    }

    /// Takes in one event that happened at `now` and returns what to do about it, in order.
    ///
    /// Besides reacting to the event itself, every call also acts on the deadlines that have
    /// passed by `now` (the stop timeout, the grace after QMP `quit`, the next power-button
    /// press, a helper's restart or readiness check, hot-plug's); feed it `Event::Tick` when
    /// `next_deadline` is reached. The returned actions must be carried out in order;
    /// `Action::Exit` ends the run.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let running = self.stop.guest_running();
        match event {
            Event::Signal(signo) => self.stop.signal(signo, now, &mut actions),
            Event::PowerdownFailed => self.stop.powerdown_failed(now),
            Event::QemuExited(exit) => {
                self.stop.qemu_exited(exit);
                for helper in &mut self.helpers {
                    helper.stop(now, &mut actions);
                }
            }
            Event::ChildExited(child, _) => {
                if let Some(helper) = self.helper(child) {
                    helper.exited(now, running);
                }
            }
            Event::StartFailed(child) => {
                if let Some(helper) = self.helper(child) {
                    helper.start_failed(now);
                }
            }
            Event::Ready(child) => {
                let waited_for = self.helper(child).is_some_and(Helper::ready);
                if waited_for && running {
                    self.hotplug.ready(child, now);
                }
            }
            // Once the guest is asked to stop, its NICs stay as they are.
            Event::NetworkChanged if running => self.hotplug.network_changed(now),
            Event::Reconciled {
                again_in,
                reconfigured,
                reloaded,
                plugs_pending,
            } if running => {
                // The helpers the new NICs must wait for: those started again.
                let mut restarted = reconfigured.clone();
                for &child in &reloaded {
                    if let Some(helper) = self.helper(child)
                        && !helper.reload(now, &mut actions)
                    {
                        restarted.push(child);
                    }
                }
                for &child in &reconfigured {
                    if let Some(helper) = self.helper(child) {
                        helper.reconfigure(now, &mut actions);
                    }
                }
                self.hotplug
                    .reconciled(now, again_in, &restarted, plugs_pending);
            }
            Event::NetworkChanged | Event::Reconciled { .. } | Event::Tick => {}
        }
        // The deadlines, QEMU's first.
        self.stop.tick(now, &mut actions);
        if self.stop.guest_running() {
            self.hotplug.tick(now, &mut actions);
        } else {
            // Nothing is reconciled or plugged any more.
            self.hotplug = Hotplug::default();
        }
        for helper in &mut self.helpers {
            helper.tick(now, &mut actions);
        }
        // vminit exits once QEMU and every helper are gone.
        if self.helpers.iter().all(Helper::stopped) {
            actions.extend(self.stop.finish());
        }
        actions
    }

    fn helper(&mut self, child: Child) -> Option<&mut Helper> {
        self.helpers.iter_mut().find(|h| h.child() == child)
    }
}

#[cfg(test)]
mod tests {
    use super::helper::{BACKOFF_MIN, POLL};
    use super::hotplug::{LONGEST, PLUG_WAIT, QUIET};
    use super::stop::{GRACE, POWERDOWN_RETRY, PRESS_AGAIN, SIGRTMIN_PLUS_3};
    use super::*;

    const D: Child = Child::Dnsmasq;

    const STOP: Duration = Duration::from_secs(8);

    fn start() -> (Policy, Instant) {
        let t0 = Instant::now();
        (Policy::new(STOP, &[D], t0), t0)
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
            vec![Action::Signal {
                child: D,
                kill: false
            }]
        );
        assert_eq!(p.next_deadline(), Some(t0 + secs(2.5) + STOP_GRACE));
        assert_eq!(
            p.handle(Event::ChildExited(D, Exit::Signal(15)), t0 + secs(2.6)),
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
            vec![Action::Signal {
                child: D,
                kill: false
            }]
        );
        assert_eq!(
            p.handle(Event::ChildExited(D, Exit::Code(0)), t0 + STOP + GRACE),
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
        let took = worst_stop(&[]);
        assert!(took <= secs(9.5), "{took:?}");
        assert!(took >= STOP + GRACE, "{took:?}");
    }

    /// The same worst world, and dnsmasq dies while QEMU is being stopped: it is restarted
    /// (the guest may still ask for a lease while it shuts down), never serves, is given up
    /// on, dies again; the budget holds whenever that happens.
    #[test]
    fn a_helper_dying_while_qemu_stops_does_not_stretch_the_stop_budget() {
        for crashes in [
            &[0.1][..],
            &[3.0],
            &[7.9],
            &[8.0],
            &[8.7],
            &[8.85],
            &[0.1, 0.4, 1.0, 2.0, 4.0, 8.3],
        ] {
            let took = worst_stop(crashes);
            assert!(took <= secs(9.5), "{crashes:?}: {took:?}");
            assert!(took >= STOP + GRACE, "{crashes:?}: {took:?}");
        }
    }

    /// Runs the worst stop from SIGTERM at t0 to `Exit`, dnsmasq dying (when alive) at each
    /// of `crashes` seconds; returns how long it took.
    fn worst_stop(crashes: &[f64]) -> Duration {
        let (mut p, t0) = start();
        let mut now = t0;
        let mut qemu_dies_at = None;
        let mut crashes: Vec<Instant> = crashes.iter().map(|&s| t0 + secs(s)).collect();
        let mut dnsmasq_alive = true;
        let mut queue = vec![Event::Signal(libc::SIGTERM)];
        let exit_at = 'run: loop {
            if queue.is_empty() {
                let next = [p.next_deadline(), qemu_dies_at, crashes.first().copied()]
                    .into_iter()
                    .flatten()
                    .min();
                now = now.max(next.expect("the policy always has something to wait for"));
                if qemu_dies_at.is_some_and(|t| now >= t) {
                    qemu_dies_at = None;
                    queue.push(Event::QemuExited(Exit::Signal(9)));
                } else if crashes.first().is_some_and(|&t| now >= t) {
                    crashes.remove(0);
                    queue.push(if std::mem::take(&mut dnsmasq_alive) {
                        Event::ChildExited(D, Exit::Code(1))
                    } else {
                        Event::Tick
                    });
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
                    Action::Start(D) => dnsmasq_alive = true,
                    Action::Signal {
                        child: D,
                        kill: true,
                    }
                    | Action::Abandon(D)
                        if dnsmasq_alive =>
                    {
                        dnsmasq_alive = false;
                        queue.push(Event::ChildExited(D, Exit::Signal(9)));
                    }
                    Action::Exit(code) => {
                        assert_eq!(code, 137);
                        assert!(!dnsmasq_alive, "no helper left behind");
                        break 'run now;
                    }
                    _ => {}
                }
            }
        };
        exit_at - t0
    }

    #[test]
    fn events_about_a_helper_that_was_never_started_change_nothing() {
        let t0 = Instant::now();
        let mut p = Policy::new(STOP, &[], t0);
        assert_eq!(p.handle(Event::ChildExited(D, Exit::Code(1)), t0), vec![]);
        assert_eq!(p.handle(Event::StartFailed(D), t0), vec![]);
        assert_eq!(p.handle(Event::Ready(D), t0), vec![]);
        assert_eq!(
            p.handle(plugs(true), t0),
            vec![],
            "waits PLUG_WAIT for nothing"
        );
        assert_eq!(p.next_deadline(), Some(t0 + PLUG_WAIT));
        assert!(!p.stopping(D));
    }

    #[test]
    fn a_stale_readiness_answer_does_not_plug_nics_waiting_for_the_new_configuration() {
        let (mut p, t0) = start();
        p.handle(Event::ChildExited(D, Exit::Code(1)), t0);
        let t1 = t0 + BACKOFF_MIN;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::Start(D)]);
        // The answer to a check of that dnsmasq comes after new NICs changed the
        // configuration and it was told to stop.
        p.handle(plugs(true), t1);
        assert!(p.stopping(D));
        assert_eq!(p.handle(Event::Ready(D), t1 + POLL), vec![]);
        assert_eq!(p.next_deadline(), Some(t1 + PLUG_WAIT));
    }

    #[test]
    fn a_stop_timeout_too_short_for_one_press_stops_qemu_at_once() {
        for stop in [Duration::ZERO, QMP_DEADLINE] {
            let t0 = Instant::now();
            let mut p = Policy::new(stop, &[], t0);
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
            let mut p = Policy::new(STOP, &[], Instant::now());
            assert_eq!(
                p.handle(Event::QemuExited(exit), Instant::now()),
                vec![Action::Exit(status)]
            );
        }
    }

    #[test]
    fn a_dead_dnsmasq_is_restarted_with_growing_backoff() {
        let (mut p, t0) = start();
        assert_eq!(p.handle(Event::ChildExited(D, Exit::Code(1)), t0), vec![]);
        assert_eq!(p.next_deadline(), Some(t0 + BACKOFF_MIN));
        let t1 = t0 + BACKOFF_MIN;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::Start(D)]);
        assert_eq!(p.handle(Event::ChildExited(D, Exit::Code(1)), t1), vec![]);
        assert_eq!(p.next_deadline(), Some(t1 + BACKOFF_MIN * 2));
    }

    #[test]
    fn a_restarted_dnsmasq_is_watched_until_it_serves_without_blocking() {
        let (mut p, t0) = start();
        p.handle(Event::ChildExited(D, Exit::Code(1)), t0);
        let t1 = t0 + BACKOFF_MIN;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::Start(D)]);
        assert_eq!(p.next_deadline(), Some(t1 + POLL));
        let t2 = t1 + POLL;
        assert_eq!(p.handle(Event::Tick, t2), vec![Action::Check(D)]);
        assert_eq!(p.handle(Event::Ready(D), t2), vec![]);
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
        p.handle(Event::StartFailed(D), t0);
        let t1 = t0 + BACKOFF_MIN;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::Start(D)]);
        let t = loop {
            let t = p.next_deadline().unwrap();
            match p.handle(Event::Tick, t).as_slice() {
                [Action::Check(D)] => continue,
                [Action::Abandon(D)] => break t,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(t, t1 + START_TIMEOUT);
        // It is reaped like any dead dnsmasq, and restarted after the grown backoff.
        assert_eq!(p.handle(Event::ChildExited(D, Exit::Signal(9)), t), vec![]);
        assert_eq!(p.next_deadline(), Some(t + BACKOFF_MIN * 2));
    }

    #[test]
    fn dnsmasq_that_ignores_sigterm_at_exit_is_killed() {
        let (mut p, t0) = start();
        p.handle(Event::QemuExited(Exit::Code(0)), t0);
        assert_eq!(
            p.handle(Event::Tick, t0 + STOP_GRACE),
            vec![Action::Signal {
                child: D,
                kill: true
            }]
        );
        assert_eq!(
            p.handle(Event::ChildExited(D, Exit::Signal(9)), t0 + STOP_GRACE),
            vec![Action::Exit(0)]
        );
    }

    #[test]
    fn no_restart_of_dnsmasq_once_qemu_is_gone() {
        let (mut p, t0) = start();
        p.handle(Event::ChildExited(D, Exit::Code(1)), t0);
        assert_eq!(
            p.handle(Event::QemuExited(Exit::Code(0)), t0),
            vec![Action::Exit(0)]
        );
        assert_eq!(p.next_deadline(), None);
    }
    #[test]
    fn network_changes_are_followed_once_they_pause() {
        let (mut p, t0) = start();
        assert_eq!(p.handle(Event::NetworkChanged, t0), vec![]);
        assert_eq!(p.next_deadline(), Some(t0 + QUIET));
        let t1 = t0 + QUIET / 2;
        assert_eq!(p.handle(Event::NetworkChanged, t1), vec![]);
        assert_eq!(p.next_deadline(), Some(t1 + QUIET));
        assert_eq!(p.handle(Event::Tick, t1 + QUIET), vec![Action::Reconcile]);
        assert_eq!(p.handle(Event::Tick, t0 + LONGEST), vec![]);
    }

    #[test]
    fn a_new_dnsmasq_configuration_restarts_dnsmasq_at_once() {
        let (mut p, t0) = start();
        let reconciled = Event::Reconciled {
            again_in: None,
            reconfigured: vec![D],
            reloaded: vec![],
            plugs_pending: false,
        };
        restarts_at_once(&mut p, reconciled, t0);
    }

    /// `event` at `t` stops dnsmasq (SIGTERM) to start it again, at once once it exited (no
    /// backoff: this exit was asked for).
    fn restarts_at_once(p: &mut Policy, event: Event, t: Instant) {
        let sigterm = Action::Signal {
            child: D,
            kill: false,
        };
        assert_eq!(p.handle(event, t), vec![sigterm]);
        assert_eq!(
            p.handle(Event::ChildExited(D, Exit::Signal(15)), t),
            vec![Action::Start(D)]
        );
    }

    #[test]
    fn a_nic_waiting_for_its_address_is_looked_at_again() {
        let (mut p, t0) = start();
        let later = Duration::from_millis(100);
        let reconciled = Event::Reconciled {
            again_in: Some(later),
            reconfigured: vec![],
            reloaded: vec![],
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
        assert_eq!(p.handle(Event::Tick, t0 + LONGEST), vec![]);
        assert_eq!(p.handle(Event::NetworkChanged, t0 + LONGEST), vec![]);
        for ms in [200, 400, 2000] {
            let actions = p.handle(Event::Tick, t0 + Duration::from_millis(ms));
            assert!(!actions.contains(&Action::Reconcile), "{actions:?}");
        }
    }

    fn plugs(dnsmasq_changed: bool) -> Event {
        Event::Reconciled {
            again_in: None,
            reconfigured: if dnsmasq_changed { vec![D] } else { vec![] },
            reloaded: vec![],
            plugs_pending: true,
        }
    }

    #[test]
    fn new_nics_are_plugged_in_once_the_restarted_dnsmasq_serves_them() {
        let (mut p, t0) = start();
        assert_eq!(
            p.handle(plugs(true), t0),
            vec![Action::Signal {
                child: D,
                kill: false
            }]
        );
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(
            p.handle(Event::ChildExited(D, Exit::Signal(15)), t1),
            vec![Action::Start(D)]
        );
        // Not before it serves.
        let t2 = t1 + POLL;
        assert_eq!(p.handle(Event::Tick, t2), vec![Action::Check(D)]);
        assert_eq!(p.handle(Event::Ready(D), t2), vec![Action::Plug]);
        assert_eq!(p.handle(Event::Tick, t2 + PLUG_WAIT), vec![]);
    }

    fn reloads() -> Event {
        Event::Reconciled {
            again_in: None,
            reconfigured: vec![],
            reloaded: vec![D],
            plugs_pending: true,
        }
    }

    #[test]
    fn new_nics_are_plugged_in_at_once_after_telling_a_serving_dnsmasq_to_read_its_files() {
        let (mut p, t0) = start();
        assert_eq!(
            p.handle(reloads(), t0),
            vec![Action::Reload(D), Action::Plug],
            "no restart, and the SIGHUP before the plug"
        );
        assert!(!p.stopping(D));
    }

    #[test]
    fn a_dnsmasq_not_serving_yet_is_started_again_for_new_files_and_waited_for() {
        let (mut p, t0) = start();
        p.handle(Event::ChildExited(D, Exit::Code(1)), t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::Start(D)]);
        // Starting: it may have read the files before they changed.
        restarts_at_once(&mut p, reloads(), t1);
        let t2 = t1 + POLL;
        assert_eq!(p.handle(Event::Tick, t2), vec![Action::Check(D)]);
        assert_eq!(p.handle(Event::Ready(D), t2), vec![Action::Plug]);
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
        p.handle(Event::ChildExited(D, Exit::Signal(15)), t0);
        let mut t = t0;
        while t < t0 + PLUG_WAIT {
            t += POLL;
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
        p.handle(Event::ChildExited(D, Exit::Code(1)), t0);
        let t1 = t0 + BACKOFF_MIN;
        assert_eq!(p.handle(Event::Tick, t1), vec![Action::Start(D)]);
        // ...when new NICs change its configuration: no more checks of that one.
        assert_eq!(
            p.handle(plugs(true), t1),
            vec![Action::Signal {
                child: D,
                kill: false
            }]
        );
        assert_eq!(p.handle(Event::Tick, t1 + POLL), vec![]);
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
